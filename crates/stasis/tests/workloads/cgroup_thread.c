/*
 * cgroup_thread: a thread moved alone into another cgroup (v1 `tasks`), which stasis
 * refuses to dump (it restores whole processes into cgroups).
 * args: WORKDIR DIR (a v1 cgroup directory); prints INFO tid=TID of that thread.
 * Never restored: it waits for `go` and passes (direct mode).
 */
#include "common.h"
#include <pthread.h>

static const char *dir;
static volatile int moved = -1;

static void *run(void *arg)
{
    (void)arg;
    char p[512], t[32];
    snprintf(p, sizeof p, "%s/tasks", dir);
    snprintf(t, sizeof t, "%d", (int)gettid());
    int fd = open(p, O_WRONLY);
    moved = fd >= 0 && write(fd, t, strlen(t)) == (ssize_t)strlen(t);
    if (fd >= 0)
        close(fd);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        DIE("args");
    dir = argv[2];
    pthread_t th;
    if (pthread_create(&th, NULL, run, NULL))
        DIE("pthread_create");
    while (moved < 0)
        usleep(1000);
    if (!moved)
        DIE("moving the thread");
    ready();
    wait_go();
    return finish();
}
