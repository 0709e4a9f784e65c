/*
 * timens: time namespaces. The root unshares a time namespace for its children with
 * CLOCK_MONOTONIC +1000 s and CLOCK_BOOTTIME +2000 s, then forks a child (in it).
 * After restore: the child's monotonic and boot clocks are still ahead of the root's by
 * the offsets (within a second), the root's clocks are not offset, and neither clock
 * went backwards across the checkpoint (each process compares with what it read before).
 */
#include "common.h"
#include <sched.h>
#include <sys/wait.h>

static double clk(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (unshare(CLONE_NEWTIME))
        DIE("unshare");
    int fd = open("/proc/self/timens_offsets", O_WRONLY);
    const char *o = "monotonic 1000 0\nboottime 2000 0\n";
    if (fd < 0 || write(fd, o, strlen(o)) != (ssize_t)strlen(o))
        DIE("timens_offsets");
    close(fd);
    int p2c[2], c2p[2];
    if (pipe(p2c) || pipe(c2p))
        DIE("pipe");
    double mono0 = clk(CLOCK_MONOTONIC);
    pid_t c = fork();
    if (c == 0) {
        double m0 = clk(CLOCK_MONOTONIC), b0 = clk(CLOCK_BOOTTIME);
        char x;
        if (read(p2c[0], &x, 1) != 1) /* after restore */
            _exit(2);
        double r[4] = { m0, b0, clk(CLOCK_MONOTONIC), clk(CLOCK_BOOTTIME) };
        _exit(write(c2p[1], r, sizeof r) == sizeof r ? 0 : 3);
    }
    info("child", "%d", (int)c);
    ready();
    wait_go();
    double mono = clk(CLOCK_MONOTONIC), boot = clk(CLOCK_BOOTTIME);
    CHECK(write(p2c[1], "x", 1) == 1, "poke child");
    double r[4];
    CHECK(read(c2p[0], r, sizeof r) == sizeof r, "child's clocks");
    CHECK(mono >= mono0, "root's monotonic clock went back: %.3f -> %.3f", mono0, mono);
    CHECK(r[2] >= r[0], "child's monotonic clock went back: %.3f -> %.3f", r[0], r[2]);
    CHECK(r[3] >= r[1], "child's boot clock went back: %.3f -> %.3f", r[1], r[3]);
    CHECK(r[2] - mono > 999 && r[2] - mono < 1001, "child's monotonic offset %.3f s, want 1000", r[2] - mono);
    CHECK(r[3] - boot > 1999 && r[3] - boot < 2001, "child's boottime offset %.3f s, want 2000", r[3] - boot);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    return finish();
}
