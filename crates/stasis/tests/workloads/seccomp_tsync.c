/*
 * seccomp_tsync: a seccomp filter installed with SECCOMP_FILTER_FLAG_TSYNC on every
 * thread (3 threads): getppid() fails with errno 77 in each.
 * After restore: getppid() fails with 77 in every thread (each checks for itself),
 * each thread's /proc status counts 1 filter, a thread created now inherits it, and a
 * second filter installed with TSYNC (getpgid() -> errno 78) succeeds, which needs
 * every thread to share the first filter, and acts in every thread.
 */
#define WL_SECCOMP
#include "common.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>

static long install(long nr, int err, unsigned flags)
{
    return seccomp_errno_filter(nr, err, flags);
}

static long filters_of(pid_t tid)
{
    char path[128], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    if (read_file(path, buf, sizeof buf) <= 0)
        return -1;
    char *l = strstr(buf, "Seccomp_filters:");
    return l ? strtol(l + 16, NULL, 10) : -1;
}

static int phase; /* 1: check the first filter, 2: check both */
static int done[2], bad[2];

static int check_self(int want)
{
    errno = 0;
    int ok = syscall(SYS_getppid) == -1 && errno == 77;
    if (want == 2) {
        errno = 0;
        ok = ok && syscall(SYS_getpgid, 0) == -1 && errno == 78;
    }
    return ok;
}

static void *thr(void *a)
{
    int i = (int)(intptr_t)a;
    for (int p = 1; p <= 2; p++) {
        while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) < p)
            sleep_ms(5);
        if (!check_self(p))
            __atomic_add_fetch(&bad[i], 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&done[i], 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *late(void *a)
{
    (void)a;
    return (void *)(intptr_t)check_self(1);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, thr, (void *)(intptr_t)i))
            DIE("pthread_create");
    sleep_ms(20);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        DIE("no_new_privs");
    long r = install(SYS_getppid, 77, SECCOMP_FILTER_FLAG_TSYNC);
    if (r != 0)
        DIE("seccomp TSYNC");
    ready();
    wait_go();

    pid_t tids[8];
    int n = task_list(tids, 8);
    CHECK(n == 3, "%d threads, want 3", n);
    for (int i = 0; i < n; i++)
        CHECK(filters_of(tids[i]) == 1, "thread %d counts %ld seccomp filters, want 1", (int)tids[i], filters_of(tids[i]));
    CHECK(check_self(1), "getppid() not filtered in the main thread after restore");
    __atomic_store_n(&phase, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++) {
        while (__atomic_load_n(&done[i], __ATOMIC_SEQ_CST) < 1)
            sleep_ms(2);
        CHECK(bad[i] == 0, "getppid() not filtered in thread %d after restore", i);
    }
    pthread_t lt;
    void *ok = NULL;
    pthread_create(&lt, NULL, late, NULL);
    pthread_join(lt, &ok);
    CHECK(ok, "a thread created after restore does not inherit the filter");
    r = install(SYS_getpgid, 78, SECCOMP_FILTER_FLAG_TSYNC);
    CHECK(r == 0, "a second TSYNC filter after restore: %ld (%s; positive: that thread's filters are not shared)", r,
          r < 0 ? strerror(errno) : "");
    __atomic_store_n(&phase, 2, __ATOMIC_SEQ_CST);
    CHECK(check_self(2), "both filters do not act in the main thread");
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(bad[i] == 0, "both filters do not act in thread %d", i);
    }
    return finish();
}
