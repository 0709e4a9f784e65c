/*
 * zombie_leader: a child whose main thread called pthread_exit() while its second
 * thread runs on (the leader shows state Z). stasis must refuse it (its threads would be
 * lost as a "zombie") and leave it running: after `go` the second thread exits the
 * child with status 5, which the root checks.
 */
#include "common.h"
#include <pthread.h>
#include <sys/wait.h>

static void *second(void *a)
{
    (void)a;
    wait_go();
    exit(5);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, second, NULL))
            _exit(1);
        pthread_exit(NULL);
    }
    /* wait until the leader is gone and the second thread runs */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)c);
    for (int i = 0; i < 1000; i++) {
        if (read_file(path, buf, sizeof buf) > 0) {
            char *p = strrchr(buf, ')');
            if (p && p[2] == 'Z')
                break;
        }
        sleep_ms(2);
    }
    info("child", "%d", (int)c);
    ready();
    wait_go();
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 5, "child ended with %#x", st);
    return finish();
}
