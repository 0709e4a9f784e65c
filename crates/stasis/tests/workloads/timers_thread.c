/*
 * timers_thread: POSIX timers aimed at one thread, glibc's SIGEV_THREAD timers and
 * timers on every clock.
 *   ta  CLOCK_BOOTTIME, SIGEV_THREAD_ID -> thread T, SIGRTMIN+5 value 505, every 100 ms
 *       (blocked everywhere: its signal and overruns pile up while T waits for go)
 *   tb  CLOCK_MONOTONIC, SIGEV_THREAD (glibc: a helper thread waits for an internal
 *       signal aimed at it with SIGEV_THREAD_ID), every 100 ms, callback counts and
 *       checks its sival_ptr
 *   tc  CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, armed 100 s
 *   td  CLOCK_THREAD_CPUTIME_ID (of the main thread), SIGEV_NONE, armed 200 s
 *   te  CLOCK_REALTIME, SIGEV_SIGNAL SIGRTMIN+6 value 606, disarmed
 * After restore: /proc/self/timers is what it was (ids, signals, values, notify kind
 * and target tid, clocks); the pending SIGRTMIN+5 is T's alone (main's sigpending does
 * not show it, T's does) and is ONE instance (the timer's own: a copy queued next to it
 * was delivered twice); T then receives at least 6 SIGRTMIN+5 within 1.2 s, each
 * with value 505 and its timer id; the SIGEV_THREAD callback ran at least 4 more times
 * within 1 s, with its own pointer; tc/td keep their remaining time in (0, set]; no
 * thread has the trap flag set.
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>

#define MAGIC 0x5157a7e5
struct cbarg {
    int magic;
    volatile int calls;
    volatile int bad;
};
static struct cbarg cb = { MAGIC, 0, 0 };

static void callback(union sigval v)
{
    struct cbarg *a = v.sival_ptr;
    if (a != &cb || a->magic != MAGIC)
        __atomic_add_fetch(&cb.bad, 1, __ATOMIC_SEQ_CST);
    else
        __atomic_add_fetch(&a->calls, 1, __ATOMIC_SEQ_CST);
}

/* the trap flag (single-stepping) must never be left set by the dump's parasite */
static int trap_flag(void)
{
    unsigned long fl;
    __asm__ volatile("pushfq; popq %0" : "=r"(fl));
    return (fl & 0x100) != 0;
}

static pid_t t_tid;
static int t_tf;
static int t_ready, released, t_got, t_bad, t_dup, t_pending_at_go;
static timer_t ta;

static void *thr(void *x)
{
    (void)x;
    t_tid = wl_gettid();
    __atomic_store_n(&t_ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        sleep_ms(5);
    sigset_t p;
    sigpending(&p);
    t_pending_at_go = sigismember(&p, SIGRTMIN + 5);
    t_tf = trap_flag();
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN + 5);
    /* more than a period: a restored timer that queued a signal of its own next to a
     * copy of the pending one has done so by now */
    sleep_ms(150);
    {
        siginfo_t si;
        struct timespec to = { 2, 0 }, zero = { 0, 0 };
        if (sigtimedwait(&w, &si, &to) == SIGRTMIN + 5) {
            t_got++;
            /* the next expiry is ~100 ms away: a second instance now is a duplicate */
            if (sigtimedwait(&w, &si, &zero) == SIGRTMIN + 5)
                t_dup++;
        }
    }
    double end = now_mono() + 1.2;
    while (now_mono() < end) {
        siginfo_t si;
        struct timespec to = { 0, 200 * 1000 * 1000 };
        int s = sigtimedwait(&w, &si, &to);
        if (s < 0)
            continue;
        if (s != SIGRTMIN + 5 || si.si_code != SI_TIMER || si.si_value.sival_int != 505 ||
            si.si_timerid != (int)(intptr_t)ta)
            t_bad++;
        else
            t_got++;
    }
    return NULL;
}

static char timers_before[8192];

