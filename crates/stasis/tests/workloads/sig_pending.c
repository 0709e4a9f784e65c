/*
 * sig_pending: signals pending (blocked) at dump time are delivered after
 * restore with their siginfo.
 *   process-wide: SIGRTMIN+3 queued twice with sigqueue (values 42, 43),
 *                 SIGUSR1 from kill()
 *   main thread:  SIGRTMIN+4 via rt_tgsigqueueinfo (value 7)
 *   thread t:     SIGUSR2 via tgkill
 * After restore: sigpending() of each thread is as before; unblocking
 * SIGRTMIN+3 runs its SA_SIGINFO handler twice, 42 then 43 (SI_QUEUE, our
 * pid); sigtimedwait gets SIGUSR1 (SI_USER) and SIGRTMIN+4 (value 7) in
 * main, and SIGUSR2 (from our pid) in t only.
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>

static volatile int rt_vals[4], rt_codes[4], rt_pids[4], rt_n;
static pid_t t_tid;
static int t_ready, released;

static void h_rt(int s, siginfo_t *si, void *uc)
{
    (void)s;
    (void)uc;
    if (rt_n < 4) {
        rt_vals[rt_n] = si->si_value.sival_int;
        rt_codes[rt_n] = si->si_code;
        rt_pids[rt_n] = si->si_pid;
    }
    rt_n++;
}

static void *thr(void *a)
{
    (void)a;
    t_tid = wl_gettid();
    __atomic_store_n(&t_ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        sleep_ms(10);
    sigset_t p;
    sigpending(&p);
    CHECK(sigismember(&p, SIGUSR2), "thread: SIGUSR2 (tgkill) no longer pending after restore");
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGUSR2);
    siginfo_t si;
    struct timespec to = { 2, 0 };
    int s = sigtimedwait(&w, &si, &to);
    CHECK(s == SIGUSR2 && (si.si_code == SI_TKILL || si.si_code == SI_USER) && si.si_pid == getpid(),
          "thread: sigtimedwait(SIGUSR2) = %d code %d pid %d", s, si.si_code, si.si_pid);
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    sigset_t blk;
    sigemptyset(&blk);
    sigaddset(&blk, SIGUSR1);
    sigaddset(&blk, SIGUSR2);
    sigaddset(&blk, SIGRTMIN + 3);
    sigaddset(&blk, SIGRTMIN + 4);
    sigprocmask(SIG_SETMASK, &blk, NULL);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h_rt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN + 3, &sa, NULL);

    pthread_t th;
    if (pthread_create(&th, NULL, thr, NULL))
        DIE("pthread_create");
    while (!__atomic_load_n(&t_ready, __ATOMIC_SEQ_CST))
        sleep_ms(1);

    union sigval v;
    v.sival_int = 42;
    if (sigqueue(getpid(), SIGRTMIN + 3, v))
        DIE("sigqueue 42");
    v.sival_int = 43;
    if (sigqueue(getpid(), SIGRTMIN + 3, v))
        DIE("sigqueue 43");
    if (kill(getpid(), SIGUSR1))
        DIE("kill");
    if (syscall(SYS_tgkill, getpid(), t_tid, SIGUSR2))
        DIE("tgkill");
    siginfo_t qi;
    memset(&qi, 0, sizeof qi);
    qi.si_signo = SIGRTMIN + 4;
    qi.si_code = SI_QUEUE;
    qi.si_pid = getpid();
    qi.si_uid = getuid();
    qi.si_value.sival_int = 7;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), wl_gettid(), SIGRTMIN + 4, &qi))
        DIE("rt_tgsigqueueinfo");

    sigset_t p;
    sigpending(&p);
    if (!sigismember(&p, SIGUSR1) || !sigismember(&p, SIGRTMIN + 3) || !sigismember(&p, SIGRTMIN + 4) ||
        sigismember(&p, SIGUSR2))
        DIE("pending set before dump is not as expected");
    info("thread_tid", "%d", (int)t_tid);
    ready();
    wait_go();

    sigpending(&p);
    CHECK(sigismember(&p, SIGUSR1), "SIGUSR1 (kill) no longer pending");
    CHECK(sigismember(&p, SIGRTMIN + 3), "SIGRTMIN+3 (sigqueue) no longer pending");
    CHECK(sigismember(&p, SIGRTMIN + 4), "SIGRTMIN+4 (main-thread private) no longer pending");
    CHECK(!sigismember(&p, SIGUSR2), "SIGUSR2 became pending for main (it was private to the thread)");

    sigset_t un;
    sigemptyset(&un);
    sigaddset(&un, SIGRTMIN + 3);
    sigprocmask(SIG_UNBLOCK, &un, NULL);
    CHECK(rt_n == 2, "SIGRTMIN+3 delivered %d times, want 2 (both queued instances)", rt_n);
    CHECK(rt_vals[0] == 42 && rt_vals[1] == 43, "SIGRTMIN+3 values %d, %d; want 42, 43", rt_vals[0], rt_vals[1]);
    CHECK(rt_codes[0] == SI_QUEUE && rt_pids[0] == getpid(), "SIGRTMIN+3 siginfo: code %d pid %d", rt_codes[0],
          rt_pids[0]);

    sigset_t w;
    siginfo_t si;
    struct timespec to = { 2, 0 };
    sigemptyset(&w);
    sigaddset(&w, SIGUSR1);
    int s = sigtimedwait(&w, &si, &to);
    CHECK(s == SIGUSR1 && si.si_code == SI_USER && si.si_pid == getpid(), "sigtimedwait(SIGUSR1) = %d code %d pid %d",
          s, si.si_code, si.si_pid);
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN + 4);
    s = sigtimedwait(&w, &si, &to);
    CHECK(s == SIGRTMIN + 4 && si.si_value.sival_int == 7 && si.si_code == SI_QUEUE,
          "sigtimedwait(SIGRTMIN+4) = %d value %d code %d", s, si.si_value.sival_int, si.si_code);

    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    sigpending(&p);
    CHECK(sigisemptyset(&p), "signals still pending at the end");
    return finish();
}
