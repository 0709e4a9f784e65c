/*
 * robust: per-thread kernel bookkeeping that glibc relies on.
 *   thread r holds a PTHREAD_MUTEX_ROBUST mutex (robust list registered
 *   with set_robust_list) and, after go, exits without unlocking it;
 *   thread j is joined after go (CLONE_CHILD_CLEARTID / set_tid_address).
 * After restore: pthread_join returns (the kernel clears and wakes the
 * tid word), and locking the robust mutex returns EOWNERDEAD (the kernel
 * walked the dead thread's robust list) instead of hanging.
 */
#include "common.h"
#include <pthread.h>

static pthread_mutex_t m;
static int locked, released;

static void *holder(void *a)
{
    (void)a;
    pthread_mutex_lock(&m);
    __atomic_store_n(&locked, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        sleep_ms(10);
    return NULL; /* dies holding m */
}

static void *idle(void *a)
{
    (void)a;
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        sleep_ms(10);
    return (void *)0x5eed;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &at);
    pthread_t r, j;
    if (pthread_create(&r, NULL, holder, NULL) || pthread_create(&j, NULL, idle, NULL))
        DIE("pthread_create");
    while (!__atomic_load_n(&locked, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    ready();
    wait_go();
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    void *ret = NULL;
    int e = pthread_timedjoin_np(j, &ret, &dl);
    CHECK(e == 0 && ret == (void *)0x5eed, "join of an idle thread: %s (clear_child_tid lost?)", strerror(e));
    e = pthread_timedjoin_np(r, NULL, &dl);
    CHECK(e == 0, "join of the mutex holder: %s", strerror(e));
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 3;
    e = pthread_mutex_timedlock(&m, &dl);
    CHECK(e == EOWNERDEAD, "locking the robust mutex of a dead owner returned %d (%s), want EOWNERDEAD "
          "(robust list lost?)", e, strerror(e));
    if (e == EOWNERDEAD) {
        pthread_mutex_consistent(&m);
        pthread_mutex_unlock(&m);
    }
    return finish();
}
