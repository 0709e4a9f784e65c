/*
 * unix_opts: SOL_SOCKET options of unix sockets, read back after restore.
 *   s[0],s[1]  stream pair, "hello" queued for s[1]; s[1]: SO_RCVTIMEO 7.25 s,
 *              SO_SNDTIMEO 3 s, SO_RCVLOWAT 3, SO_PRIORITY 5, SO_MARK 77, SO_LINGER on
 *              9 s, SO_PASSPIDFD, SO_PASSRIGHTS off (where the kernel has it); s[0]:
 *              SO_SNDBUF set (so SO_BUF_LOCK reads 1 there, 0 on the others).
 *   d[0],d[1]  datagram pair; d[1] has a datagram queued carrying a pipe's read end
 *              (SCM_RIGHTS), then a classic BPF filter that drops everything, locked.
 *   l, c, a    a listener on WORKDIR/l.sock with SO_RCVTIMEO 2.5 s, a client connected to
 *              it with SO_SNDTIMEO 1.5 s, and the accepted end with SO_RCVLOWAT 2.
 * Every option of a list is read on every socket before the dump and compared after
 * restore (same bytes, same errno), and the values set are checked by name: the queued
 * bytes and the queued datagram (with its fd) are there, the filter drops a new
 * datagram and the lock still refuses a detach.
 */
#include "common.h"
#include <linux/filter.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83
#endif
#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

static const struct {
    int opt;
    const char *name;
    socklen_t len;
} opts[] = {
    { SO_RCVTIMEO, "SO_RCVTIMEO", sizeof(struct timeval) },
    { SO_SNDTIMEO, "SO_SNDTIMEO", sizeof(struct timeval) },
    { SO_RCVLOWAT, "SO_RCVLOWAT", 4 },
    { SO_PRIORITY, "SO_PRIORITY", 4 },
    { SO_MARK, "SO_MARK", 4 },
    { SO_LINGER, "SO_LINGER", sizeof(struct linger) },
    { SO_PASSPIDFD, "SO_PASSPIDFD", 4 },
    { SO_PASSRIGHTS, "SO_PASSRIGHTS", 4 },
    { SO_PASSCRED, "SO_PASSCRED", 4 },
    { SO_BUF_LOCK, "SO_BUF_LOCK", 4 },
    { SO_RCVBUF, "SO_RCVBUF", 4 },
    { SO_SNDBUF, "SO_SNDBUF", 4 },
    { SO_LOCK_FILTER, "SO_LOCK_FILTER", 4 },
    { SO_KEEPALIVE, "SO_KEEPALIVE", 4 },
    { SO_OOBINLINE, "SO_OOBINLINE", 4 },
};
#define NOPTS (int)(sizeof opts / sizeof opts[0])
#define NSOCKS 7

struct snap {
    unsigned char v[32];
    socklen_t len;
    int err;
};

static void take(int fd, struct snap *out)
{
    for (int i = 0; i < NOPTS; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].len = opts[i].len;
        if (getsockopt(fd, SOL_SOCKET, opts[i].opt, out[i].v, &out[i].len) < 0)
            out[i].err = errno;
    }
}

static int geti(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, opt, &v, &l);
    return v;
}

static void seti(int fd, int opt, int v)
{
    if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) < 0 && !(opt == SO_PASSRIGHTS && errno == ENOPROTOOPT))
        DIE("setsockopt");
}

