/*
 * uts_ns: a process that unshared its UTS namespace and set its host and domain names,
 * with a child in the same namespace. After restore both see the saved names in
 * uname(); then (after the parent's checks) the child sets another hostname and the
 * parent sees it (same namespace).
 */
#include "common.h"
#include <sched.h>
#include <sys/utsname.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (unshare(CLONE_NEWUTS))
        DIE("unshare(CLONE_NEWUTS)");
    if (sethostname("stasis-uts-test", 15) || setdomainname("example.test", 12))
        DIE("sethostname");
    int p[2], k[2];
    if (pipe(p) || pipe(k))
        DIE("pipe");
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        close(k[1]);
        wait_go();
        char go;
        CHECK(read(k[0], &go, 1) == 1, "child: no word from the parent");
        struct utsname u;
        uname(&u);
        CHECK(!strcmp(u.nodename, "stasis-uts-test"), "child: hostname '%s'", u.nodename);
        CHECK(!strcmp(u.domainname, "example.test"), "child: domainname '%s'", u.domainname);
        sethostname("renamed-by-child", 16);
        CHECK(write(p[1], "x", 1) == 1, "child: write");
        _exit(g_failed ? 1 : 0);
    }
    close(p[1]);
    close(k[0]);
    info("child", "%d", (int)c);
    ready();
    wait_go();
    struct utsname u;
    uname(&u);
    CHECK(!strcmp(u.nodename, "stasis-uts-test"), "hostname '%s'", u.nodename);
    CHECK(!strcmp(u.domainname, "example.test"), "domainname '%s'", u.domainname);
    /* the child renames the namespace only after our checks */
    CHECK(write(k[1], "k", 1) == 1, "write to the child");
    char b;
    CHECK(read(p[0], &b, 1) == 1, "no word from the child");
    uname(&u);
    CHECK(!strcmp(u.nodename, "renamed-by-child"), "the child's hostname is not ours: '%s'", u.nodename);
    int st = 0;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
    return finish();
}
