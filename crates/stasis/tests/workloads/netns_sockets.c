/*
 * netns_sockets: sockets inside a network namespace of the tree's own (loopback only).
 * The root unshares CLONE_NEWNET, brings lo up and opens, inside it: a TCP listener on
 * 127.0.0.1:47001, an established connection to it with "ping" unread on the accepted
 * side, a UDP socket bound to 127.0.0.1:47002 and a unix stream listener with an
 * abstract name (abstract names are per network namespace). A child in the same
 * namespace waits for `go`, then connects to the listener and sends "child".
 * After restore: still not the host's namespace; the accepted side reads "ping" and
 * answers "pong" on the same connection; the listener accepts the child's connection
 * (it reads "child"); a datagram to 127.0.0.1:47002 arrives on the bound UDP socket;
 * the abstract unix name accepts a connection.
 */
#define WL_NET
#include "common.h"
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static struct sockaddr_in lo_addr(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    return a;
}

/* n bytes or a failure (after restore the checks must not DIE) */
static int read_n(int fd, char *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static socklen_t abstract_addr(struct sockaddr_un *u)
{
    memset(u, 0, sizeof *u);
    u->sun_family = AF_UNIX;
    const char *name = "stasis-netns-test";
    memcpy(u->sun_path + 1, name, strlen(name));
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char host[64], mine[64];
    ns_link(getpid(), "net", host, sizeof host);
    if (unshare(CLONE_NEWNET))
        DIE("unshare");
    if (lo_is_up(1) != 1)
        DIE("bringing lo up");
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo_addr(47001);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4))
        DIE("listen");
    int k = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(k, (void *)&a, sizeof a))
        DIE("connect");
    int acc = accept(l, NULL, NULL);
    if (acc < 0 || write(k, "ping", 4) != 4)
        DIE("accept/write");
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = lo_addr(47002);
    if (bind(u, (void *)&ua, sizeof ua))
        DIE("bind udp");
    int un = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun;
    socklen_t sl = abstract_addr(&sun);
    if (bind(un, (void *)&sun, sl) || listen(un, 2))
        DIE("unix listen");
    pid_t c = fork();
    if (c == 0) {
        close(l);
        close(k);
        close(acc);
        close(u);
        close(un);
        wait_go();
        int x = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in ca = lo_addr(47001);
        if (connect(x, (void *)&ca, sizeof ca))
            _exit(3);
        if (write(x, "child", 5) != 5)
            _exit(4);
        close(x);
        _exit(0);
    }
    sleep_ms(50); /* the bytes reach the accepted side's queue */
    info("child", "%d", (int)c);
    ready();
    wait_go();
    ns_link(getpid(), "net", mine, sizeof mine);
    CHECK(strcmp(mine, host) != 0, "back in the host's network namespace (%s)", mine);
    char b[16] = { 0 };
    CHECK(read_n(acc, b, 4) == 0 && !memcmp(b, "ping", 4), "accepted side read '%s'", b);
    CHECK(write(acc, "pong", 4) == 4, "write pong: %s", strerror(errno));
    memset(b, 0, sizeof b);
    CHECK(read_n(k, b, 4) == 0 && !memcmp(b, "pong", 4), "client read '%s'", b);
    int ch = accept(l, NULL, NULL);
    memset(b, 0, sizeof b);
    CHECK(ch >= 0 && read_n(ch, b, 5) == 0 && !memcmp(b, "child", 5), "child's connection: '%s' (%s)", b, strerror(errno));
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(sendto(d, "dgram", 5, 0, (void *)&ua, sizeof ua) == 5, "sendto: %s", strerror(errno));
    memset(b, 0, sizeof b);
    CHECK(recv(u, b, sizeof b, 0) == 5 && !memcmp(b, "dgram", 5), "bound UDP socket got '%s'", b);
    int x = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(x, (void *)&sun, sl) == 0, "connecting to the abstract unix name: %s", strerror(errno));
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    return finish();
}