static void settv(int fd, int opt, long sec, long usec)
{
    struct timeval tv = { sec, usec };
    if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) < 0)
        DIE("setsockopt timeout");
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int s[2], d[2], p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || pipe(p))
        DIE("socketpair");
    if (write(s[0], "hello", 5) != 5)
        DIE("write");
    settv(s[1], SO_RCVTIMEO, 7, 250000);
    settv(s[1], SO_SNDTIMEO, 3, 0);
    seti(s[1], SO_RCVLOWAT, 3);
    seti(s[1], SO_PRIORITY, 5);
    seti(s[1], SO_MARK, 77);
    struct linger lg = { 1, 9 };
    if (setsockopt(s[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg))
        DIE("SO_LINGER");
    seti(s[1], SO_PASSPIDFD, 1);
    seti(s[1], SO_PASSRIGHTS, 0);
    seti(s[0], SO_SNDBUF, 50000);

    // a datagram with a pipe's read end, then a filter that drops everything, locked
    if (write(p[1], "piped", 5) != 5)
        DIE("write pipe");
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { "dgram", 5 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET, cm->cmsg_type = SCM_RIGHTS, cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    if (sendmsg(d[0], &mh, 0) != 5)
        DIE("sendmsg");
    close(p[0]);
    struct sock_filter drop[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
    struct sock_fprog prog = { 1, drop };
    if (setsockopt(d[1], SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog))
        DIE("SO_ATTACH_FILTER");
    seti(d[1], SO_LOCK_FILTER, 1);

    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", wl_path("l.sock"));
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (void *)&sa, sizeof sa) || listen(l, 4) || connect(c, (void *)&sa, sizeof sa))
        DIE("listen/connect");
    int a = accept(l, NULL, NULL);
    if (a < 0)
        DIE("accept");
    settv(l, SO_RCVTIMEO, 2, 500000);
    settv(c, SO_SNDTIMEO, 1, 500000);
    seti(a, SO_RCVLOWAT, 2);

    int fds[NSOCKS] = { s[0], s[1], d[0], d[1], l, c, a };
    const char *names[NSOCKS] = { "s[0]", "s[1]", "d[0]", "d[1]", "listener", "client", "accepted" };
    static struct snap before[NSOCKS][NOPTS], after[NSOCKS][NOPTS];
    for (int i = 0; i < NSOCKS; i++)
        take(fds[i], before[i]);
    ready();
    wait_go();

    for (int i = 0; i < NSOCKS; i++) {
        take(fds[i], after[i]);
        for (int j = 0; j < NOPTS; j++) {
            struct snap *b = &before[i][j], *g = &after[i][j];
            CHECK(b->err == g->err && b->len == g->len && !memcmp(b->v, g->v, sizeof b->v),
                  "%s %s: before err %d len %u %02x%02x%02x%02x..., after err %d len %u %02x%02x%02x%02x...", names[i], opts[j].name,
                  b->err, b->len, b->v[0], b->v[1], b->v[2], b->v[3], g->err, g->len, g->v[0], g->v[1], g->v[2], g->v[3]);
        }
    }
    struct timeval tv;
    socklen_t tl = sizeof tv;
    getsockopt(s[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
    CHECK(tv.tv_sec == 7 && tv.tv_usec >= 240000 && tv.tv_usec <= 260000, "s[1] SO_RCVTIMEO %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    getsockopt(s[1], SOL_SOCKET, SO_SNDTIMEO, &tv, &tl);
    CHECK(tv.tv_sec == 3 && tv.tv_usec == 0, "s[1] SO_SNDTIMEO %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    getsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
    CHECK(tv.tv_sec == 2 && tv.tv_usec >= 490000 && tv.tv_usec <= 510000, "listener SO_RCVTIMEO %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    CHECK(geti(s[1], SO_RCVLOWAT) == 3, "s[1] SO_RCVLOWAT %d", geti(s[1], SO_RCVLOWAT));
    CHECK(geti(a, SO_RCVLOWAT) == 2, "accepted SO_RCVLOWAT %d", geti(a, SO_RCVLOWAT));
    CHECK(geti(s[1], SO_PRIORITY) == 5 && geti(s[1], SO_MARK) == 77, "s[1] priority %d mark %d", geti(s[1], SO_PRIORITY), geti(s[1], SO_MARK));
    CHECK(geti(s[1], SO_PASSPIDFD) == 1, "s[1] SO_PASSPIDFD %d", geti(s[1], SO_PASSPIDFD));
    CHECK(geti(d[1], SO_LOCK_FILTER) == 1, "d[1] SO_LOCK_FILTER %d", geti(d[1], SO_LOCK_FILTER));
    CHECK(geti(s[0], SO_BUF_LOCK) == 1 && geti(s[1], SO_BUF_LOCK) == 0, "SO_BUF_LOCK %d %d", geti(s[0], SO_BUF_LOCK), geti(s[1], SO_BUF_LOCK));
    struct sock_filter got[4];
    socklen_t gl = 4; // SO_GET_FILTER: a length in instructions
    CHECK(getsockopt(d[1], SOL_SOCKET, SO_GET_FILTER, got, &gl) == 0 && gl == 1 && got[0].code == (BPF_RET | BPF_K) && got[0].k == 0,
          "d[1] filter: %u instructions", gl);
    int zero = 0;
    CHECK(setsockopt(d[1], SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero) < 0 && errno == EPERM, "the locked filter detached");

    char b[16] = { 0 };
    CHECK(recv(s[1], b, sizeof b, MSG_DONTWAIT) == 5 && !memcmp(b, "hello", 5), "s[1] queue '%s'", b);
    // the datagram queued before the filter, with its fd; a new one is dropped
    memset(cbuf, 0, sizeof cbuf);
    char db[16] = { 0 };
    struct iovec riov = { db, sizeof db };
    struct msghdr rh = { .msg_iov = &riov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    ssize_t n = recvmsg(d[1], &rh, MSG_DONTWAIT);
    int got_fd = -1;
    if (n > 0 && (cm = CMSG_FIRSTHDR(&rh)) && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&got_fd, CMSG_DATA(cm), sizeof got_fd);
    CHECK(n == 5 && !memcmp(db, "dgram", 5) && got_fd >= 0, "d[1] queued datagram: %zd '%s' fd %d", n, db, got_fd);
    if (got_fd >= 0) {
        char pb[8] = { 0 };
        CHECK(read(got_fd, pb, sizeof pb) == 5 && !memcmp(pb, "piped", 5), "fd in flight reads '%s'", pb);
    }
    CHECK(send(d[0], "new", 3, 0) == 3, "send to d[1]: %s", strerror(errno));
    CHECK(recv(d[1], db, sizeof db, MSG_DONTWAIT) < 0 && errno == EAGAIN, "the filter let a new datagram in");
    return finish();
}
