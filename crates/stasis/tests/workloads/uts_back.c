/*
 * uts_back: a process unshares its UTS namespace, its child goes back to the original
 * one with setns. Restoring by unsharing along the tree cannot rebuild that: the dump
 * must refuse, naming the child, and leave both running (they finish normally).
 */
#include "common.h"
#include <sched.h>
#include <sys/utsname.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int orig = open("/proc/self/ns/uts", O_RDONLY);
    if (orig < 0)
        DIE("open ns");
    if (unshare(CLONE_NEWUTS) || sethostname("uts-back-parent", 15))
        DIE("unshare");
    pid_t c = fork();
    if (c == 0) {
        if (setns(orig, CLONE_NEWUTS))
            DIE("setns");
        close(orig);
        wait_go();
        struct utsname u;
        uname(&u);
        CHECK(strcmp(u.nodename, "uts-back-parent") != 0, "child: still in the parent's namespace");
        _exit(g_failed ? 1 : 0);
    }
    close(orig);
    /* the child is back before READY */
    char a[64], b[64];
    snprintf(a, sizeof a, "/proc/%d/ns/uts", (int)c);
    for (int i = 0; i < 1000; i++) {
        ssize_t n = readlink(a, b, sizeof b - 1);
        char mine[64];
        ssize_t m = readlink("/proc/self/ns/uts", mine, sizeof mine - 1);
        if (n > 0 && m > 0 && (n != m || memcmp(b, mine, n)))
            break;
        sleep_ms(5);
    }
    info("child", "%d", (int)c);
    ready();
    wait_go();
    int st = 0;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
    return finish();
}