static double ts2d(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    sigset_t blk;
    sigemptyset(&blk);
    sigaddset(&blk, SIGRTMIN + 5);
    sigaddset(&blk, SIGRTMIN + 6);
    pthread_sigmask(SIG_BLOCK, &blk, NULL);

    pthread_t th;
    if (pthread_create(&th, NULL, thr, NULL))
        DIE("pthread_create");
    while (!__atomic_load_n(&t_ready, __ATOMIC_SEQ_CST))
        sleep_ms(1);

    struct sigevent se;
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_THREAD_ID;
    se.sigev_signo = SIGRTMIN + 5;
    se.sigev_value.sival_int = 505;
    se._sigev_un._tid = t_tid;
    if (timer_create(CLOCK_BOOTTIME, &se, &ta))
        DIE("timer_create ta");
    timer_t tb, tc, td, te;
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_THREAD;
    se.sigev_notify_function = callback;
    se.sigev_value.sival_ptr = &cb;
    if (timer_create(CLOCK_MONOTONIC, &se, &tb))
        DIE("timer_create tb");
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_NONE;
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &se, &tc))
        DIE("timer_create tc");
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &se, &td))
        DIE("timer_create td");
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGRTMIN + 6;
    se.sigev_value.sival_int = 606;
    if (timer_create(CLOCK_REALTIME, &se, &te))
        DIE("timer_create te");

    struct itimerspec a = { { 0, 100 * 1000 * 1000 }, { 0, 100 * 1000 * 1000 } };
    struct itimerspec b = { { 0, 100 * 1000 * 1000 }, { 0, 100 * 1000 * 1000 } };
    struct itimerspec c = { { 0, 0 }, { 100, 0 } }, d = { { 0, 0 }, { 200, 0 } };
    if (timer_settime(ta, 0, &a, NULL) || timer_settime(tb, 0, &b, NULL) || timer_settime(tc, 0, &c, NULL) ||
        timer_settime(td, 0, &d, NULL))
        DIE("timer_settime");
    /* let ta's signal become pending (and overrun) and tb's callback run */
    sleep_ms(300);
    if (read_file("/proc/self/timers", timers_before, sizeof timers_before) <= 0)
        DIE("reading /proc/self/timers");
    if (cb.calls < 1)
        DIE("SIGEV_THREAD callback never ran before the dump");
    info("thread_tid", "%d", (int)t_tid);
    ready();
    wait_go();

    static char timers_after[8192];
    read_file("/proc/self/timers", timers_after, sizeof timers_after);
    CHECK(strcmp(timers_before, timers_after) == 0, "/proc/self/timers changed:\n--- before\n%s--- after\n%s",
          timers_before, timers_after);

    CHECK(!trap_flag(), "the trap flag is set in the main thread");
    sigset_t p;
    sigpending(&p);
    CHECK(!sigismember(&p, SIGRTMIN + 5), "SIGRTMIN+5 (aimed at thread %d) is pending for the main thread",
          (int)t_tid);
    int calls0 = cb.calls;
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    int calls1 = cb.calls;
    CHECK(t_pending_at_go, "SIGRTMIN+5 was not pending for thread T after restore");
    CHECK(!t_tf, "the trap flag is set in thread T");
    CHECK(t_dup == 0, "the pending SIGRTMIN+5 was queued twice");
    CHECK(t_got >= 7 && t_bad == 0, "thread T got %d good and %d bad SIGRTMIN+5 (want >= 1 + 6 in 1.2 s, 0 bad)",
          t_got, t_bad);
    CHECK(calls1 - calls0 >= 4 && cb.bad == 0, "SIGEV_THREAD callback: %d calls in 1 s, %d with a wrong argument",
          calls1 - calls0, cb.bad);

    struct itimerspec g;
    CHECK(timer_gettime(tc, &g) == 0 && ts2d(g.it_value) > 0 && ts2d(g.it_value) <= 100,
          "tc (process CPU) remaining %.6f", ts2d(g.it_value));
    CHECK(timer_gettime(td, &g) == 0 && ts2d(g.it_value) > 0 && ts2d(g.it_value) <= 200,
          "td (thread CPU) remaining %.6f", ts2d(g.it_value));
    CHECK(timer_gettime(te, &g) == 0 && ts2d(g.it_value) == 0, "te should be disarmed: %.6f", ts2d(g.it_value));
    CHECK(timer_gettime(tb, &g) == 0 && g.it_interval.tv_nsec == 100 * 1000 * 1000, "tb interval %.6f",
          ts2d(g.it_interval));
    timer_delete(tb);
    return finish();
}
