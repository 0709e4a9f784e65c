/*
 * socketpair: unix socket pairs with both ends in the process.
 *   s[0],s[1] SOCK_STREAM: 7 bytes queued for s[1] ("to-one\n"), 6000 bytes queued for
 *             s[0] (pattern); s[1] is O_NONBLOCK.
 *   h[0],h[1] SOCK_STREAM: h[0] did shutdown(SHUT_WR) after sending "bye": h[1] reads
 *             "bye" then EOF.
 *   d[0],d[1] SOCK_DGRAM, empty;  q[0],q[1] SOCK_SEQPACKET, empty.
 * After restore: queues intact and in order, flags and types kept, EOF kept, and all
 * pairs still carry new data both ways (messages keep their boundaries).
 */
#include "common.h"
#include <sys/socket.h>

static int s[2], h[2], d[2], q[2];

static int type_of(int fd)
{
    int t = -1;
    socklen_t l = sizeof t;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l);
    return t;
}

static int roundtrip_ok(int a, int b, const char *msg)
{
    char buf[64] = { 0 };
    size_t n = strlen(msg);
    return write(a, msg, n) == (ssize_t)n && read(b, buf, sizeof buf) == (ssize_t)n && !memcmp(buf, msg, n);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    static unsigned char big[6000];
    for (int i = 0; i < 6000; i++)
        big[i] = (unsigned char)(i * 13 + 7);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_STREAM, 0, h) ||
        socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q))
        DIE("socketpair");
    if (write(s[0], "to-one\n", 7) != 7 || write(s[1], big, sizeof big) != (ssize_t)sizeof big)
        DIE("write");
    fcntl(s[1], F_SETFL, O_NONBLOCK);
    if (write(h[0], "bye", 3) != 3 || shutdown(h[0], SHUT_WR))
        DIE("shutdown");
    ready();
    wait_go();

    char b[16] = { 0 };
    CHECK(read(s[1], b, sizeof b) == 7 && !memcmp(b, "to-one\n", 7), "queue of s[1] lost: '%s'", b);
    static unsigned char got[6000];
    size_t have = 0;
    while (have < sizeof got) {
        ssize_t n = read(s[0], got + have, sizeof got - have);
        if (n <= 0)
            break;
        have += n;
    }
    CHECK(have == sizeof got && !memcmp(got, big, sizeof got), "queue of s[0]: %zu bytes / differs", have);
    CHECK(fcntl(s[1], F_GETFL) & O_NONBLOCK, "s[1] lost O_NONBLOCK");
    CHECK(!(fcntl(s[0], F_GETFL) & O_NONBLOCK), "s[0] gained O_NONBLOCK");
    errno = 0;
    CHECK(read(s[1], b, sizeof b) == -1 && errno == EAGAIN, "empty nonblocking s[1]: errno %d", errno);
    memset(b, 0, sizeof b);
    CHECK(read(h[1], b, sizeof b) == 3 && !memcmp(b, "bye", 3), "h[1] data '%s'", b);
    CHECK(read(h[1], b, sizeof b) == 0, "h[1] should see EOF (peer shut down writing)");
    CHECK(roundtrip_ok(h[1], h[0], "back"), "h[1] -> h[0] no longer works");
    CHECK(type_of(s[0]) == SOCK_STREAM && type_of(d[0]) == SOCK_DGRAM && type_of(q[1]) == SOCK_SEQPACKET,
          "socket types changed");
    CHECK(roundtrip_ok(s[0], s[1], "ping") && roundtrip_ok(s[1], s[0], "pong"), "stream pair broken");
    CHECK(roundtrip_ok(d[0], d[1], "dgram") && roundtrip_ok(d[1], d[0], "gramd"), "dgram pair broken");
    CHECK(write(q[0], "m1", 2) == 2 && write(q[0], "m2", 2) == 2, "seqpacket write");
    memset(b, 0, sizeof b);
    CHECK(read(q[1], b, sizeof b) == 2 && !memcmp(b, "m1", 2), "seqpacket boundary lost");
    return finish();
}
