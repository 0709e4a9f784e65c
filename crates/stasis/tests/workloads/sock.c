/*
 * sock: holds a socket, which dump must refuse (for now) without disturbing
 * the process.
 * args: WORKDIR MODE   tcp: listening TCP socket on 127.0.0.1:0 (no traffic)
 *                      unix: AF_UNIX socketpair with 5 unread bytes (supported)
 *                      unixbound: a unix stream socket listening on WORKDIR/listener.sock
 *                      udp: UDP socket bound to 127.0.0.1:0
 * A second thread sleeps in nanosleep and records its tid.
 * Prints "INFO fd=N" (the socket's fd).  After go: the socket still works
 * (same port / data still there), the thread is intact, nobody traces us.
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
    int fd = -1, peer = -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    if (strcmp(mode, "tcp") == 0 || strcmp(mode, "udp") == 0) {
        fd = socket(AF_INET, (mode[0] == 't' ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (struct sockaddr *)&sa, &sl))
            DIE("socket/bind");
        if (mode[0] == 't' && listen(fd, 4))
            DIE("listen");
    } else if (strcmp(mode, "unixbound") == 0) {
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        snprintf(un.sun_path, sizeof un.sun_path, "%s", wl_path("listener.sock"));
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
    int port = ntohs(sa.sin_port);
    info("fd", "%d", fd);
    info("port", "%d", port);
    info("thread", "%d", (int)t_tid);
    ready();
    wait_go();

    CHECK(tracer_pid() == 0, "still traced by pid %d", tracer_pid());
    if (strcmp(mode, "unixbound") == 0) {
        int c = accept(fd, NULL, NULL);
        CHECK(c < 0 && errno == EAGAIN, "accept on the idle unix listener: %d (%s)", c, strerror(errno));
    } else if (peer < 0) {
        struct sockaddr_in now;
        socklen_t nl = sizeof now;
        CHECK(getsockname(fd, (struct sockaddr *)&now, &nl) == 0 && ntohs(now.sin_port) == port,
              "socket lost its address");
        if (mode[0] == 't') {
            int c = accept(fd, NULL, NULL);
            CHECK(c < 0 && errno == EAGAIN, "accept on the idle listener: %d (%s)", c, strerror(errno));
        }
    } else {
        char b[8] = { 0 };
        CHECK(read(peer, b, sizeof b) == 5 && memcmp(b, "hello", 5) == 0, "unix socket data lost");
    }
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    return finish();
}
