/*
 * sleep: a sleep interrupted by the checkpoint must neither fail with EINTR
 * nor end early after restore, and must not start over.
 * args: WORKDIR MODE [SECONDS]   (default 6 s)
 *   nanosleep  glibc nanosleep()  (clock_nanosleep(CLOCK_REALTIME) syscall)
 *   raw        syscall(SYS_nanosleep)       (restart_syscall path)
 *   abs        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)
 * Prints READY right before sleeping; the harness dumps while the task is
 * inside the syscall.  After it returns: result 0, and at least SECONDS
 * have passed on CLOCK_MONOTONIC since the sleep began.  The harness
 * checks the process ended well before SECONDS after the restore.
 */
#include "common.h"

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "nanosleep";
    int secs = argc > 3 ? atoi(argv[3]) : 6;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct timespec req = { secs, 0 }, rem = { 0, 0 };
    int r, err = 0;
    info("mode", "%s", mode);
    ready();
    if (strcmp(mode, "raw") == 0) {
        r = (int)syscall(SYS_nanosleep, &req, &rem);
        err = r ? errno : 0;
    } else if (strcmp(mode, "abs") == 0) {
        struct timespec dl = start;
        dl.tv_sec += secs;
        r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL);
        err = r;
    } else {
        r = nanosleep(&req, &rem);
        err = r ? errno : 0;
    }
    double elapsed = now_mono() - (start.tv_sec + start.tv_nsec / 1e9);
    info("elapsed", "%.3f", elapsed);
    CHECK(r == 0, "%s returned %d (%s), remaining %ld.%09ld", mode, r, strerror(err), (long)rem.tv_sec,
          rem.tv_nsec);
    CHECK(elapsed >= secs - 0.005, "%s returned after only %.3f s of %d", mode, elapsed, secs);
    return finish();
}
