/*
 * cgroup_limits: a process and its child in cgroups the test made and configured; the
 * child is delegated a cgroup v2 cgroup (owned by uid 1000) and runs as uid 1000.
 * args: WORKDIR PIDS PIDS_CHILD MEMORY CPU CPUSET V2 V2_CHILD (cgroup directories)
 *   the parent joins PIDS, MEMORY, CPU, CPUSET, V2; the child joins PIDS_CHILD and
 *   V2_CHILD. The test set: PIDS/pids.max 8, PIDS_CHILD/pids.max 2, CPUSET cpus 0,
 *   V2/cgroup.max.descendants 3, V2_CHILD owned by 1000:1000. Before the dump
 *   the child makes V2_CHILD/kept (so owned by uid 1000, with all its files) and sets
 *   its cgroup.max.depth to 1.
 * The parent keeps PIDS/pids.max open (a file inside cgroupfs).
 * After restore (the limits are enforced again, checked from inside):
 *   parent: the open pids.max reads "8" and is the file at that path now (same inode);
 *           asking for every CPU gives CPU 0 only (the cpuset);
 *   child:  one fork succeeds, a second fails with EAGAIN (pids.max 2); as uid 1000 it
 *           can make a sub-cgroup in its delegated cgroup, and not a second one
 *           (cgroup.max.descendants 3 above it: child, kept, sub); it can still
 *           write kept's cgroup.max.depth (kept and its files came back its own).
 */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 9)
        DIE("args");
    const char *pids = argv[2], *pidsc = argv[3], *mem = argv[4], *cpu = argv[5], *cpuset = argv[6], *v2 = argv[7], *v2c = argv[8];
    const char *mine[] = {pids, mem, cpu, cpuset, v2};
    for (int i = 0; i < 5; i++)
        if (cg_join(mine[i]))
            DIE("joining its cgroups");
    char maxp[512];
    snprintf(maxp, sizeof maxp, "%s/pids.max", pids);
    int maxfd = open(maxp, O_RDONLY);
    if (maxfd < 0)
        DIE("open pids.max");
    int p2c[2];
    if (pipe(p2c))
        DIE("pipe");
    pid_t c = fork();
    if (c == 0) {
        if (cg_join(pidsc) || cg_join(v2c))
            _exit(10);
        if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
            _exit(11);
        /* a cgroup of its own making in its delegated one, empty, with a limit */
        char kept[600], kdepth[700];
        snprintf(kept, sizeof kept, "%s/kept", v2c);
        snprintf(kdepth, sizeof kdepth, "%s/cgroup.max.depth", kept);
        if (mkdir(kept, 0750))
            _exit(13);
        int kfd = open(kdepth, O_WRONLY);
        if (kfd < 0 || write(kfd, "1", 1) != 1)
            _exit(14);
        close(kfd);
        char x;
        if (read(p2c[0], &x, 1) != 1)
            _exit(2);
        int hold[2];
        if (pipe(hold))
            _exit(12);
        pid_t a = fork();
        if (a == 0) {
            close(hold[1]);
            (void)!read(hold[0], &x, 1);
            _exit(0);
        }
        if (a < 0)
            _exit(3); /* the first fork must work */
        pid_t b = fork();
        if (b == 0)
            _exit(0);
        int e = errno;
        char sub[600], sub2[600];
        snprintf(sub, sizeof sub, "%s/sub", v2c);
        snprintf(sub2, sizeof sub2, "%s/sub2", v2c);
        int mk = mkdir(sub, 0755);
        int mk2 = mkdir(sub2, 0755);
        int e2 = errno;
        if (mk == 0)
            rmdir(sub);
        if (mk2 == 0)
            rmdir(sub2);
        /* its own cgroup came back as its own: it can still change its limit */
        kfd = open(kdepth, O_WRONLY);
        int kw = kfd >= 0 && write(kfd, "2", 1) == 1;
        if (kfd >= 0)
            close(kfd);
        rmdir(kept);
        close(hold[1]);
        waitpid(a, NULL, 0);
        if (b > 0) {
            waitpid(b, NULL, 0);
            _exit(4); /* beyond pids.max */
        }
        if (e != EAGAIN)
            _exit(5);
        if (mk != 0)
            _exit(6); /* its delegated cgroup is not its own */
        if (mk2 == 0 || e2 != EAGAIN)
            _exit(7); /* beyond cgroup.max.descendants */
        if (!kw)
            _exit(8); /* its sub-cgroup is not its own any more */
        _exit(0);
    }
    info("child", "%d", (int)c);
    ready();
    wait_go();
    char buf[64] = {0};
    CHECK(pread(maxfd, buf, sizeof buf - 1, 0) > 0 && !strcmp(buf, "8\n"), "the open pids.max reads %s", buf);
    struct stat a, b;
    CHECK(fstat(maxfd, &a) == 0 && stat(maxp, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev, "the open pids.max is not %s", maxp);
    cpu_set_t all, now;
    CPU_ZERO(&all);
    for (int i = 0; i < 64; i++)
        CPU_SET(i, &all);
    CHECK(sched_setaffinity(0, sizeof all, &all) == 0, "sched_setaffinity: %s", strerror(errno));
    CHECK(sched_getaffinity(0, sizeof now, &now) == 0 && CPU_COUNT(&now) == 1 && CPU_ISSET(0, &now), "CPUs allowed: %d (the cpuset allows CPU 0 only)", CPU_COUNT(&now));
    CHECK(write(p2c[1], "x", 1) == 1, "poke child");
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    return finish();
}
