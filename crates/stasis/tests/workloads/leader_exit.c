/*
 * leader_exit: the main thread calls pthread_exit while three threads run (the process
 * shows state Z but is alive). Thread 0 says READY, waits for go, checks it still runs
 * in the same process and exits the whole process with the verdict.
 */
#include "common.h"
#include <pthread.h>

static void *worker(void *arg)
{
    if (arg == NULL) {
        ready();
        wait_go();
        CHECK(wl_gettid() != getpid(), "thread 0 is the main thread");
        exit(finish());
    }
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    pthread_exit(NULL);
}
