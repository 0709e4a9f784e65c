/*
 * unix_oob: out-of-band bytes (MSG_OOB) pending on unix stream sockets.
 *   a  "ab", '!' with MSG_OOB, "cd": a read gives "ab" (it stops at the mark), then
 *      SIOCATMARK says 1, recv(MSG_OOB) gives '!', a read gives "cd".
 *   b  the same, "ab" already read before the dump: at the mark, the OOB byte next.
 *   c  SO_OOBINLINE on: "xy", 'Q' with MSG_OOB, "z": reads "xy", then at the mark,
 *      "Qz" in line; recv(MSG_OOB) says EINVAL.
 *   d  "ab", "1" with MSG_OOB, "cd", "2" with MSG_OOB, "ef": the second OOB byte makes
 *      the first ordinary data: reads "ab1cd", then '2' out of band, then "ef".
 * argv[2] "creds": only pair e, whose reader has SO_PASSCRED (so each piece carries its
 *      writer's credentials) — "a", 'X' with MSG_OOB, "c": the dump refuses it (an
 *      out-of-band byte is not requeued with credentials); the live process then
 *      reads it right.
 */
#include "common.h"
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static int at_mark(int s)
{
    int m = -1;
    if (ioctl(s, SIOCATMARK, &m) < 0)
        return -errno;
    return m;
}

static void sendx(int s, const char *d, int flags)
{
    if (send(s, d, strlen(d), flags) != (ssize_t)strlen(d))
        DIE("send");
}

/* `before`, then `oob` with MSG_OOB, then `after` */
static void send_around(int s, const char *before, const char *oob, const char *after)
{
    sendx(s, before, 0);
    sendx(s, oob, MSG_OOB);
    sendx(s, after, 0);
}

/* a read of up to 16 bytes must give exactly `want` */
static void read_is(int s, const char *pair, const char *want)
{
    char b[17] = { 0 };
    ssize_t n = recv(s, b, 16, MSG_DONTWAIT);
    CHECK(n == (ssize_t)strlen(want) && !memcmp(b, want, n), "pair %s: read %zd '%s', want '%s'", pair, n, n > 0 ? b : "", want);
}

static void oob_is(int s, const char *pair, char want)
{
    char o = 0;
    ssize_t n = recv(s, &o, 1, MSG_OOB | MSG_DONTWAIT);
    CHECK(n == 1 && o == want, "pair %s: recv(MSG_OOB) %zd (%s) '%c', want '%c'", pair, n, n < 0 ? strerror(errno) : "", o, want);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int amb = argc > 2 && !strcmp(argv[2], "creds");
    int a[2], b[2], c[2], d[2], e[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) || socketpair(AF_UNIX, SOCK_STREAM, 0, b) || socketpair(AF_UNIX, SOCK_STREAM, 0, c) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, d) || socketpair(AF_UNIX, SOCK_STREAM, 0, e))
        DIE("socketpair");
    if (amb) {
        int one = 1;
        setsockopt(e[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
        send_around(e[0], "a", "X", "c");
    } else {
        send_around(a[0], "ab", "!", "cd");
        send_around(b[0], "ab", "!", "cd");
        char x[2];
        if (recv(b[1], x, 2, 0) != 2)
            DIE("recv b");
        int one = 1;
        setsockopt(c[1], SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
        send_around(c[0], "xy", "Q", "z");
        send_around(d[0], "ab", "1", "cd");
        sendx(d[0], "2", MSG_OOB);
        sendx(d[0], "ef", 0);
    }
    ready();
    wait_go();

    if (amb) {
        read_is(e[1], "e", "a");
        CHECK(at_mark(e[1]) == 1, "pair e: SIOCATMARK %d at the mark", at_mark(e[1]));
        oob_is(e[1], "e", 'X');
        read_is(e[1], "e", "c");
        return finish();
    }
    CHECK(at_mark(a[1]) == 0, "pair a: SIOCATMARK %d before the data", at_mark(a[1]));
    read_is(a[1], "a", "ab");
    CHECK(at_mark(a[1]) == 1, "pair a: SIOCATMARK %d at the mark", at_mark(a[1]));
    oob_is(a[1], "a", '!');
    read_is(a[1], "a", "cd");

    CHECK(at_mark(b[1]) == 1, "pair b: SIOCATMARK %d at the mark", at_mark(b[1]));
    oob_is(b[1], "b", '!');
    read_is(b[1], "b", "cd");

    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(c[1], SOL_SOCKET, SO_OOBINLINE, &v, &l);
    CHECK(v == 1, "pair c: SO_OOBINLINE %d", v);
    char o;
    CHECK(recv(c[1], &o, 1, MSG_OOB | MSG_DONTWAIT) < 0 && errno == EINVAL, "pair c: recv(MSG_OOB) with SO_OOBINLINE did not fail");
    read_is(c[1], "c", "xy");
    CHECK(at_mark(c[1]) == 1, "pair c: SIOCATMARK %d at the mark", at_mark(c[1]));
    read_is(c[1], "c", "Qz");

    read_is(d[1], "d", "ab1cd");
    oob_is(d[1], "d", '2');
    read_is(d[1], "d", "ef");
    return finish();
}
