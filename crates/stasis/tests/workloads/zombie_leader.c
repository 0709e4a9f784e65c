/*
 * zombie_leader: a child whose main thread called pthread_exit() while its second
 * thread runs on (the leader shows state Z): not a zombie, a process of the tree with
 * a live thread. After `go` the root checks the child's main thread is in state Z and
 * it has two tasks, then lets it go on (WORKDIR/checked); its second thread checks its
 * pid and tid and exits the child with status 5 (6 if they changed), which the root
 * checks.
 */
#include "common.h"
#include <pthread.h>
#include <sys/wait.h>

static pid_t me, second_tid;

static void *second(void *a)
{
    (void)a;
    second_tid = wl_gettid();
    wait_go();
    while (access(wl_path("checked"), F_OK) != 0)
        sleep_ms(5);
    exit(getpid() == me && wl_gettid() == second_tid ? 5 : 6);
}

static int count_tasks(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/task", (int)pid);
    DIR *d = opendir(p);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pid_t c = fork();
    if (c == 0) {
        me = getpid();
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
    buf[0] = 0;
    read_file(path, buf, sizeof buf);
    char *s = strrchr(buf, ')');
    CHECK(s && s[2] == 'Z', "child's main thread is not a zombie: %s", buf);
    CHECK(count_tasks(c) == 2, "child has %d tasks, not its main thread and one other", count_tasks(c));
    int fd = open(wl_path("checked"), O_WRONLY | O_CREAT, 0644);
    if (fd >= 0)
        close(fd);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 5, "child ended with %#x", st);
    return finish();
}
