/*
 * itimers: setitimer() timers.
 *   ITIMER_REAL     value 3 s, no interval (SIGALRM handler counts)
 *   ITIMER_VIRTUAL  value 20 s, interval 7 s
 *   ITIMER_PROF     value 30 s, interval 11 s
 * After restore: intervals exactly as set, remaining values in (0, set],
 * REAL's remaining value not more than it was at READY; SIGALRM is delivered
 * exactly once within 10 s after go.
 */
#include "common.h"
#include <signal.h>
#include <sys/time.h>

static volatile int alarms;
static void h_alrm(int s)
{
    (void)s;
    alarms++;
}

static double tv2d(struct timeval t)
{
    return t.tv_sec + t.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    signal(SIGALRM, h_alrm);
    struct itimerval r = { { 0, 0 }, { 3, 0 } }, v = { { 7, 0 }, { 20, 0 } }, p = { { 11, 0 }, { 30, 0 } };
    if (setitimer(ITIMER_REAL, &r, NULL) || setitimer(ITIMER_VIRTUAL, &v, NULL) || setitimer(ITIMER_PROF, &p, NULL))
        DIE("setitimer");
    struct itimerval at_ready;
    getitimer(ITIMER_REAL, &at_ready);
    info("real_at_ready", "%.3f", tv2d(at_ready.it_value));
    ready();
    wait_go();

    struct itimerval g;
    getitimer(ITIMER_REAL, &g);
    info("real_after", "%.3f", tv2d(g.it_value));
    CHECK(g.it_interval.tv_sec == 0 && g.it_interval.tv_usec == 0, "ITIMER_REAL interval %.6f, want 0",
          tv2d(g.it_interval));
    CHECK(alarms == 1 || (tv2d(g.it_value) > 0 && tv2d(g.it_value) <= tv2d(at_ready.it_value) + 0.001),
          "ITIMER_REAL remaining %.3f s (at READY %.3f s), alarms so far %d", tv2d(g.it_value),
          tv2d(at_ready.it_value), alarms);

    getitimer(ITIMER_VIRTUAL, &g);
    CHECK(g.it_interval.tv_sec == 7 && g.it_interval.tv_usec == 0, "ITIMER_VIRTUAL interval %.6f, want 7",
          tv2d(g.it_interval));
    CHECK(tv2d(g.it_value) > 15 && tv2d(g.it_value) <= 20.1, "ITIMER_VIRTUAL remaining %.3f, want (15, 20]",
          tv2d(g.it_value));
    getitimer(ITIMER_PROF, &g);
    CHECK(g.it_interval.tv_sec == 11 && g.it_interval.tv_usec == 0, "ITIMER_PROF interval %.6f, want 11",
          tv2d(g.it_interval));
    CHECK(tv2d(g.it_value) > 25 && tv2d(g.it_value) <= 30.1, "ITIMER_PROF remaining %.3f, want (25, 30]",
          tv2d(g.it_value));

    for (int i = 0; i < 1000 && alarms == 0; i++)
        sleep_ms(10);
    CHECK(alarms == 1, "SIGALRM delivered %d times within 10 s after go, want 1", alarms);
    return finish();
}
