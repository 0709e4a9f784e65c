/*
 * ext_unix: fd 5 is a unix stream socket connected to a socket the test holds (outside
 * the dumped tree), as a client of a local database holds its connection. The test
 * wrote "queued" before READY (it stays unread until after restore only if the socket
 * is the same; a socket handed over at restore starts empty). After go: reads what the
 * peer sends ("question"), answers "answer:question" — through whatever socket fd 5
 * is after restore.
 */
#include "common.h"
#include <sys/socket.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int t = -1;
    socklen_t l = sizeof t;
    if (getsockopt(5, SOL_SOCKET, SO_TYPE, &t, &l) || t != SOCK_STREAM)
        DIE("fd 5 must be a unix stream socket");
    ready();
    wait_go();
    char buf[64] = { 0 };
    ssize_t n = read(5, buf, sizeof buf - 1);
    CHECK(n == 8 && !memcmp(buf, "question", 8), "read %zd bytes '%s' from fd 5", n, buf);
    char out[80];
    int m = snprintf(out, sizeof out, "answer:%s", buf);
    CHECK(write(5, out, m) == m, "write to fd 5: %s", strerror(errno));
    return finish();
}
