/*
 * netns: a process in a network namespace of its own (unshare(CLONE_NEWNET)) with its
 * loopback brought up, and a child in the same namespace.
 * After restore (sockets are created only then: a socket in an own network namespace is
 * not dumped): both are still in one network namespace that is not the host's, it has
 * only `lo`, `lo` is up, and a TCP connection over 127.0.0.1 inside it carries data.
 */
#define WL_NET
#include "common.h"
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char host[64], mine[64], theirs[64];
    ns_link(getpid(), "net", host, sizeof host);
    if (unshare(CLONE_NEWNET))
        DIE("unshare");
    if (lo_is_up(1) != 1)
        DIE("bringing lo up");
    int hold[2];
    if (pipe(hold))
        DIE("pipe");
    pid_t c = fork();
    if (c == 0) {
        close(hold[1]);
        wait_go();
        int ok = lo_is_up(0) == 1;
        char b;
        (void)!read(hold[0], &b, 1); /* stay until the parent looked at us */
        _exit(ok ? 0 : 3);
    }
    close(hold[0]);
    info("child", "%d", (int)c);
    ready();
    wait_go();
    ns_link(getpid(), "net", mine, sizeof mine);
    ns_link(c, "net", theirs, sizeof theirs);
    close(hold[1]);
    CHECK(strcmp(mine, host) != 0, "back in the host's network namespace (%s)", mine);
    CHECK(strcmp(mine, theirs) == 0, "child in %s, parent in %s", theirs, mine);
    struct if_nameindex *ni = if_nameindex();
    int n = 0;
    for (struct if_nameindex *p = ni; p && p->if_index; p++) {
        n++;
        CHECK(!strcmp(p->if_name, "lo"), "interface %s in the namespace", p->if_name);
    }
    if_freenameindex(ni);
    CHECK(n == 1, "%d interfaces", n);
    CHECK(lo_is_up(0) == 1, "lo is down");
    /* TCP over loopback inside the namespace */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    CHECK(bind(l, (void *)&a, sizeof a) == 0 && listen(l, 1) == 0 && getsockname(l, (void *)&a, &al) == 0, "listen on lo: %s", strerror(errno));
    int k = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(k, (void *)&a, sizeof a) == 0, "connect over lo: %s", strerror(errno));
    int acc = accept(l, NULL, NULL);
    char buf[8] = { 0 };
    CHECK(write(k, "hello", 5) == 5 && read(acc, buf, 5) == 5 && !strcmp(buf, "hello"), "data over lo: '%s'", buf);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    return finish();
}
