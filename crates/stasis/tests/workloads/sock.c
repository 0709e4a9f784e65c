/*
 * sock: holds a socket.
 * args: WORKDIR MODE   tcp: listening TCP socket on 127.0.0.1:0 (no traffic), backlog 7
 *                      udp: UDP socket bound to 127.0.0.1:0, SO_REUSEADDR set
 *                      unix: AF_UNIX socketpair with 5 unread bytes
 *                      unixbound: a unix stream socket listening on WORKDIR/listener.sock
 *                      tcpconn: an established TCP connection, both ends here, with
 *                               3 and 4 bytes unread in the two directions (TCP_REPAIR)
 *                      tcphalf: a TCP socket in CLOSE_WAIT (peer closed): it reads end
 *                               of file after go
 * A second thread sleeps in nanosleep and records its tid.
 * Prints "INFO fd=N" (the socket's fd).  After go: the socket still works (same
 * port; a client connects and is accepted / a datagram to itself arrives / queued
 * data still there), the thread is intact, nobody traces us.
 */
#include "common.h"
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

static int released;
static pid_t t_tid;

static void *thr(void *a)
{
    (void)a;
    t_tid = wl_gettid();
    while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST))
        sleep_ms(10);
    CHECK(wl_gettid() == t_tid, "thread tid changed");
    return NULL;
}

static int tracer_pid(void)
{
    static char buf[8192];
    if (read_file("/proc/self/status", buf, sizeof buf) < 0)
        return -1;
    char *t = strstr(buf, "TracerPid:");
    return t ? atoi(t + 10) : -1;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "tcp";
    int fd = -1, peer = -1, port = 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    snprintf(un.sun_path, sizeof un.sun_path, "%s", wl_path("listener.sock"));
    if (!strcmp(mode, "tcp") || !strcmp(mode, "udp") || !strcmp(mode, "tcpconn") || !strcmp(mode, "tcphalf")) {
        fd = socket(AF_INET, (mode[0] == 't' ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
            bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (struct sockaddr *)&sa, &sl))
            DIE("socket/bind");
        if (mode[0] == 't' && listen(fd, 7))
            DIE("listen");
        port = ntohs(sa.sin_port);
        if (!strcmp(mode, "tcpconn") || !strcmp(mode, "tcphalf")) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa))
                DIE("connect");
            sleep_ms(20);
            int a = accept(fd, NULL, NULL);
            if (a < 0)
                DIE("accept");
            close(fd);
            fd = c;
            peer = a;
            if (!strcmp(mode, "tcphalf")) {
                close(a); /* c goes to CLOSE_WAIT */
                peer = -1;
            } else if (write(c, "abc", 3) != 3 || write(a, "defg", 4) != 4) {
                DIE("write");
            }
            sleep_ms(20);
        }
    } else if (!strcmp(mode, "unixbound")) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) || listen(fd, 4))
            DIE("unix bind/listen");
    } else {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
            DIE("socketpair");
        fd = sv[0];
        peer = sv[1];
        if (write(fd, "hello", 5) != 5)
            DIE("write");
    }
    pthread_t th;
    if (pthread_create(&th, NULL, thr, NULL))
        DIE("pthread_create");
    while (!__atomic_load_n(&t_tid, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    info("fd", "%d", fd);
    info("port", "%d", port);
    info("thread", "%d", (int)t_tid);
    ready();
    wait_go();

    CHECK(tracer_pid() == 0, "still traced by pid %d", tracer_pid());
    if (!strcmp(mode, "tcp") || !strcmp(mode, "udp")) {
        struct sockaddr_in now;
        socklen_t nl = sizeof now;
        CHECK(getsockname(fd, (struct sockaddr *)&now, &nl) == 0 && ntohs(now.sin_port) == port,
              "socket lost its address");
        int one = 0;
        socklen_t ol = sizeof one;
        CHECK(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, &ol) == 0 && one, "SO_REUSEADDR lost");
        CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
        if (mode[0] == 't') {
            int c = accept(fd, NULL, NULL);
            CHECK(c < 0 && errno == EAGAIN, "accept on the idle listener: %d (%s)", c, strerror(errno));
            int cl = socket(AF_INET, SOCK_STREAM, 0);
            CHECK(cl >= 0 && connect(cl, (struct sockaddr *)&now, nl) == 0, "connect to the restored listener: %s",
                  strerror(errno));
            int acc = -1;
            for (int i = 0; i < 100 && acc < 0; i++) {
                acc = accept(fd, NULL, NULL);
                if (acc < 0)
                    sleep_ms(10);
            }
            CHECK(acc >= 0 && write(cl, "hi", 2) == 2, "restored listener did not accept");
            char b[4] = { 0 };
            CHECK(acc >= 0 && read(acc, b, 2) == 2 && !memcmp(b, "hi", 2), "no data over the accepted connection");
        } else {
            CHECK(sendto(fd, "dg", 2, 0, (struct sockaddr *)&now, nl) == 2, "sendto self: %s", strerror(errno));
            char b[4] = { 0 };
            ssize_t n = -1;
            for (int i = 0; i < 100 && n < 0; i++) {
                n = recv(fd, b, sizeof b, 0);
                if (n < 0)
                    sleep_ms(10);
            }
            CHECK(n == 2 && !memcmp(b, "dg", 2), "datagram to itself not received");
        }
    } else if (!strcmp(mode, "unixbound")) {
        int c = accept(fd, NULL, NULL);
        CHECK(c < 0 && errno == EAGAIN, "accept on the idle unix listener: %d (%s)", c, strerror(errno));
        int cl = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(cl >= 0 && connect(cl, (struct sockaddr *)&un, sizeof un) == 0, "connect to %s: %s", un.sun_path,
              strerror(errno));
        int acc = accept(fd, NULL, NULL);
        CHECK(acc >= 0, "restored unix listener did not accept: %s", strerror(errno));
    } else if (!strcmp(mode, "tcpconn")) {
        char b[8] = { 0 };
        CHECK(read(peer, b, sizeof b) == 3 && !memcmp(b, "abc", 3), "server side lost its unread bytes: '%s'", b);
        memset(b, 0, sizeof b);
        CHECK(read(fd, b, sizeof b) == 4 && !memcmp(b, "defg", 4), "client side lost its unread bytes: '%s'", b);
        CHECK(write(fd, "x", 1) == 1, "connection broken");
        CHECK(read(peer, b, 1) == 1 && b[0] == 'x', "connection lost data");
        CHECK(write(peer, "y", 1) == 1 && read(fd, b, 1) == 1 && b[0] == 'y', "reverse direction broken");
    } else if (!strcmp(mode, "tcphalf")) {
        char b[2];
        CHECK(read(fd, b, 1) == 0, "CLOSE_WAIT socket should read EOF");
    } else {
        char b[8] = { 0 };
        CHECK(read(peer, b, sizeof b) == 5 && memcmp(b, "hello", 5) == 0, "unix socket data lost");
    }
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    return finish();
}
