/*
 * cgroups: a process in a cgroup v2 cgroup and a cgroup v1 "pids" cgroup of its own,
 * and a child in a sub-cgroup (v2) of it. The test removes the cgroups after the dump
 * (they are empty then), so the restore must create them again.
 * After restore: /proc/self/cgroup of both processes reads exactly as before the dump.
 * args: WORKDIR NAME (the cgroups are NAME under each hierarchy's root)
 */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        DIE("name");
    char v2[256], v2c[300], v1[256];
    snprintf(v2, sizeof v2, "/sys/fs/cgroup/unified/%s", argv[2]);
    snprintf(v2c, sizeof v2c, "%s/child", v2);
    snprintf(v1, sizeof v1, "/sys/fs/cgroup/pids/%s", argv[2]);
    if (mkdir(v2, 0755) || mkdir(v2c, 0755) || mkdir(v1, 0755))
        DIE("mkdir");
    if (cg_join(v2))
        DIE("joining its cgroup");
    if (cg_join(v1))
        DIE("joining its cgroup");
    static char before[4096], cbefore[4096], after[4096];
    int p2c[2], c2p[2];
    if (pipe(p2c) || pipe(c2p))
        DIE("pipe");
    pid_t c = fork();
    if (c == 0) {
        if (cg_join(v2c))
            DIE("joining its cgroup");
        static char mine[4096], now[4096];
        read_file("/proc/self/cgroup", mine, sizeof mine);
        (void)!write(c2p[1], mine, strlen(mine) + 1);
        char x;
        if (read(p2c[0], &x, 1) != 1)
            _exit(2);
        read_file("/proc/self/cgroup", now, sizeof now);
        _exit(strcmp(mine, now) ? 3 : 0);
    }
    if (read(c2p[0], cbefore, sizeof cbefore) <= 0)
        DIE("child's cgroups");
    read_file("/proc/self/cgroup", before, sizeof before);
    info("child", "%d", (int)c);
    ready();
    wait_go();
    read_file("/proc/self/cgroup", after, sizeof after);
    CHECK(!strcmp(before, after), "cgroups changed:\n%s---\n%s", before, after);
    CHECK(write(p2c[1], "x", 1) == 1, "poke child");
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x (its cgroups changed?)", st);
    return finish();
}
