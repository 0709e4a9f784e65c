/*
 * cgroupns: a process joins a cgroup v2 cgroup of its own, unshares a cgroup namespace
 * there (its root), and forks a child that moves into a sub-cgroup.
 * After restore: both are in one cgroup namespace that is not the host's, and
 * /proc/self/cgroup (relative to the namespace's root) reads as before: "0::/" for the
 * parent, "0::/child" for the child.
 * args: WORKDIR NAME
 */
#include "common.h"
#include <sched.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        DIE("name");
    char dir[256], sub[300], host[64], mine[64], theirs[64];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/unified/%s", argv[2]);
    snprintf(sub, sizeof sub, "%s/child", dir);
    if (mkdir(dir, 0755) || mkdir(sub, 0755))
        DIE("mkdir");
    ns_link(getpid(), "cgroup", host, sizeof host);
    if (cg_join(dir))
        DIE("joining its cgroup");
    if (unshare(CLONE_NEWCGROUP))
        DIE("unshare");
    static char before[4096], after[4096];
    read_file("/proc/self/cgroup", before, sizeof before);
    int p2c[2];
    if (pipe(p2c))
        DIE("pipe");
    pid_t c = fork();
    if (c == 0) {
        if (cg_join(sub))
            DIE("joining its cgroup");
        static char cb[4096], ca[4096];
        read_file("/proc/self/cgroup", cb, sizeof cb);
        char x;
        if (read(p2c[0], &x, 1) != 1)
            _exit(2);
        read_file("/proc/self/cgroup", ca, sizeof ca);
        _exit(strcmp(cb, ca) ? 3 : strstr(ca, "0::/child\n") ? 0 : 4);
    }
    info("child", "%d", (int)c);
    ready();
    wait_go();
    ns_link(getpid(), "cgroup", mine, sizeof mine);
    ns_link(c, "cgroup", theirs, sizeof theirs);
    CHECK(strcmp(mine, host) != 0, "back in the host's cgroup namespace");
    CHECK(!strcmp(mine, theirs), "child in %s, parent in %s", theirs, mine);
    read_file("/proc/self/cgroup", after, sizeof after);
    CHECK(!strcmp(before, after), "cgroups seen from inside changed:\n%s---\n%s", before, after);
    CHECK(strstr(after, "0::/\n") != NULL, "not at the namespace's root: %s", after);
    CHECK(write(p2c[1], "x", 1) == 1, "poke child");
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    return finish();
}
