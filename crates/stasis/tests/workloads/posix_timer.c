/*
 * posix_timer: timer_create() timers survive with their ids.
 *   t1 CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+1 value 77, armed 100 s / 50 s
 *   t2 CLOCK_REALTIME,  SIGEV_SIGNAL SIGRTMIN+2 value 88, disarmed
 *   t3 CLOCK_MONOTONIC, SIGEV_NONE, armed 200 s
 * After restore: timer_gettime works on the same ids with the same
 * interval, remaining values in (0, set]; re-arming t1 and t2 for 20 ms
 * delivers their signals with the right si_value and si_timerid; a new
 * timer can be created.
 */
#include "common.h"
#include <signal.h>

static double its2d(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    sigset_t blk;
    sigemptyset(&blk);
    sigaddset(&blk, SIGRTMIN + 1);
    sigaddset(&blk, SIGRTMIN + 2);
    sigprocmask(SIG_BLOCK, &blk, NULL);

    timer_t t1, t2, t3;
    struct sigevent se;
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGRTMIN + 1;
    se.sigev_value.sival_int = 77;
    if (timer_create(CLOCK_MONOTONIC, &se, &t1))
        DIE("timer_create t1");
    se.sigev_signo = SIGRTMIN + 2;
    se.sigev_value.sival_int = 88;
    if (timer_create(CLOCK_REALTIME, &se, &t2))
        DIE("timer_create t2");
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_NONE;
    if (timer_create(CLOCK_MONOTONIC, &se, &t3))
        DIE("timer_create t3");
    struct itimerspec a1 = { { 50, 0 }, { 100, 0 } }, a3 = { { 0, 0 }, { 200, 0 } };
    if (timer_settime(t1, 0, &a1, NULL) || timer_settime(t3, 0, &a3, NULL))
        DIE("timer_settime");
    info("timers", "%ld %ld %ld", (long)(intptr_t)t1, (long)(intptr_t)t2, (long)(intptr_t)t3);
    ready();
    wait_go();

    struct itimerspec g;
    int r = timer_gettime(t1, &g);
    CHECK(r == 0, "timer_gettime(t1) failed: %s", strerror(errno));
    if (r == 0) {
        CHECK(g.it_interval.tv_sec == 50 && g.it_interval.tv_nsec == 0, "t1 interval %.9f, want 50",
              its2d(g.it_interval));
        CHECK(its2d(g.it_value) > 80 && its2d(g.it_value) <= 100, "t1 remaining %.3f, want (80, 100]",
              its2d(g.it_value));
    }
    r = timer_gettime(t2, &g);
    CHECK(r == 0 && its2d(g.it_value) == 0 && its2d(g.it_interval) == 0, "t2: gettime %d, value %.3f (want disarmed)",
          r, its2d(g.it_value));
    r = timer_gettime(t3, &g);
    CHECK(r == 0 && its2d(g.it_value) > 180 && its2d(g.it_value) <= 200, "t3: gettime %d, value %.3f", r,
          its2d(g.it_value));

    struct itimerspec shot = { { 0, 0 }, { 0, 20 * 1000 * 1000 } };
    CHECK(timer_settime(t1, 0, &shot, NULL) == 0, "re-arm t1: %s", strerror(errno));
    CHECK(timer_settime(t2, 0, &shot, NULL) == 0, "re-arm t2: %s", strerror(errno));
    siginfo_t si;
    struct timespec to = { 3, 0 };
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN + 1);
    int s = sigtimedwait(&w, &si, &to);
    CHECK(s == SIGRTMIN + 1 && si.si_code == SI_TIMER && si.si_value.sival_int == 77 &&
              si.si_timerid == (int)(intptr_t)t1,
          "t1 signal: %d code %d value %d timerid %d", s, si.si_code, si.si_value.sival_int, si.si_timerid);
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN + 2);
    s = sigtimedwait(&w, &si, &to);
    CHECK(s == SIGRTMIN + 2 && si.si_value.sival_int == 88 && si.si_timerid == (int)(intptr_t)t2,
          "t2 signal: %d value %d timerid %d", s, si.si_value.sival_int, si.si_timerid);
    timer_t t4;
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_NONE;
    CHECK(timer_create(CLOCK_MONOTONIC, &se, &t4) == 0 && t4 != t1 && t4 != t2 && t4 != t3,
          "new timer after restore: %s", strerror(errno));
    return finish();
}
