/*
 * inet: IP sockets with options and states (tests/inet_sockets.rs).
 * args: WORKDIR MODE [result]
 *   opts    IPv4: a TCP listener, a UDP socket and an established TCP connection (both
 *           ends here, bytes unread both ways), each with many options set (keepalive
 *           and its TCP parameters, linger, locked and unlocked buffer sizes, priority,
 *           mark, device, timestamps, TOS/TTL, freebind, transparent, multicast TTL/
 *           loop/interface, TCP congestion control, user timeout, MSS, defer-accept,
 *           fast open, a classic BPF filter then SO_LOCK_FILTER...)
 *   v6      IPv6: a TCP listener on [::1] (V6ONLY, TCLASS, hop limit, RECVPKTINFO),
 *           a dual-stack UDP socket connected to a v4-mapped address of an IPv4 UDP
 *           socket, an established connection over ::1 with bytes unread
 *   kinds   ICMP ping sockets (v4, v6), raw sockets (ICMP with ICMP_FILTER, IPPROTO_RAW,
 *           UDP with IP_HDRINCL, ICMPv6 with ICMP6_FILTER), UDP-Lite with checksum
 *           coverage; needs net.ipv4.ping_group_range to hold gid 0
 *   shutrd  an established connection whose reading side was shut down (SHUT_RD),
 *           3 bytes unread: they are still read, then end of file; writing still works
 *   synsent a listener with backlog 0 holding one connection nobody accepted (dumped
 *           with --skip-in-flight) and a non-blocking connect to it stuck in SYN_SENT
 *           (TCP_KEEPIDLE 55, TCP_NODELAY): after go the connect completes and the
 *           listener accepts it (restored: at once, connected again with an empty
 *           queue; not dumped or --leave-running: once the queued one is accepted and
 *           the SYN is sent again)
 *   mcast   multicast memberships: an IPv4 UDP socket in 239.1.2.3 (plain join on lo),
 *           232.1.1.1 (source-specific: 127.0.0.2 and 127.0.0.3) and 239.4.4.4 (127.0.0.9
 *           blocked), an IPv6 one in ff15::1234 on lo, and a socket in no group: each
 *           filter reads back the same (MCAST_MSFILTER), a datagram sent to 239.1.2.3
 *           arrives, the other socket is in no group
 *   finwait PORT  a connection to a peer outside (the test, on 127.0.0.1:PORT) that we
 *           shut down for writing (FIN_WAIT2) with the peer's "from-peer" unread: after
 *           go it reads "from-peer" + "more" + end of file (the peer writes and closes
 *           after go), writing fails with EPIPE, and the connection ends CLOSE (our FIN
 *           was acknowledged: went FIN_WAIT2 -> TIME_WAIT, not CLOSING)
 *   timewait  a listener without SO_REUSEADDR whose port has a connection in TIME_WAIT
 *           (we closed an accepted connection first; INFO port): restore removes that
 *           TIME_WAIT to bind it again (another one there it must leave and say so);
 *           after go the listener reads back the same and accepts
 *   md5     a listener with a TCP_MD5SIG key: the dump must refuse it (keys are not
 *           saved); the listener still accepts after go
 *   closewait PORT  a connection to a peer outside (the test, on 127.0.0.1:PORT) that
 *           closed its side after sending "bye" (CLOSE_WAIT, "bye" unread): after go
 *           "bye" is read, then end of file; "reply" written reaches the peer, which
 *           reads it and our end of file once we exit
 *   finished  a loopback connection closed both ways (both fds in state CLOSE, kept):
 *           after go each reads end of file, polls POLLHUP|POLLRDHUP, sends EPIPE,
 *           has no peer
 *   closewait_eof PORT  the same with "bye" and the end of file read before READY:
 *           after go the end of file again, and "reply" reaches the peer
 *   urgent  four established connections (both ends here), each peer end sent "ab",
 *           OOB "c", "de": 0 nothing read (F_SETOWN to us, SIGURG counted), 1 "ab" read
 *           (at the mark), 2 SO_OOBINLINE on, 3 "ab" and the urgent byte read (MSG_OOB).
 *           After go each shows the same: POLLPRI, SIOCATMARK before/at/after the mark,
 *           recv(MSG_OOB) gives 'c' (EINVAL inline and once read), the normal bytes
 *           skip it (inline: include it), then nothing; bytes flow both ways after.
 *           And one over ::1 with 3000 bytes, OOB 'U', 100000 bytes, all unread (the
 *           reader's SO_RCVBUF 1 MiB), and one whose peer also shut down for writing
 *           (CLOSE_WAIT: the same, then end of file). Prints "NOTE sigurg=N"
 *           (connection 0's SIGURGs)
 *   synblock  like synsent, but a second thread sits in a blocking connect() (prints
 *           INFO connect_tid): after go the listener's queued connection is accepted
 *           and that connect() returns 0, connected to the listener
 *   udpq    UDP sockets with datagrams queued: one on 127.0.0.1 ("one", "two2" from a
 *           sender, "three33" and an empty one from another), one on ::1 ("six"), a
 *           UDP-Lite one ("lite-one", "lite2", partial checksum coverage): after
 *           go each arrives in order with its sender's port, then nothing more
 *   udpwild UDP sockets bound to the wildcard address with datagrams queued: one with
 *           IP_PKTINFO on (a datagram to 127.0.0.1 from 127.0.0.1, one to 127.0.0.2 from
 *           127.0.0.5), one without (to 127.0.0.3), an IPv6 V6ONLY one (to ::1): after go
 *           each arrives with its sender and, where asked, its destination address;
 *           IP_PKTINFO is still off where it was
 *   halfpair  both ends of a connection here, one shut down for writing (FIN_WAIT2),
 *           the other in CLOSE_WAIT, bytes unread both ways: after go the states are
 *           the same, bytes and end of file are read, the CLOSE_WAIT end writes and
 *           closes, and the FIN_WAIT2 end reads that, then end of file, and ends CLOSE
 *   closed  an established connection (both ends here, bytes unread), restored with
 *           --tcp-close: both ends read end of file, write EPIPE, getpeername ENOTCONN,
 *           the client end keeps its local port
 *   lastack  both ends of a connection here, in a network namespace of our own (lo only)
 *           where an nftables rule drops every packet to the client end: the client
 *           shut down for writing (FIN_WAIT2 once the server end acknowledged), the
 *           server end wrote "tail" and shut down too: its data and FIN are dropped, so
 *           it stays LAST_ACK with "tail" unacknowledged. The restored namespace has no
 *           rule: after go the client reads "tail" then end of file, the server end reads
 *           end of file and writing fails with EPIPE; the server end ends CLOSE without
 *           passing through TIME_WAIT (its port binds again without SO_REUSEADDR)
 *   acceptq  connections waiting in accept queues, their clients ours: an IPv4 listener
 *           (non-blocking, SO_REUSEADDR) with three, 20 ms apart: c1 (TCP_NODELAY,
 *           SO_KEEPALIVE, TCP_KEEPIDLE 77), then a forked child's, then c3, which shut
 *           down for writing (its server end is CLOSE_WAIT); an IPv6 listener on ::1 with
 *           two, c4 bound to port 0 by connect and c5 bound first. After go each
 *           listener accepts them in that order (peer port = the client's port as it was,
 *           local address the listener's), then nothing more; data flows both ways (the
 *           child writes "child-hello", reads "srv" and end of file, exits 0); the
 *           accepted end of c3 reads end of file at once, c3 still reads what it gets;
 *           the clients kept their options. The accepted ends close first, so the
 *           TIME_WAITs are the server's (a restore after a --leave-running run binds
 *           the same client ports again). And a dual-stack listener on [::] with an
 *           IPv4 client (the server end is v4-mapped). With "bytes": a sixth client that wrote
 *           "early" before being accepted (for a refused dump only)
 *   closing  the same namespace set-up, the rule dropping packets to the server end:
 *           the client wrote "c-data" and shut down (its FIN dropped: FIN_WAIT1), then
 *           the server end wrote "s-data" and shut down; the client got that and the
 *           FIN (CLOSING), its acknowledgment dropped (the server end stays FIN_WAIT1).
 *           After go both read the other's bytes then end of file, both writes fail with
 *           EPIPE, both end CLOSE
 * Every option of every socket is read (getsockopt) before READY; after go the same
 * reads must give the same bytes, before the sockets are used.
 * result (last argument): the verdict goes to WORKDIR/result (stdout stays as it was at dump time).
 */
#define WL_NET
#include "common.h"
#include <arpa/inet.h>
#include <sched.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

/* linux/icmp.h clashes with glibc's net/if.h family; what we need of it */
#define ICMP_FILTER 1
#define ICMP_ECHOREPLY 0
struct icmp_filter {
    uint32_t data;
};

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#ifndef SO_LOCK_FILTER
#define SO_LOCK_FILTER 44
#endif
#ifndef UDPLITE_SEND_CSCOV
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11
#endif
#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

/* Options read back from every socket (those a socket does not have fail alike).
 * Multicast options are skipped on TCP sockets: they cannot be set there (EINVAL) and
 * an accepted connection reads back the TTL of the SYN. */
static const struct { int level, name, len; const char *label; } probes[] = {
    { SOL_SOCKET, SO_REUSEADDR, 4, "SO_REUSEADDR" }, { SOL_SOCKET, SO_REUSEPORT, 4, "SO_REUSEPORT" },
    { SOL_SOCKET, SO_KEEPALIVE, 4, "SO_KEEPALIVE" }, { SOL_SOCKET, SO_LINGER, 8, "SO_LINGER" },
    { SOL_SOCKET, SO_RCVBUF, 4, "SO_RCVBUF" }, { SOL_SOCKET, SO_SNDBUF, 4, "SO_SNDBUF" },
    { SOL_SOCKET, SO_BUF_LOCK, 4, "SO_BUF_LOCK" }, { SOL_SOCKET, SO_RCVLOWAT, 4, "SO_RCVLOWAT" },
    { SOL_SOCKET, SO_PRIORITY, 4, "SO_PRIORITY" }, { SOL_SOCKET, SO_MARK, 4, "SO_MARK" },
    { SOL_SOCKET, SO_BINDTODEVICE, 16, "SO_BINDTODEVICE" }, { SOL_SOCKET, SO_TIMESTAMP, 4, "SO_TIMESTAMP" },
    { SOL_SOCKET, SO_TIMESTAMPNS, 4, "SO_TIMESTAMPNS" }, { SOL_SOCKET, SO_TIMESTAMPING, 8, "SO_TIMESTAMPING" },
    { SOL_SOCKET, SO_BROADCAST, 4, "SO_BROADCAST" }, { SOL_SOCKET, SO_OOBINLINE, 4, "SO_OOBINLINE" },
    { SOL_SOCKET, SO_PASSCRED, 4, "SO_PASSCRED" }, { SOL_SOCKET, SO_RCVTIMEO, 16, "SO_RCVTIMEO" },
    { SOL_SOCKET, SO_SNDTIMEO, 16, "SO_SNDTIMEO" }, { SOL_SOCKET, SO_LOCK_FILTER, 4, "SO_LOCK_FILTER" },
    { SOL_SOCKET, SO_DONTROUTE, 4, "SO_DONTROUTE" }, { SOL_SOCKET, SO_PEEK_OFF, 4, "SO_PEEK_OFF" },
    { IPPROTO_IP, IP_TOS, 4, "IP_TOS" }, { IPPROTO_IP, IP_TTL, 4, "IP_TTL" },
    { IPPROTO_IP, IP_FREEBIND, 4, "IP_FREEBIND" }, { IPPROTO_IP, IP_TRANSPARENT, 4, "IP_TRANSPARENT" },
    { IPPROTO_IP, IP_PKTINFO, 4, "IP_PKTINFO" }, { IPPROTO_IP, IP_RECVERR, 4, "IP_RECVERR" },
    { IPPROTO_IP, IP_RECVTTL, 4, "IP_RECVTTL" }, { IPPROTO_IP, IP_HDRINCL, 4, "IP_HDRINCL" },
    { IPPROTO_IP, IP_MULTICAST_TTL, 4, "IP_MULTICAST_TTL" }, { IPPROTO_IP, IP_MULTICAST_LOOP, 4, "IP_MULTICAST_LOOP" },
    { IPPROTO_IP, IP_MULTICAST_IF, 4, "IP_MULTICAST_IF" }, { IPPROTO_IP, IP_MTU_DISCOVER, 4, "IP_MTU_DISCOVER" },
    { SOL_RAW, ICMP_FILTER, 4, "ICMP_FILTER" },
    { IPPROTO_IPV6, IPV6_V6ONLY, 4, "IPV6_V6ONLY" }, { IPPROTO_IPV6, IPV6_UNICAST_HOPS, 4, "IPV6_UNICAST_HOPS" },
    { IPPROTO_IPV6, IPV6_TCLASS, 4, "IPV6_TCLASS" }, { IPPROTO_IPV6, IPV6_RECVPKTINFO, 4, "IPV6_RECVPKTINFO" },
    { IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 4, "IPV6_MULTICAST_HOPS" },
    { IPPROTO_ICMPV6, ICMP6_FILTER, 32, "ICMP6_FILTER" },
    { IPPROTO_TCP, TCP_NODELAY, 4, "TCP_NODELAY" }, { IPPROTO_TCP, TCP_KEEPIDLE, 4, "TCP_KEEPIDLE" },
    { IPPROTO_TCP, TCP_KEEPINTVL, 4, "TCP_KEEPINTVL" }, { IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT" },
    { IPPROTO_TCP, TCP_USER_TIMEOUT, 4, "TCP_USER_TIMEOUT" }, { IPPROTO_TCP, TCP_CONGESTION, 16, "TCP_CONGESTION" },
    { IPPROTO_TCP, TCP_NOTSENT_LOWAT, 4, "TCP_NOTSENT_LOWAT" }, { IPPROTO_TCP, TCP_DEFER_ACCEPT, 4, "TCP_DEFER_ACCEPT" },
    { IPPROTO_TCP, TCP_FASTOPEN, 4, "TCP_FASTOPEN" }, { IPPROTO_TCP, TCP_SYNCNT, 4, "TCP_SYNCNT" },
    { IPPROTO_TCP, TCP_LINGER2, 4, "TCP_LINGER2" },
    { IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, 4, "UDPLITE_SEND_CSCOV" },
    { IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, 4, "UDPLITE_RECV_CSCOV" },
};
#define NPROBES (int)(sizeof probes / sizeof probes[0])

/* Unconnected-only options, probed on listeners and idle sockets. */
static const struct { int level, name; const char *label; } idle_probes[] = {
    { IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG" }, { IPPROTO_TCP, TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP" },
};

static int geti(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    return getsockopt(fd, level, name, &v, &l) ? -1000 - errno : v;
}

#define MAXS 16
static struct snap {
    int fd;
    const char *name;
    int idle;
    int rc[NPROBES + 3];
    unsigned char v[NPROBES + 3][32];
    socklen_t len[NPROBES + 3];
} snaps[MAXS];
static int nsnaps;

static void read_all(struct snap *s)
{
    int i, ty = geti(s->fd, SOL_SOCKET, SO_TYPE);
    for (i = 0; i < NPROBES; i++) {
        s->len[i] = probes[i].len;
        memset(s->v[i], 0, sizeof s->v[i]);
        if (ty == SOCK_STREAM && strstr(probes[i].label, "MULTICAST")) {
            s->rc[i] = -1;
            continue;
        }
        s->rc[i] = getsockopt(s->fd, probes[i].level, probes[i].name, s->v[i], &s->len[i]) ? errno : 0;
    }
    for (int j = 0; j < 2; j++, i++) {
        s->len[i] = 4;
        memset(s->v[i], 0, sizeof s->v[i]);
        s->rc[i] = s->idle ? (getsockopt(s->fd, idle_probes[j].level, idle_probes[j].name, s->v[i], &s->len[i]) ? errno : 0) : -1;
    }
    /* the classic BPF program: its instruction count, then its first 3 instructions */
    struct sock_filter f[4];
    socklen_t n = 4;
    memset(f, 0, sizeof f);
    s->rc[i] = getsockopt(s->fd, SOL_SOCKET, SO_GET_FILTER, f, &n) ? errno : 0;
    s->len[i] = n;
    memcpy(s->v[i], f, 24);
}

static void snapshot(int fd, const char *name, int idle)
{
    if (nsnaps == MAXS)
        DIE("too many sockets");
    struct snap *s = &snaps[nsnaps++];
    s->fd = fd;
    s->name = name;
    s->idle = idle;
    read_all(s);
}

static void compare_all(void)
{
    static struct snap now;
    for (int k = 0; k < nsnaps; k++) {
        now = snaps[k];
        read_all(&now);
        for (int i = 0; i < NPROBES + 3; i++) {
            const char *label = i < NPROBES ? probes[i].label : i < NPROBES + 2 ? idle_probes[i - NPROBES].label : "SO_GET_FILTER";
            CHECK(now.rc[i] == snaps[k].rc[i] && now.len[i] == snaps[k].len[i] &&
                      !memcmp(now.v[i], snaps[k].v[i], sizeof now.v[i]),
                  "%s: %s reads back differently: rc %d len %u [%d %d] (was rc %d len %u [%d %d])", snaps[k].name,
                  label, now.rc[i], now.len[i], *(int *)now.v[i], *(int *)(now.v[i] + 4), snaps[k].rc[i],
                  snaps[k].len[i], *(int *)snaps[k].v[i], *(int *)(snaps[k].v[i] + 4));
        }
    }
}

static int seti(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v);
}

#define SET(fd, level, name, v)                                         \
    do {                                                                \
        if (seti(fd, level, name, v))                                   \
            DIE(#name);                                                 \
    } while (0)


static int port_of(int fd, int peer)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&ss, &l))
        return -errno;
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Reads exactly n bytes (waits up to 2 s). */
static int read_n(int fd, char *buf, int n)
{
    int got = 0;
    for (int i = 0; i < 200 && got < n; i++) {
        ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (r > 0)
            got += r;
        else if (r == 0)
            break;
        else
            sleep_ms(10);
    }
    return got;
}

static int accept_wait(int l)
{
    for (int i = 0; i < 300; i++) {
        int a = accept(l, NULL, NULL);
        if (a >= 0)
            return a;
        sleep_ms(10);
    }
    return -1;
}

/* Both ends of an established TCP connection to listener l (address sa). */
static void tcp_pair(int l, struct sockaddr *sa, socklen_t sl, int *c, int *a)
{
    *c = socket(sa->sa_family, SOCK_STREAM, 0);
    if (*c < 0 || connect(*c, sa, sl))
        DIE("connect");
    *a = accept_wait(l);
    if (*a < 0)
        DIE("accept");
}

/* A round trip over the connection c <-> a, and data queued before the dump. */
static void check_conn(int c, int a, const char *c_unread, const char *a_unread, const char *what)
{
    char b[64] = { 0 };
    int n = strlen(a_unread);
    CHECK(read_n(a, b, n) == n && !memcmp(b, a_unread, n), "%s: bytes queued for the accepted end: '%s'", what, b);
    memset(b, 0, sizeof b);
    n = strlen(c_unread);
    CHECK(read_n(c, b, n) == n && !memcmp(b, c_unread, n), "%s: bytes queued for the client end: '%s'", what, b);
    CHECK(write(c, "ping", 4) == 4 && read_n(a, b, 4) == 4 && !memcmp(b, "ping", 4), "%s: client -> server after go", what);
    CHECK(write(a, "pong", 4) == 4 && read_n(c, b, 4) == 4 && !memcmp(b, "pong", 4), "%s: server -> client after go", what);
}

static void check_listener(int l, struct sockaddr *sa, socklen_t sl, const char *what)
{
    int cl = socket(sa->sa_family, SOCK_STREAM, 0);
    CHECK(cl >= 0 && connect(cl, sa, sl) == 0, "%s: connect to the listener: %s", what, strerror(errno));
    CHECK(write(cl, "hi", 2) == 2, "%s: write to the listener's new client", what);
    int a = accept_wait(l);
    CHECK(a >= 0, "%s: the listener accepts no new client", what);
    char b[4];
    CHECK(a >= 0 && read_n(a, b, 2) == 2, "%s: no data over the new connection", what);
    close(cl);
    if (a >= 0)
        close(a);
}

static void check_udp_self(int u, const char *what)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    getsockname(u, (struct sockaddr *)&ss, &l);
    CHECK(sendto(u, "dg", 2, 0, (struct sockaddr *)&ss, l) == 2, "%s: sendto itself: %s", what, strerror(errno));
    char b[8] = { 0 };
    CHECK(read_n(u, b, 2) == 2 && !memcmp(b, "dg", 2), "%s: datagram to itself not received", what);
}

static struct sockaddr_in lo4(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    return a;
}

static void bind_any_port(int fd, struct sockaddr *sa, socklen_t sl)
{
    if (bind(fd, sa, sl) || getsockname(fd, sa, &sl))
        DIE("bind");
}

/* An established IPv4 connection over 127.0.0.1: client end *c, accepted end *a (the
 * listener is closed). */
static void loopback_pair(int *c, int *a)
{
    struct sockaddr_in la = lo4(0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    bind_any_port(l, (struct sockaddr *)&la, sizeof la);
    if (listen(l, 1))
        DIE("listen");
    tcp_pair(l, (struct sockaddr *)&la, sizeof la, c, a);
    close(l);
}

static int mode_opts(int phase)
{
    static int l, u, c, a, u2;
    static struct sockaddr_in la;
    if (phase == 0) {
        la = lo4(0);
        l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        SET(l, SOL_SOCKET, SO_REUSEADDR, 1);
        SET(l, SOL_SOCKET, SO_REUSEPORT, 1);
        SET(l, SOL_SOCKET, SO_PRIORITY, 5);
        SET(l, SOL_SOCKET, SO_MARK, 42);
        if (setsockopt(l, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3))
            DIE("SO_BINDTODEVICE");
        SET(l, SOL_SOCKET, SO_RCVBUF, 40000); /* locked */
        SET(l, IPPROTO_IP, IP_TOS, 0x10);
        SET(l, IPPROTO_IP, IP_TTL, 33);
        SET(l, IPPROTO_IP, IP_FREEBIND, 1);
        SET(l, IPPROTO_IP, IP_TRANSPARENT, 1);
        SET(l, IPPROTO_TCP, TCP_MAXSEG, 1000);
        SET(l, IPPROTO_TCP, TCP_WINDOW_CLAMP, 20000);
        SET(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, 5);
        SET(l, IPPROTO_TCP, TCP_FASTOPEN, 5);
        SET(l, IPPROTO_TCP, TCP_SYNCNT, 3);
        SET(l, IPPROTO_TCP, TCP_LINGER2, 11);
        if (setsockopt(l, IPPROTO_TCP, TCP_CONGESTION, "reno", 4))
            DIE("TCP_CONGESTION");
        bind_any_port(l, (struct sockaddr *)&la, sizeof la);
        if (listen(l, 9))
            DIE("listen");
        /* the client end: keepalive, linger, timeouts, TCP tuning; with TCP_DEFER_ACCEPT
         * the listener hands the connection over once data arrived */
        c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&la, sizeof la) || write(c, "hello", 5) != 5)
            DIE("connect");
        if ((a = accept_wait(l)) < 0)
            DIE("accept");
        SET(c, SOL_SOCKET, SO_KEEPALIVE, 1);
        SET(c, IPPROTO_TCP, TCP_KEEPIDLE, 77);
        SET(c, IPPROTO_TCP, TCP_KEEPINTVL, 9);
        SET(c, IPPROTO_TCP, TCP_KEEPCNT, 4);
        struct linger lg = { 1, 5 };
        if (setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg))
            DIE("SO_LINGER");
        struct timeval tv = { 3, 500000 };
        if (setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) || setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv))
            DIE("SO_RCVTIMEO");
        SET(c, SOL_SOCKET, SO_OOBINLINE, 1);
        SET(c, SOL_SOCKET, SO_TIMESTAMPNS, 1);
        SET(c, SOL_SOCKET, SO_SNDBUF, 50000); /* locked */
        SET(c, IPPROTO_TCP, TCP_NODELAY, 1);
        SET(c, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345);
        SET(c, IPPROTO_TCP, TCP_NOTSENT_LOWAT, 4096);
        SET(c, IPPROTO_IP, IP_TOS, 0x08);
        if (setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, "reno", 4))
            DIE("TCP_CONGESTION");
        /* the accepted end keeps its unlocked default buffers */
        if (write(a, "world!", 6) != 6)
            DIE("write");
        /* a peek offset on the accepted end (TCP has one since Linux 6.10): the dump
         * must still read its queue from the start */
        if (seti(a, SOL_SOCKET, SO_PEEK_OFF, 3) && errno != EOPNOTSUPP)
            DIE("SO_PEEK_OFF");
        /* UDP: broadcast, timestamps, multicast, a filter that is then locked */
        struct sockaddr_in ua = lo4(0);
        u = socket(AF_INET, SOCK_DGRAM, 0);
        SET(u, SOL_SOCKET, SO_BROADCAST, 1);
        SET(u, SOL_SOCKET, SO_TIMESTAMP, 1);
        SET(u, SOL_SOCKET, SO_DONTROUTE, 1);
        SET(u, IPPROTO_IP, IP_PKTINFO, 1);
        SET(u, IPPROTO_IP, IP_RECVERR, 1);
        SET(u, IPPROTO_IP, IP_RECVTTL, 1);
        SET(u, IPPROTO_IP, IP_MULTICAST_TTL, 7);
        SET(u, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
        SET(u, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO);
        struct in_addr lo = { htonl(INADDR_LOOPBACK) };
        if (setsockopt(u, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo))
            DIE("IP_MULTICAST_IF");
        /* accept datagrams of at least 2 bytes (plus the 8 of the UDP header), whole */
        struct sock_filter prog[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
            BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 10, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, 0xffff),
            BPF_STMT(BPF_RET | BPF_K, 0),
        };
        struct sock_fprog fp = { 4, prog };
        if (setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp))
            DIE("SO_ATTACH_FILTER");
        SET(u, SOL_SOCKET, SO_LOCK_FILTER, 1);
        bind_any_port(u, (struct sockaddr *)&ua, sizeof ua);
        /* an unbound UDP socket with SO_TIMESTAMPING and a low-water mark */
        u2 = socket(AF_INET, SOCK_DGRAM, 0);
        SET(u2, SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE);
        SET(u2, SOL_SOCKET, SO_RCVLOWAT, 7);
        sleep_ms(50);
        snapshot(l, "listener", 1);
        snapshot(c, "client end", 0);
        snapshot(a, "accepted end", 0);
        snapshot(u, "udp", 1);
        snapshot(u2, "unbound udp", 1);
        /* SOCK_RCVBUF_LOCK (2) is inherited by the accepted end; SOCK_SNDBUF_LOCK is 1 */
        CHECK(geti(l, SOL_SOCKET, SO_BUF_LOCK) == 2 && geti(a, SOL_SOCKET, SO_BUF_LOCK) == 2 &&
                  geti(c, SOL_SOCKET, SO_BUF_LOCK) == 1,
              "buffer locks before the dump: listener %d accepted %d client %d", geti(l, SOL_SOCKET, SO_BUF_LOCK),
              geti(a, SOL_SOCKET, SO_BUF_LOCK), geti(c, SOL_SOCKET, SO_BUF_LOCK));
        return 0;
    }
    compare_all();
    CHECK(geti(c, SOL_SOCKET, SO_SNDBUF) == 100000, "SO_SNDBUF %d, set 50000", geti(c, SOL_SOCKET, SO_SNDBUF));
    CHECK(geti(c, IPPROTO_TCP, TCP_KEEPIDLE) == 77, "TCP_KEEPIDLE %d", geti(c, IPPROTO_TCP, TCP_KEEPIDLE));
    check_conn(c, a, "world!", "hello", "connection");
    check_listener(l, (struct sockaddr *)&la, sizeof la, "listener");
    check_udp_self(u, "udp");
    /* the locked filter drops 1-byte datagrams and cannot be replaced */
    struct sockaddr_in ua;
    socklen_t ul = sizeof ua;
    getsockname(u, (struct sockaddr *)&ua, &ul);
    char b[4];
    CHECK(sendto(u, "x", 1, 0, (struct sockaddr *)&ua, ul) == 1 && (sleep_ms(50), recv(u, b, 4, MSG_DONTWAIT)) < 0,
          "the filter let a 1-byte datagram through");
    struct sock_filter acc = BPF_STMT(BPF_RET | BPF_K, 0xffff);
    struct sock_fprog fp = { 1, &acc };
    CHECK(setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) < 0 && errno == EPERM, "filter not locked");
    return 0;
}

static int mode_v6(int phase)
{
    static int l, u6, u4, c, a;
    static struct sockaddr_in6 la;
    static struct sockaddr_in u4a;
    if (phase == 0) {
        la = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        l = socket(AF_INET6, SOCK_STREAM, 0);
        SET(l, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        SET(l, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
        SET(l, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 9);
        SET(l, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
        bind_any_port(l, (struct sockaddr *)&la, sizeof la);
        if (listen(l, 3))
            DIE("listen");
        tcp_pair(l, (struct sockaddr *)&la, sizeof la, &c, &a);
        SET(c, IPPROTO_IPV6, IPV6_TCLASS, 0x40);
        if (write(c, "six", 3) != 3 || write(a, "sixsix", 6) != 6)
            DIE("write");
        /* IPv4 UDP socket, and a dual-stack IPv6 one connected to it (v4-mapped) */
        u4a = lo4(0);
        u4 = socket(AF_INET, SOCK_DGRAM, 0);
        bind_any_port(u4, (struct sockaddr *)&u4a, sizeof u4a);
        u6 = socket(AF_INET6, SOCK_DGRAM, 0);
        SET(u6, IPPROTO_IPV6, IPV6_V6ONLY, 0);
        SET(u6, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 5);
        struct sockaddr_in6 m = { .sin6_family = AF_INET6, .sin6_port = u4a.sin_port };
        m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&m.sin6_addr.s6_addr[12], &u4a.sin_addr, 4);
        if (connect(u6, (struct sockaddr *)&m, sizeof m))
            DIE("connect v4-mapped");
        sleep_ms(50);
        snapshot(l, "v6 listener", 1);
        snapshot(c, "v6 client end", 0);
        snapshot(a, "v6 accepted end", 0);
        snapshot(u6, "dual-stack udp", 0);
        return 0;
    }
    compare_all();
    /* unlocked buffers (autotuned by the kernel) stay unlocked */
    CHECK(geti(c, SOL_SOCKET, SO_BUF_LOCK) == 0 && geti(a, SOL_SOCKET, SO_BUF_LOCK) == 0, "v6 connection: buffers locked");
    check_conn(c, a, "sixsix", "six", "v6 connection");
    check_listener(l, (struct sockaddr *)&la, sizeof la, "v6 listener");
    char b[8] = { 0 };
    CHECK(send(u6, "m4", 2, 0) == 2 && read_n(u4, b, 2) == 2 && !memcmp(b, "m4", 2),
          "v4-mapped: the IPv6 socket's datagram did not reach the IPv4 one");
    struct sockaddr_in6 pa;
    socklen_t pl = sizeof pa;
    CHECK(getpeername(u6, (struct sockaddr *)&pa, &pl) == 0 && pa.sin6_port == u4a.sin_port && pa.sin6_addr.s6_addr[11] == 0xff,
          "v4-mapped peer lost");
    return 0;
}

static int icmp_echo(int fd, int v6, const struct sockaddr *to, socklen_t tl)
{
    unsigned char pkt[16] = { v6 ? 128 : 8, 0, 0, 0, 0, 0, 0, 1, 'p', 'i', 'n', 'g' };
    if (sendto(fd, pkt, sizeof pkt, 0, to, tl) != sizeof pkt)
        return -1;
    unsigned char r[64];
    return read_n(fd, (char *)r, 16) == 16 && r[0] == (v6 ? 129 : 0) && !memcmp(r + 8, "ping", 4) ? 0 : -2;
}

static int mode_kinds(int phase)
{
    static int p4, p6, ricmp, rraw, rudp, lite, r6;
    static struct sockaddr_in lite_a;
    if (phase == 0) {
        struct sockaddr_in a = lo4(0);
        p4 = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
        if (p4 < 0)
            DIE("ping socket (net.ipv4.ping_group_range must hold gid 0)");
        a.sin_port = htons(4242); /* the echo identifier */
        if (bind(p4, (struct sockaddr *)&a, sizeof a))
            DIE("bind ping");
        p6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
        if (p6 < 0)
            DIE("ping6 socket");
        struct sockaddr_in6 l6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        if (connect(p6, (struct sockaddr *)&l6, sizeof l6))
            DIE("connect ping6");
        ricmp = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        struct icmp_filter f = { ~(1u << ICMP_ECHOREPLY) };
        if (ricmp < 0 || setsockopt(ricmp, SOL_RAW, ICMP_FILTER, &f, sizeof f))
            DIE("raw icmp");
        struct sockaddr_in la = lo4(0);
        if (bind(ricmp, (struct sockaddr *)&la, sizeof la))
            DIE("bind raw");
        rraw = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
        rudp = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
        if (rraw < 0 || rudp < 0)
            DIE("raw");
        SET(rudp, IPPROTO_IP, IP_HDRINCL, 1);
        r6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
        struct icmp6_filter f6;
        memset(&f6, 0xff, sizeof f6);
        ICMP6_FILTER_SETPASS(129, &f6); /* echo replies only */
        if (r6 < 0 || setsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof f6))
            DIE("raw icmpv6");
        lite = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
        if (lite < 0)
            DIE("udplite");
        SET(lite, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, 20);
        SET(lite, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, 20);
        lite_a = lo4(0);
        bind_any_port(lite, (struct sockaddr *)&lite_a, sizeof lite_a);
        snapshot(p4, "ping", 1);
        snapshot(p6, "ping6", 1);
        snapshot(ricmp, "raw icmp", 1);
        snapshot(rraw, "raw IPPROTO_RAW", 1);
        snapshot(rudp, "raw udp", 1);
        snapshot(r6, "raw icmpv6", 1);
        snapshot(lite, "udplite", 1);
        info("ping_port", "%d", port_of(p4, 0));
        return 0;
    }
    compare_all();
    CHECK(port_of(p4, 0) == 4242, "ping identifier %d", port_of(p4, 0));
    struct sockaddr_in to = lo4(0);
    CHECK(icmp_echo(p4, 0, (struct sockaddr *)&to, sizeof to) == 0, "ping over the ping socket");
    struct sockaddr_in6 to6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    CHECK(icmp_echo(p6, 1, (struct sockaddr *)&to6, sizeof to6) == 0, "ping6 over the ping6 socket");
    CHECK(geti(rraw, IPPROTO_IP, IP_HDRINCL) == 1 && geti(rudp, IPPROTO_IP, IP_HDRINCL) == 1, "IP_HDRINCL lost");
    /* the raw ICMP socket saw the echo reply (its filter passes only those) */
    unsigned char r[128];
    int got = 0;
    for (int i = 0; i < 100 && !got; i++) {
        ssize_t n = recv(ricmp, r, sizeof r, MSG_DONTWAIT);
        if (n >= 28 && r[20] == 0)
            got = 1;
        else if (n < 0)
            sleep_ms(10);
    }
    CHECK(got, "the raw ICMP socket saw no echo reply");
    CHECK(sendto(lite, "lite", 4, 0, (struct sockaddr *)&lite_a, sizeof lite_a) == 4 && read_n(lite, (char *)r, 4) == 4 &&
              !memcmp(r, "lite", 4),
          "UDP-Lite datagram to itself");
    return 0;
}

static int mode_shutrd(int phase)
{
    static int c, a;
    if (phase == 0) {
        loopback_pair(&c, &a);
        if (write(a, "abc", 3) != 3)
            DIE("write");
        sleep_ms(20);
        if (shutdown(c, SHUT_RD))
            DIE("shutdown");
        snapshot(c, "shut-down end", 0);
        return 0;
    }
    compare_all();
    char b[8] = { 0 };
    CHECK(read_n(c, b, 3) == 3 && !memcmp(b, "abc", 3), "bytes queued before SHUT_RD: '%s'", b);
    CHECK(recv(c, b, sizeof b, MSG_DONTWAIT) == 0, "no end of file after SHUT_RD: %s", strerror(errno));
    CHECK(write(c, "up", 2) == 2 && read_n(a, b, 2) == 2 && !memcmp(b, "up", 2), "writing after SHUT_RD");
    return 0;
}

static int mode_synsent(int phase)
{
    static int l, q, b;
    static struct sockaddr_in la;
    if (phase == 0) {
        la = lo4(0);
        l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        bind_any_port(l, (struct sockaddr *)&la, sizeof la);
        if (listen(l, 0))
            DIE("listen");
        /* one connection fills the accept queue (backlog 0 holds one)... */
        q = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(q, (struct sockaddr *)&la, sizeof la))
            DIE("connect q");
        /* ...so the next SYN is dropped: SYN_SENT */
        b = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        SET(b, IPPROTO_TCP, TCP_KEEPIDLE, 55);
        SET(b, IPPROTO_TCP, TCP_NODELAY, 1);
        if (connect(b, (struct sockaddr *)&la, sizeof la) == 0 || errno != EINPROGRESS)
            DIE("connect b");
        sleep_ms(50);
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        if (getsockopt(b, IPPROTO_TCP, TCP_INFO, &ti, &tl) || ti.tcpi_state != TCP_SYN_SENT)
            DIE("not in SYN_SENT");
        info("listener_fd", "%d", l);
        info("connecting_fd", "%d", b);
        return 0;
    }
    /* (its buffer sizes and MSS change when it connects: only settings are compared) */
    CHECK(geti(b, IPPROTO_TCP, TCP_KEEPIDLE) == 55 && geti(b, IPPROTO_TCP, TCP_NODELAY) == 1, "options of the connecting socket");
    /* the connect completes: POLLOUT, no error, and the listener accepts it */
    int bport = port_of(b, 0), accepted = 0;
    struct pollfd p = { b, POLLOUT, 0 };
    for (int i = 0; i < 800 && !accepted; i++) {
        struct sockaddr_in pa;
        socklen_t pl = sizeof pa;
        int a = accept(l, (struct sockaddr *)&pa, &pl);
        if (a >= 0) {
            if (ntohs(pa.sin_port) == bport)
                accepted = a;
            else
                close(a);
        } else {
            sleep_ms(10);
        }
    }
    CHECK(accepted > 0, "the listener never accepted the connecting socket (port %d)", bport);
    CHECK(poll(&p, 1, 2000) == 1 && (p.revents & POLLOUT), "connect did not complete: revents %#x", p.revents);
    CHECK(geti(b, SOL_SOCKET, SO_ERROR) == 0, "SO_ERROR %d", geti(b, SOL_SOCKET, SO_ERROR));
    CHECK(port_of(b, 1) == ntohs(la.sin_port), "peer port %d", port_of(b, 1));
    char buf[4];
    CHECK(accepted > 0 && write(b, "syn", 3) == 3 && read_n(accepted, buf, 3) == 3 && !memcmp(buf, "syn", 3),
          "no data over the completed connection");
    return 0;
}

/* MCAST_MSFILTER of (lo, group): mode, count, first two sources; -errno if no member */
static int msfilter(int fd, int family, const void *group, uint32_t out[4])
{
    union {
        struct group_filter gf;
        char buf[GROUP_FILTER_SIZE(4)];
    } u;
    memset(&u, 0, sizeof u);
    u.gf.gf_interface = 1;
    u.gf.gf_numsrc = 4;
    if (family == AF_INET) {
        struct sockaddr_in *g = (struct sockaddr_in *)&u.gf.gf_group;
        g->sin_family = AF_INET;
        memcpy(&g->sin_addr, group, 4);
    } else {
        struct sockaddr_in6 *g = (struct sockaddr_in6 *)&u.gf.gf_group;
        g->sin6_family = AF_INET6;
        memcpy(&g->sin6_addr, group, 16);
    }
    socklen_t l = sizeof u;
    if (getsockopt(fd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6, MCAST_MSFILTER, &u, &l))
        return -errno;
    out[0] = u.gf.gf_fmode;
    out[1] = u.gf.gf_numsrc;
    out[2] = family == AF_INET ? ((struct sockaddr_in *)&u.gf.gf_slist[0])->sin_addr.s_addr : 0;
    out[3] = family == AF_INET ? ((struct sockaddr_in *)&u.gf.gf_slist[1])->sin_addr.s_addr : 0;
    return 0;
}

static int source_req(int fd, int opt, const char *group, const char *source)
{
    struct group_source_req r;
    memset(&r, 0, sizeof r);
    r.gsr_interface = 1;
    ((struct sockaddr_in *)&r.gsr_group)->sin_family = AF_INET;
    inet_pton(AF_INET, group, &((struct sockaddr_in *)&r.gsr_group)->sin_addr);
    ((struct sockaddr_in *)&r.gsr_source)->sin_family = AF_INET;
    inet_pton(AF_INET, source, &((struct sockaddr_in *)&r.gsr_source)->sin_addr);
    return setsockopt(fd, IPPROTO_IP, opt, &r, sizeof r);
}

static int mode_mcast(int phase)
{
    static int u4, u6, none, port;
    static struct in_addr g1, g2, g3;
    static struct in6_addr g6;
    static uint32_t before[5][4];
    inet_pton(AF_INET, "239.1.2.3", &g1);
    inet_pton(AF_INET, "232.1.1.1", &g2);
    inet_pton(AF_INET, "239.4.4.4", &g3);
    inet_pton(AF_INET6, "ff15::1234", &g6);
    if (phase == 0) {
        u4 = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET };
        bind_any_port(u4, (struct sockaddr *)&a, sizeof a);
        port = ntohs(a.sin_port);
        struct ip_mreqn m = { .imr_multiaddr = g1, .imr_ifindex = 1 };
        if (setsockopt(u4, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m))
            DIE("IP_ADD_MEMBERSHIP");
        if (source_req(u4, MCAST_JOIN_SOURCE_GROUP, "232.1.1.1", "127.0.0.2") ||
            source_req(u4, MCAST_JOIN_SOURCE_GROUP, "232.1.1.1", "127.0.0.3"))
            DIE("MCAST_JOIN_SOURCE_GROUP");
        struct ip_mreqn m3 = { .imr_multiaddr = g3, .imr_ifindex = 1 };
        if (setsockopt(u4, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m3, sizeof m3) ||
            source_req(u4, MCAST_BLOCK_SOURCE, "239.4.4.4", "127.0.0.9"))
            DIE("MCAST_BLOCK_SOURCE");
        u6 = socket(AF_INET6, SOCK_DGRAM, 0);
        struct ipv6_mreq m6 = { .ipv6mr_multiaddr = g6, .ipv6mr_interface = 1 };
        if (u6 < 0 || setsockopt(u6, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &m6, sizeof m6))
            DIE("IPV6_ADD_MEMBERSHIP");
        none = socket(AF_INET, SOCK_DGRAM, 0);
        if (msfilter(u4, AF_INET, &g1, before[0]) || msfilter(u4, AF_INET, &g2, before[1]) ||
            msfilter(u4, AF_INET, &g3, before[2]) || msfilter(u6, AF_INET6, &g6, before[3]))
            DIE("MCAST_MSFILTER");
        if (before[1][0] != MCAST_INCLUDE || before[1][1] != 2 || before[2][0] != MCAST_EXCLUDE || before[2][1] != 1)
            DIE("unexpected source filters");
        snapshot(u4, "udp in groups", 1);
        return 0;
    }
    compare_all();
    const void *groups[4] = { &g1, &g2, &g3, &g6 };
    const char *names[4] = { "239.1.2.3", "232.1.1.1", "239.4.4.4", "ff15::1234" };
    for (int i = 0; i < 4; i++) {
        uint32_t now[4] = { 0 };
        int r = msfilter(i < 3 ? u4 : u6, i < 3 ? AF_INET : AF_INET6, groups[i], now);
        CHECK(r == 0 && !memcmp(now, before[i], sizeof now), "%s: filter %d: mode %u, %u sources %08x %08x (was %u, %u %08x %08x)",
              names[i], r, now[0], now[1], now[2], now[3], before[i][0], before[i][1], before[i][2], before[i][3]);
    }
    uint32_t x[4];
    CHECK(msfilter(none, AF_INET, &g1, x) == -EADDRNOTAVAIL, "the socket that joined nothing is in 239.1.2.3");
    /* a datagram to the group arrives */
    int snd = socket(AF_INET, SOCK_DGRAM, 0);
    struct in_addr lo = { htonl(INADDR_LOOPBACK) };
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = g1 };
    char b[8] = { 0 };
    CHECK(setsockopt(snd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) == 0 && sendto(snd, "mc", 2, 0, (struct sockaddr *)&to, sizeof to) == 2,
          "sending to 239.1.2.3: %s", strerror(errno));
    CHECK(read_n(u4, b, 2) == 2 && !memcmp(b, "mc", 2), "the datagram sent to 239.1.2.3 did not arrive");
    return 0;
}

static int tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) ? -1 : ti.tcpi_state;
}

static int g_port;

static int mode_finwait(int phase)
{
    static int c;
    if (phase == 0) {
        struct sockaddr_in pa = lo4(g_port);
        c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&pa, sizeof pa))
            DIE("connect to the test");
        if (shutdown(c, SHUT_WR))
            DIE("shutdown");
        for (int i = 0; i < 300 && tcp_state(c) != TCP_FIN_WAIT2; i++)
            sleep_ms(10);
        if (tcp_state(c) != TCP_FIN_WAIT2)
            DIE("not in FIN_WAIT2");
        info("fd", "%d", c);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    /* (CLOSE already if the peer's FIN came before we looked; a reset fails below) */
    int st = tcp_state(c);
    CHECK(st == TCP_FIN_WAIT1 || st == TCP_FIN_WAIT2 || st == TCP_CLOSE, "state %d after go", st);
    errno = 0;
    CHECK(write(c, "x", 1) < 0 && errno == EPIPE, "write after SHUT_WR: %s", strerror(errno));
    char b[32] = { 0 };
    int got = 0;
    for (int i = 0; i < 500; i++) {
        ssize_t r = recv(c, b + got, sizeof b - 1 - got, MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r > 0)
            got += r;
        else
            sleep_ms(10);
    }
    CHECK(got == 13 && !memcmp(b, "from-peermore", 13), "read '%s' (%d bytes) from the peer", b, got);
    CHECK(recv(c, b, 1, MSG_DONTWAIT) == 0, "no end of file from the peer");
    for (int i = 0; i < 300 && tcp_state(c) != TCP_CLOSE; i++)
        sleep_ms(10);
    CHECK(tcp_state(c) == TCP_CLOSE, "state %d at the end (CLOSING = our FIN was never acknowledged)", tcp_state(c));
    return 0;
}

static int mode_timewait(int phase)
{
    static int l;
    static struct sockaddr_in la;
    if (phase == 0) {
        la = lo4(0);
        l = socket(AF_INET, SOCK_STREAM, 0);
        bind_any_port(l, (struct sockaddr *)&la, sizeof la);
        if (listen(l, 4))
            DIE("listen");
        int c, a;
        tcp_pair(l, (struct sockaddr *)&la, sizeof la, &c, &a);
        close(a); /* we close first: TIME_WAIT on the listener's port */
        char b[4];
        if (read_n(c, b, 1) != 0)
            DIE("no end of file");
        close(c);
        sleep_ms(20);
        snapshot(l, "listener", 1);
        info("port", "%d", ntohs(la.sin_port));
        return 0;
    }
    compare_all();
    check_listener(l, (struct sockaddr *)&la, sizeof la, "listener");
    return 0;
}

static int mode_md5(int phase)
{
    static int l;
    static struct sockaddr_in la;
    if (phase == 0) {
        la = lo4(0);
        l = socket(AF_INET, SOCK_STREAM, 0);
        struct tcp_md5sig k;
        memset(&k, 0, sizeof k);
        struct sockaddr_in peer = lo4(0);
        memcpy(&k.tcpm_addr, &peer, sizeof peer);
        k.tcpm_keylen = 6;
        memcpy(k.tcpm_key, "secret", 6);
        if (setsockopt(l, IPPROTO_TCP, TCP_MD5SIG, &k, sizeof k))
            DIE("TCP_MD5SIG");
        bind_any_port(l, (struct sockaddr *)&la, sizeof la);
        if (listen(l, 2))
            DIE("listen");
        info("fd", "%d", l);
        return 0;
    }
    /* a client with the same key is accepted */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct tcp_md5sig k;
    memset(&k, 0, sizeof k);
    memcpy(&k.tcpm_addr, &la, sizeof la);
    k.tcpm_keylen = 6;
    memcpy(k.tcpm_key, "secret", 6);
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_MD5SIG, &k, sizeof k) == 0 && connect(c, (struct sockaddr *)&la, sizeof la) == 0,
          "connect with the key: %s", strerror(errno));
    CHECK(accept_wait(l) >= 0, "the listener accepts no client");
    return 0;
}

static int closewait(int phase, int eof_read);

static int mode_closewait(int phase)
{
    return closewait(phase, 0);
}

static int mode_closewait_eof(int phase)
{
    return closewait(phase, 1);
}

static int closewait(int phase, int eof_read)
{
    static int c;
    if (phase == 0) {
        struct sockaddr_in pa = lo4(g_port);
        c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&pa, sizeof pa))
            DIE("connect to the test");
        for (int i = 0; i < 500 && tcp_state(c) != TCP_CLOSE_WAIT; i++)
            sleep_ms(10);
        if (tcp_state(c) != TCP_CLOSE_WAIT)
            DIE("not in CLOSE_WAIT");
        sleep_ms(20);
        if (eof_read) {
            char b[8] = { 0 };
            if (read_n(c, b, 3) != 3 || memcmp(b, "bye", 3) || recv(c, b, 1, MSG_DONTWAIT) != 0)
                DIE("reading bye and the end of file");
        }
        info("fd", "%d", c);
        return 0;
    }
    CHECK(tcp_state(c) == TCP_CLOSE_WAIT, "state %d after go", tcp_state(c));
    struct pollfd p = { c, POLLIN | POLLRDHUP, 0 };
    CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP), "poll revents %#x (POLLRDHUP expected)", p.revents);
    char b[8] = { 0 };
    if (!eof_read)
        CHECK(read_n(c, b, 3) == 3 && !memcmp(b, "bye", 3), "read '%s' before the end of file", b);
    CHECK(recv(c, b, 1, MSG_DONTWAIT) == 0, "no end of file after the peer's bytes: %s", strerror(errno));
    CHECK(write(c, "reply", 5) == 5, "write in CLOSE_WAIT: %s", strerror(errno));
    return 0;
}

/* finished: a loopback connection both ends shut down and fully closed (state CLOSE),
 * both fds kept, as a server that keeps a finished connection's fd */
static int mode_finished(int phase)
{
    static int ends[2];
    if (phase == 0) {
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in la = lo4(0);
        socklen_t len = sizeof la;
        if (l < 0 || bind(l, (struct sockaddr *)&la, sizeof la) || listen(l, 1) || getsockname(l, (struct sockaddr *)&la, &len))
            DIE("listener");
        int a = socket(AF_INET, SOCK_STREAM, 0);
        if (a < 0 || connect(a, (struct sockaddr *)&la, sizeof la))
            DIE("connect");
        int b = accept(l, NULL, NULL);
        char c;
        if (b < 0 || close(l) || shutdown(a, SHUT_WR) || recv(b, &c, 1, 0) != 0 || shutdown(b, SHUT_WR) || recv(a, &c, 1, 0) != 0)
            DIE("closing both ways");
        for (int i = 0; i < 500 && (tcp_state(a) != TCP_CLOSE || tcp_state(b) != TCP_CLOSE); i++)
            sleep_ms(10);
        if (tcp_state(a) != TCP_CLOSE || tcp_state(b) != TCP_CLOSE)
            DIE("not closed");
        ends[0] = a;
        ends[1] = b;
        return 0;
    }
    for (int i = 0; i < 2; i++) {
        int s = ends[i];
        char c;
        CHECK(recv(s, &c, 1, MSG_DONTWAIT) == 0, "end %d: recv: %s (want end of file)", i, strerror(errno));
        struct pollfd p = { s, POLLIN | POLLRDHUP, 0 };
        CHECK(poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP)) == (POLLHUP | POLLRDHUP), "end %d: poll revents %#x", i, p.revents);
        CHECK(send(s, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EPIPE, "end %d: send: errno %d (want EPIPE)", i, errno);
        struct sockaddr_in pa;
        socklen_t len = sizeof pa;
        CHECK(getpeername(s, (struct sockaddr *)&pa, &len) < 0 && errno == ENOTCONN, "end %d: getpeername errno %d", i, errno);
    }
    return 0;
}

static volatile sig_atomic_t n_sigurg;

static void on_sigurg(int sig)
{
    (void)sig;
    n_sigurg++;
}

/* Waits up to 5 s for poll to report `ev` on fd (a SIGURG may interrupt it). */
static int poll_for(int fd, short ev)
{
    for (int i = 0; i < 500; i++) {
        struct pollfd p = { fd, ev, 0 };
        if (poll(&p, 1, 10) == 1 && (p.revents & ev))
            return 1;
    }
    return 0;
}

static int at_mark_soon(int fd)
{
    for (int i = 0; i < 500; i++) {
        if (sockatmark(fd) == 1)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

/* Byte k of the long stream of mode_urgent. */
static char pat(int k)
{
    return (char)(k % 251);
}

#define U_BEFORE 3000
#define U_AFTER 100000

static int mode_urgent(int phase)
{
    /* 0: nothing read; 1: "ab" read (at the mark); 2: SO_OOBINLINE; 3: "ab" and the
     * urgent byte read (recv MSG_OOB); r6: over ::1, U_BEFORE bytes, urgent 'U', U_AFTER
     * bytes, all unread (the bytes after the mark take more than one segment) */
    static int c[4], a[4], r6, w6, cw, aw;
    static char big[U_BEFORE + U_AFTER];
    char b[8] = { 0 };
    if (phase == 0) {
        struct sockaddr_in6 l6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        int l = socket(AF_INET6, SOCK_STREAM, 0);
        SET(l, SOL_SOCKET, SO_RCVBUF, 1 << 20);
        bind_any_port(l, (struct sockaddr *)&l6, sizeof l6);
        if (listen(l, 1))
            DIE("listen");
        tcp_pair(l, (struct sockaddr *)&l6, sizeof l6, &w6, &r6);
        close(l);
        for (int k = 0; k < U_BEFORE + U_AFTER; k++)
            big[k] = pat(k);
        if (send(w6, big, U_BEFORE, 0) != U_BEFORE || send(w6, "U", 1, MSG_OOB) != 1 || send(w6, big + U_BEFORE, U_AFTER, 0) != U_AFTER)
            DIE("send over ::1");
        loopback_pair(&cw, &aw);
        if (send(aw, "ab", 2, 0) != 2 || send(aw, "c", 1, MSG_OOB) != 1 || send(aw, "de", 2, 0) != 2 || shutdown(aw, SHUT_WR))
            DIE("send and shutdown");
        struct sigaction sa = { 0 };
        sa.sa_handler = on_sigurg;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGURG, &sa, NULL);
        for (int i = 0; i < 4; i++) {
            loopback_pair(&c[i], &a[i]);
            if (i == 2)
                SET(c[i], SOL_SOCKET, SO_OOBINLINE, 1);
            if (i == 0 && fcntl(c[i], F_SETOWN, getpid()))
                DIE("F_SETOWN");
            if (send(a[i], "ab", 2, 0) != 2 || send(a[i], "c", 1, MSG_OOB) != 1 || send(a[i], "de", 2, 0) != 2)
                DIE("send");
        }
        sleep_ms(50);
        if (read_n(c[1], b, 2) != 2 || read_n(c[3], b, 2) != 2 || recv(c[3], b, 1, MSG_OOB) != 1 || b[0] != 'c')
            DIE("reading up to the mark");
        if (sockatmark(c[0]) != 0 || sockatmark(c[1]) != 1 || sockatmark(c[2]) != 0 || sockatmark(c[3]) != 1 || n_sigurg != 1)
            DIE("marks or SIGURG not as sent");
        info("fd", "%d", c[0]);
        return 0;
    }
    /* r6: the long stream */
    static char got[U_BEFORE + U_AFTER];
    CHECK(poll_for(r6, POLLPRI), "::1: no urgent data (POLLPRI)");
    CHECK(sockatmark(r6) == 0 && read_n(r6, got, U_BEFORE) == U_BEFORE && !memcmp(got, big, U_BEFORE), "::1: bytes before the mark");
    CHECK(sockatmark(r6) == 1 && recv(r6, b, 1, MSG_OOB) == 1 && b[0] == 'U', "::1: mark or urgent byte");
    CHECK(read_n(r6, got, U_AFTER) == U_AFTER && !memcmp(got, big + U_BEFORE, U_AFTER), "::1: bytes after the mark");
    CHECK(send(w6, "zz", 2, 0) == 2 && read_n(r6, b, 2) == 2 && !memcmp(b, "zz", 2), "::1: later bytes");
    /* cw: urgent data, then the peer's FIN (CLOSE_WAIT) */
    CHECK(poll_for(cw, POLLPRI) && tcp_state(cw) == TCP_CLOSE_WAIT, "CLOSE_WAIT: no urgent data or state %d", tcp_state(cw));
    CHECK(read_n(cw, b, 2) == 2 && !memcmp(b, "ab", 2) && sockatmark(cw) == 1, "CLOSE_WAIT: bytes before the mark");
    CHECK(recv(cw, b, 1, MSG_OOB) == 1 && b[0] == 'c', "CLOSE_WAIT: urgent byte");
    CHECK(read_n(cw, b, 2) == 2 && !memcmp(b, "de", 2) && recv(cw, b, 1, MSG_DONTWAIT) == 0, "CLOSE_WAIT: bytes after the mark, then end of file");
    CHECK(send(cw, "ok", 2, 0) == 2 && read_n(aw, b, 2) == 2 && !memcmp(b, "ok", 2), "CLOSE_WAIT: bytes back");
    for (int i = 0; i < 3; i++)
        CHECK(poll_for(c[i], POLLPRI), "connection %d: no urgent data (POLLPRI)", i);
    CHECK(at_mark_soon(c[3]), "connection 3: not at the mark");
    /* 0: the bytes before the mark, the mark, the urgent byte, the rest */
    CHECK(sockatmark(c[0]) == 0, "connection 0 at the mark before its bytes");
    CHECK(read_n(c[0], b, 2) == 2 && !memcmp(b, "ab", 2), "connection 0: bytes before the mark: '%s'", b);
    CHECK(sockatmark(c[0]) == 1, "connection 0: not at the urgent mark");
    CHECK(recv(c[0], b, 1, MSG_OOB) == 1 && b[0] == 'c', "connection 0: urgent byte lost");
    CHECK(read_n(c[0], b, 2) == 2 && !memcmp(b, "de", 2), "connection 0: bytes after the mark: '%s'", b);
    /* 1: at the mark already */
    CHECK(sockatmark(c[1]) == 1, "connection 1: not at the urgent mark");
    memset(b, 0, sizeof b);
    CHECK(recv(c[1], b, 1, MSG_OOB) == 1 && b[0] == 'c', "connection 1: urgent byte '%s'", b);
    CHECK(read_n(c[1], b, 2) == 2 && !memcmp(b, "de", 2), "connection 1: bytes after the mark: '%s'", b);
    /* 2: inline: a read stops at the mark, the urgent byte comes inline */
    errno = 0;
    CHECK(recv(c[2], b, 1, MSG_OOB) < 0 && errno == EINVAL, "connection 2 (SO_OOBINLINE): recv(MSG_OOB): %s", strerror(errno));
    CHECK(recv(c[2], b, sizeof b, 0) == 2 && !memcmp(b, "ab", 2), "connection 2: read to the mark: '%s'", b);
    CHECK(sockatmark(c[2]) == 1, "connection 2: not at the urgent mark");
    CHECK(read_n(c[2], b, 3) == 3 && !memcmp(b, "cde", 3), "connection 2: inline bytes: '%.3s'", b);
    /* 3: the urgent byte read already: at the mark, no urgent byte, the rest */
    errno = 0;
    CHECK(recv(c[3], b, 1, MSG_OOB) < 0 && errno == EINVAL, "connection 3: recv(MSG_OOB) again: %s", strerror(errno));
    CHECK(read_n(c[3], b, 2) == 2 && !memcmp(b, "de", 2), "connection 3: bytes after the mark: '%s'", b);
    for (int i = 0; i < 4; i++) {
        CHECK(recv(c[i], b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "connection %d: more bytes", i);
        CHECK(sockatmark(c[i]) == 0, "connection %d: still at a mark", i);
        /* both ways on, sequence numbers right */
        CHECK(send(a[i], "zz", 2, 0) == 2 && read_n(c[i], b, 2) == 2 && !memcmp(b, "zz", 2), "connection %d: later bytes", i);
        CHECK(send(c[i], "ok", 2, 0) == 2 && read_n(a[i], b, 2) == 2 && !memcmp(b, "ok", 2), "connection %d: bytes back", i);
    }
    printf("NOTE sigurg=%d\n", (int)n_sigurg);
    return 0;
}

static int sb_sock = -1, sb_ret = -2, sb_errno;
static pid_t sb_tid;

static void *sb_thread(void *arg)
{
    struct sockaddr_in *la = arg;
    __atomic_store_n(&sb_tid, wl_gettid(), __ATOMIC_SEQ_CST);
    int r = connect(sb_sock, (struct sockaddr *)la, sizeof *la);
    sb_errno = errno;
    __atomic_store_n(&sb_ret, r, __ATOMIC_SEQ_CST);
    return NULL;
}

static int mode_synblock(int phase)
{
    static int l, q;
    static struct sockaddr_in la;
    static pthread_t th;
    if (phase == 0) {
        la = lo4(0);
        l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        bind_any_port(l, (struct sockaddr *)&la, sizeof la);
        if (listen(l, 0))
            DIE("listen");
        q = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(q, (struct sockaddr *)&la, sizeof la))
            DIE("connect q");
        sb_sock = socket(AF_INET, SOCK_STREAM, 0);
        if (pthread_create(&th, NULL, sb_thread, &la))
            DIE("pthread_create");
        for (int i = 0; i < 300 && tcp_state(sb_sock) != TCP_SYN_SENT; i++)
            sleep_ms(10);
        if (tcp_state(sb_sock) != TCP_SYN_SENT)
            DIE("not in SYN_SENT");
        info("connect_tid", "%d", (int)__atomic_load_n(&sb_tid, __ATOMIC_SEQ_CST));
        return 0;
    }
    int bport = port_of(sb_sock, 0), accepted = -1;
    for (int i = 0; i < 800 && accepted < 0; i++) {
        struct sockaddr_in pa;
        socklen_t pl = sizeof pa;
        int a = accept(l, (struct sockaddr *)&pa, &pl);
        if (a >= 0 && ntohs(pa.sin_port) == bport)
            accepted = a;
        else if (a >= 0)
            close(a);
        else
            sleep_ms(10);
    }
    CHECK(accepted >= 0, "the listener never accepted the connecting socket");
    for (int i = 0; i < 300 && __atomic_load_n(&sb_ret, __ATOMIC_SEQ_CST) == -2; i++)
        sleep_ms(10);
    CHECK(sb_ret == 0, "the blocking connect() returned %d (%s)", sb_ret, strerror(sb_errno));
    if (sb_ret != -2)
        pthread_join(th, NULL);
    CHECK(port_of(sb_sock, 1) == ntohs(la.sin_port), "peer port %d", port_of(sb_sock, 1));
    char b[4];
    CHECK(accepted >= 0 && write(sb_sock, "blk", 3) == 3 && read_n(accepted, b, 3) == 3 && !memcmp(b, "blk", 3),
          "no data over the completed connection");
    return 0;
}

static int mode_udpq(int phase)
{
    static int u, s1, s2, u6, s6, p1, p2, p6, ul, sl, pl;
    if (phase == 0) {
        struct sockaddr_in a = lo4(0), b1 = lo4(0), b2 = lo4(0);
        u = socket(AF_INET, SOCK_DGRAM, 0);
        s1 = socket(AF_INET, SOCK_DGRAM, 0);
        s2 = socket(AF_INET, SOCK_DGRAM, 0);
        bind_any_port(u, (struct sockaddr *)&a, sizeof a);
        bind_any_port(s1, (struct sockaddr *)&b1, sizeof b1);
        bind_any_port(s2, (struct sockaddr *)&b2, sizeof b2);
        p1 = ntohs(b1.sin_port);
        p2 = ntohs(b2.sin_port);
        if (sendto(s1, "one", 3, 0, (struct sockaddr *)&a, sizeof a) != 3 || sendto(s1, "two2", 4, 0, (struct sockaddr *)&a, sizeof a) != 4 ||
            sendto(s2, "three33", 7, 0, (struct sockaddr *)&a, sizeof a) != 7 || sendto(s2, "", 0, 0, (struct sockaddr *)&a, sizeof a) != 0)
            DIE("sendto");
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT }, b6 = a6;
        u6 = socket(AF_INET6, SOCK_DGRAM, 0);
        s6 = socket(AF_INET6, SOCK_DGRAM, 0);
        bind_any_port(u6, (struct sockaddr *)&a6, sizeof a6);
        bind_any_port(s6, (struct sockaddr *)&b6, sizeof b6);
        p6 = ntohs(b6.sin6_port);
        if (sendto(s6, "six", 3, 0, (struct sockaddr *)&a6, sizeof a6) != 3)
            DIE("sendto6");
        /* UDP-Lite, the sender covering only its header and 4 bytes by the checksum */
        struct sockaddr_in al = lo4(0), bl = lo4(0);
        ul = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
        sl = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
        bind_any_port(ul, (struct sockaddr *)&al, sizeof al);
        bind_any_port(sl, (struct sockaddr *)&bl, sizeof bl);
        pl = ntohs(bl.sin_port);
        SET(sl, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, 12);
        if (sendto(sl, "lite-one", 8, 0, (struct sockaddr *)&al, sizeof al) != 8 || sendto(sl, "lite2", 5, 0, (struct sockaddr *)&al, sizeof al) != 5)
            DIE("sendto udplite");
        sleep_ms(50);
        snapshot(u, "udp with a queue", 1);
        snapshot(ul, "udplite with a queue", 1);
        return 0;
    }
    compare_all();
    const char *want[4] = { "one", "two2", "three33", "" };
    int from[4] = { p1, p1, p2, p2 };
    for (int i = 0; i < 4; i++) {
        char b[16] = { 0 };
        struct sockaddr_in f;
        socklen_t fl = sizeof f;
        ssize_t n = recvfrom(u, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&f, &fl);
        CHECK(n == (ssize_t)strlen(want[i]) && !memcmp(b, want[i], n) && ntohs(f.sin_port) == from[i] &&
                  f.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
              "datagram %d: %zd bytes '%s' from port %d (want '%s' from %d)", i, n, b, ntohs(f.sin_port), want[i], from[i]);
    }
    char b[16] = { 0 };
    CHECK(recv(u, b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN, "a datagram too many: '%s'", b);
    struct sockaddr_in6 f6;
    socklen_t fl6 = sizeof f6;
    CHECK(recvfrom(u6, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&f6, &fl6) == 3 && !memcmp(b, "six", 3) &&
              ntohs(f6.sin6_port) == p6,
          "IPv6 datagram: '%s' from port %d", b, ntohs(f6.sin6_port));
    const char *lite[2] = { "lite-one", "lite2" };
    for (int i = 0; i < 2; i++) {
        struct sockaddr_in f;
        socklen_t fl = sizeof f;
        memset(b, 0, sizeof b);
        ssize_t n = recvfrom(ul, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&f, &fl);
        CHECK(n == (ssize_t)strlen(lite[i]) && !memcmp(b, lite[i], n) && ntohs(f.sin_port) == pl, "UDP-Lite datagram %d: %zd bytes '%s' from port %d", i, n, b, ntohs(f.sin_port));
    }
    CHECK(recv(ul, b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN, "UDP-Lite: a datagram too many");
    check_udp_self(u, "udp with a queue");
    return 0;
}

static int mode_udpwild(int phase)
{
    static int u, v, u6, s1, s2, p1, p2;
    static struct sockaddr_in a, av;
    static struct sockaddr_in6 a6;
    if (phase == 0) {
        a = (struct sockaddr_in){ .sin_family = AF_INET };
        av = a;
        u = socket(AF_INET, SOCK_DGRAM, 0);
        v = socket(AF_INET, SOCK_DGRAM, 0);
        bind_any_port(u, (struct sockaddr *)&a, sizeof a);
        bind_any_port(v, (struct sockaddr *)&av, sizeof av);
        SET(u, IPPROTO_IP, IP_PKTINFO, 1); /* the program asks for destinations; v does not */
        struct sockaddr_in b1 = lo4(0), b2 = lo4(0);
        b2.sin_addr.s_addr = htonl(0x7f000005); /* 127.0.0.5 */
        s1 = socket(AF_INET, SOCK_DGRAM, 0);
        s2 = socket(AF_INET, SOCK_DGRAM, 0);
        bind_any_port(s1, (struct sockaddr *)&b1, sizeof b1);
        bind_any_port(s2, (struct sockaddr *)&b2, sizeof b2);
        p1 = ntohs(b1.sin_port);
        p2 = ntohs(b2.sin_port);
        struct sockaddr_in to1 = lo4(ntohs(a.sin_port)), to2 = to1, tov = lo4(ntohs(av.sin_port));
        to2.sin_addr.s_addr = htonl(0x7f000002); /* 127.0.0.2: another address of lo */
        tov.sin_addr.s_addr = htonl(0x7f000003);
        if (sendto(s1, "to-one", 6, 0, (struct sockaddr *)&to1, sizeof to1) != 6 ||
            sendto(s2, "to-two", 6, 0, (struct sockaddr *)&to2, sizeof to2) != 6 ||
            sendto(s1, "plain", 5, 0, (struct sockaddr *)&tov, sizeof tov) != 5)
            DIE("sendto");
        a6 = (struct sockaddr_in6){ .sin6_family = AF_INET6 };
        u6 = socket(AF_INET6, SOCK_DGRAM, 0);
        SET(u6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        bind_any_port(u6, (struct sockaddr *)&a6, sizeof a6);
        struct sockaddr_in6 to6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT, .sin6_port = a6.sin6_port };
        int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
        if (sendto(s6, "six", 3, 0, (struct sockaddr *)&to6, sizeof to6) != 3)
            DIE("sendto6");
        close(s6);
        sleep_ms(50);
        snapshot(u, "wildcard udp with IP_PKTINFO", 1);
        snapshot(v, "wildcard udp", 1);
        snapshot(u6, "wildcard udp6", 1);
        return 0;
    }
    compare_all();
    const char *want[2] = { "to-one", "to-two" };
    uint32_t dst[2] = { 0x7f000001, 0x7f000002 }, src[2] = { 0x7f000001, 0x7f000005 };
    int from[2] = { p1, p2 };
    for (int i = 0; i < 2; i++) {
        char b[16] = { 0 };
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        } ctl;
        struct sockaddr_in f;
        struct iovec iov = { b, sizeof b };
        struct msghdr m = { .msg_name = &f, .msg_namelen = sizeof f, .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl };
        ssize_t n = recvmsg(u, &m, MSG_DONTWAIT);
        struct cmsghdr *c = n < 0 ? NULL : CMSG_FIRSTHDR(&m);
        struct in_pktinfo pi = { 0 };
        if (c && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
        CHECK(n == 6 && !memcmp(b, want[i], 6) && ntohs(f.sin_port) == from[i] && f.sin_addr.s_addr == htonl(src[i]) &&
                  pi.ipi_addr.s_addr == htonl(dst[i]),
              "datagram %d: %zd bytes '%s' from %#x:%d to %#x (want '%s' from %#x:%d to %#x)", i, n, b, ntohl(f.sin_addr.s_addr),
              ntohs(f.sin_port), ntohl(pi.ipi_addr.s_addr), want[i], src[i], from[i], dst[i]);
    }
    char b[16] = { 0 };
    CHECK(recv(u, b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN, "a datagram too many: '%s'", b);
    CHECK(recv(v, b, sizeof b, MSG_DONTWAIT) == 5 && !memcmp(b, "plain", 5), "socket without IP_PKTINFO: '%s'", b);
    CHECK(geti(v, IPPROTO_IP, IP_PKTINFO) == 0, "IP_PKTINFO turned on where the program had it off");
    memset(b, 0, sizeof b);
    CHECK(recv(u6, b, sizeof b, MSG_DONTWAIT) == 3 && !memcmp(b, "six", 3), "IPv6 wildcard socket: '%s'", b);
    check_udp_self(v, "wildcard udp");
    return 0;
}

static int mode_halfpair(int phase)
{
    static int c, a;
    if (phase == 0) {
        loopback_pair(&c, &a);
        if (write(a, "to-c", 4) != 4 || write(c, "to-a", 4) != 4 || shutdown(c, SHUT_WR))
            DIE("write/shutdown");
        for (int i = 0; i < 300 && (tcp_state(c) != TCP_FIN_WAIT2 || tcp_state(a) != TCP_CLOSE_WAIT); i++)
            sleep_ms(10);
        if (tcp_state(c) != TCP_FIN_WAIT2 || tcp_state(a) != TCP_CLOSE_WAIT)
            DIE("not FIN_WAIT2 / CLOSE_WAIT");
        return 0;
    }
    for (int i = 0; i < 300 && tcp_state(c) != TCP_FIN_WAIT2; i++)
        sleep_ms(10); /* (FIN_WAIT1 until the FIN sent again is acknowledged) */
    CHECK(tcp_state(c) == TCP_FIN_WAIT2 && tcp_state(a) == TCP_CLOSE_WAIT, "states %d %d", tcp_state(c), tcp_state(a));
    char b[16] = { 0 };
    CHECK(read_n(a, b, 4) == 4 && !memcmp(b, "to-a", 4) && recv(a, b, 1, MSG_DONTWAIT) == 0, "CLOSE_WAIT end: bytes then end of file");
    CHECK(write(a, "late", 4) == 4, "CLOSE_WAIT end: write");
    memset(b, 0, sizeof b);
    CHECK(read_n(c, b, 8) == 8 && !memcmp(b, "to-clate", 8), "FIN_WAIT2 end read '%s'", b);
    close(a);
    int eof = 0;
    for (int i = 0; i < 300 && !eof; i++) {
        ssize_t r = recv(c, b, 1, MSG_DONTWAIT);
        if (r == 0)
            eof = 1;
        else
            sleep_ms(10);
    }
    CHECK(eof, "FIN_WAIT2 end: no end of file");
    for (int i = 0; i < 300 && tcp_state(c) != TCP_CLOSE; i++)
        sleep_ms(10);
    CHECK(tcp_state(c) == TCP_CLOSE, "FIN_WAIT2 end: state %d at the end", tcp_state(c));
    return 0;
}

static int mode_closed(int phase)
{
    static int c, a, cport;
    if (phase == 0) {
        loopback_pair(&c, &a);
        SET(c, SOL_SOCKET, SO_KEEPALIVE, 1);
        if (write(c, "gone", 4) != 4 || write(a, "away", 4) != 4)
            DIE("write");
        cport = port_of(c, 0);
        sleep_ms(20);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    char b[8];
    int fds[2] = { c, a };
    for (int i = 0; i < 2; i++) {
        const char *w = i ? "accepted end" : "client end";
        errno = 0;
        CHECK(recv(fds[i], b, sizeof b, MSG_DONTWAIT) == 0, "%s: read is not end of file: %s", w, strerror(errno));
        errno = 0;
        CHECK(write(fds[i], "x", 1) < 0 && errno == EPIPE, "%s: write: %s", w, strerror(errno));
        CHECK(port_of(fds[i], 1) == -ENOTCONN, "%s: getpeername %d", w, port_of(fds[i], 1));
        struct pollfd p = { fds[i], POLLIN, 0 };
        CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLHUP), "%s: poll revents %#x", w, p.revents);
    }
    CHECK(port_of(c, 0) == cport, "client end: local port %d, was %d", port_of(c, 0), cport);
    CHECK(geti(c, SOL_SOCKET, SO_KEEPALIVE) == 1, "options lost");
    return 0;
}

/* A network namespace of our own with lo up, and an nftables rule in it dropping the TCP
 * packets to `port` (run by nft, waited for). */
static void own_netns(void)
{
    if (unshare(CLONE_NEWNET) || lo_is_up(1) != 1)
        DIE("network namespace");
}

/* In a network namespace of our own: a connection, client end *c, accepted end *a. */
static void netns_pair(int *c, int *a)
{
    own_netns();
    loopback_pair(c, a);
}

static void drop_packets_to(int port)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "nft 'add table inet wl; add chain inet wl in { type filter hook input priority 0; }; "
             "add rule inet wl in tcp dport %d drop' </dev/null",
             port);
    if (system(cmd) != 0)
        DIE("nft rule dropping packets");
}

/* the connection `fd` reads `want` then end of file within 10 s (bytes the peer never
 * acknowledged come again at its retransmission timeout, seconds after a restore) */
static int reads_then_eof(int fd, const char *want)
{
    char b[32] = { 0 };
    size_t n = strlen(want), got = 0;
    for (int i = 0; i < 1000; i++) {
        ssize_t r = recv(fd, b + got, sizeof b - 1 - got, MSG_DONTWAIT);
        if (r == 0)
            return got == n && !memcmp(b, want, n);
        if (r > 0)
            got += (size_t)r;
        else
            sleep_ms(10);
    }
    return 0;
}

static int wait_state(int fd, int want)
{
    for (int i = 0; i < 500 && tcp_state(fd) != want; i++)
        sleep_ms(10);
    return tcp_state(fd);
}

/* end of file on fd within 2 s (not a mere timeout) */
static int eof_within(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    char b;
    return poll(&p, 1, 2000) == 1 && recv(fd, &b, 1, MSG_DONTWAIT) == 0;
}

/* accept on non-blocking l within 3 s; the peer's port in *peer */
static int accept_from(int l, int *peer)
{
    int a = accept_wait(l);
    *peer = a >= 0 ? port_of(a, 1) : -1;
    return a;
}

static int g_acceptq_bytes;

/* A non-blocking listener with SO_REUSEADDR (backlog 8) on sa, its port filled in;
 * v6only >= 0: IPV6_V6ONLY set to it first. */
static int reuse_listener(struct sockaddr *sa, socklen_t sl, int v6only)
{
    int l = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (v6only >= 0)
        SET(l, IPPROTO_IPV6, IPV6_V6ONLY, v6only);
    SET(l, SOL_SOCKET, SO_REUSEADDR, 1);
    bind_any_port(l, sa, sl);
    if (listen(l, 8))
        DIE("listen");
    return l;
}

static int mode_acceptq(int phase)
{
    static int l4, l6, l7, c1, c3, c4, c5, c7, child, p1, p2, p3, p4, p5, p7, lport4, lport6;
    if (phase == 0) {
        signal(SIGPIPE, SIG_IGN);
        struct sockaddr_in la = lo4(0);
        l4 = reuse_listener((struct sockaddr *)&la, sizeof la, -1);
        lport4 = ntohs(la.sin_port);
        struct sockaddr_in6 l6a = { .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
        l6 = reuse_listener((struct sockaddr *)&l6a, sizeof l6a, -1);
        lport6 = ntohs(l6a.sin6_port);
        c1 = socket(AF_INET, SOCK_STREAM, 0);
        SET(c1, IPPROTO_TCP, TCP_NODELAY, 1);
        SET(c1, SOL_SOCKET, SO_KEEPALIVE, 1);
        SET(c1, IPPROTO_TCP, TCP_KEEPIDLE, 77);
        if (connect(c1, (struct sockaddr *)&la, sizeof la))
            DIE("connect c1");
        p1 = port_of(c1, 0);
        sleep_ms(20);
        int pp[2];
        if (pipe(pp))
            DIE("pipe");
        child = fork();
        if (child < 0)
            DIE("fork");
        if (child == 0) {
            close(pp[0]);
            int c2 = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(c2, (struct sockaddr *)&la, sizeof la))
                _exit(10);
            int port = port_of(c2, 0);
            if (write(pp[1], &port, sizeof port) != sizeof port)
                _exit(11);
            close(pp[1]);
            wait_go();
            char b[8] = { 0 };
            int ok = port_of(c2, 0) == port && port_of(c2, 1) == lport4;
            ok = ok && write(c2, "child-hello", 11) == 11;
            ok = ok && read_n(c2, b, 3) == 3 && !memcmp(b, "srv", 3);
            ok = ok && eof_within(c2); /* the server closed */
            _exit(ok ? 0 : 12);
        }
        close(pp[1]);
        if (read(pp[0], &p2, sizeof p2) != sizeof p2)
            DIE("the child's port");
        close(pp[0]);
        sleep_ms(20);
        c3 = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c3, (struct sockaddr *)&la, sizeof la) || shutdown(c3, SHUT_WR))
            DIE("connect c3");
        p3 = port_of(c3, 0);
        sleep_ms(20);
        c4 = socket(AF_INET6, SOCK_STREAM, 0);
        if (connect(c4, (struct sockaddr *)&l6a, sizeof l6a))
            DIE("connect c4");
        p4 = port_of(c4, 0);
        sleep_ms(20);
        struct sockaddr_in6 b5 = { .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
        c5 = socket(AF_INET6, SOCK_STREAM, 0);
        bind_any_port(c5, (struct sockaddr *)&b5, sizeof b5);
        if (connect(c5, (struct sockaddr *)&l6a, sizeof l6a))
            DIE("connect c5");
        p5 = ntohs(b5.sin6_port);
        /* a dual-stack listener (IPv6 wildcard) with an IPv4 client */
        struct sockaddr_in6 l7a = { .sin6_family = AF_INET6, .sin6_addr = in6addr_any };
        l7 = reuse_listener((struct sockaddr *)&l7a, sizeof l7a, 0);
        struct sockaddr_in to7 = lo4(ntohs(l7a.sin6_port));
        c7 = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c7, (struct sockaddr *)&to7, sizeof to7))
            DIE("connect c7");
        p7 = port_of(c7, 0);
        if (g_acceptq_bytes) {
            /* a sixth that sent bytes before being accepted (the dump refuses it) */
            int c6 = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(c6, (struct sockaddr *)&la, sizeof la) || write(c6, "early", 5) != 5)
                DIE("connect c6");
        }
        sleep_ms(20);
        info("ports", "%d %d %d %d %d", p1, p2, p3, p4, p5);
        info("lport4", "%d", lport4);
        info("listener_fd", "%d", l4);
        return 0;
    }
    int peer[5], a[5];
    a[0] = accept_from(l4, &peer[0]);
    a[1] = accept_from(l4, &peer[1]);
    a[2] = accept_from(l4, &peer[2]);
    a[3] = accept_from(l6, &peer[3]);
    a[4] = accept_from(l6, &peer[4]);
    int want[5] = { p1, p2, p3, p4, p5 };
    for (int i = 0; i < 5; i++) {
        CHECK(a[i] >= 0 && peer[i] == want[i], "accepted #%d: peer port %d, want %d (%d %d %d | %d %d)", i, peer[i], want[i], p1, p2, p3, p4, p5);
        CHECK(a[i] < 0 || port_of(a[i], 0) == (i < 3 ? lport4 : lport6), "accepted #%d: local port %d", i, a[i] < 0 ? -1 : port_of(a[i], 0));
    }
    CHECK(accept(l4, NULL, NULL) < 0 && errno == EAGAIN, "a fourth connection on the IPv4 listener");
    CHECK(accept(l6, NULL, NULL) < 0 && errno == EAGAIN, "a third connection on the IPv6 listener");
    /* the clients: same ports, connected to the listeners, options kept */
    CHECK(port_of(c1, 0) == p1 && port_of(c1, 1) == lport4, "c1: ports %d -> %d", port_of(c1, 0), port_of(c1, 1));
    CHECK(port_of(c3, 0) == p3 && port_of(c4, 0) == p4 && port_of(c5, 0) == p5, "client ports %d %d %d", port_of(c3, 0), port_of(c4, 0), port_of(c5, 0));
    CHECK(geti(c1, IPPROTO_TCP, TCP_NODELAY) == 1 && geti(c1, SOL_SOCKET, SO_KEEPALIVE) == 1 && geti(c1, IPPROTO_TCP, TCP_KEEPIDLE) == 77,
          "c1 options: nodelay %d keepalive %d keepidle %d", geti(c1, IPPROTO_TCP, TCP_NODELAY), geti(c1, SOL_SOCKET, SO_KEEPALIVE),
          geti(c1, IPPROTO_TCP, TCP_KEEPIDLE));
    char b[16] = { 0 };
    if (a[0] >= 0)
        check_conn(c1, a[0], "", "", "c1");
    if (a[1] >= 0) {
        CHECK(read_n(a[1], b, 11) == 11 && !memcmp(b, "child-hello", 11), "from the child: '%s'", b);
        CHECK(write(a[1], "srv", 3) == 3, "to the child");
    }
    if (a[2] >= 0) {
        CHECK(eof_within(a[2]), "c3 had shut down for writing: its accepted end reads end of file");
        CHECK(write(a[2], "to-c3", 5) == 5 && read_n(c3, b, 5) == 5 && !memcmp(b, "to-c3", 5), "server -> c3 after its shutdown");
        CHECK(write(c3, "x", 1) < 0 && errno == EPIPE, "c3 still shut down for writing");
    }
    int peer7, a7 = accept_from(l7, &peer7);
    CHECK(a7 >= 0 && peer7 == p7, "dual-stack listener: accepted peer port %d, want %d", peer7, p7);
    if (a7 >= 0) {
        check_conn(c7, a7, "", "", "c7 (IPv4 client of a dual-stack listener)");
        close(a7);
    }
    if (a[3] >= 0)
        check_conn(c4, a[3], "", "", "c4 (IPv6)");
    if (a[4] >= 0)
        check_conn(c5, a[4], "", "", "c5 (IPv6, bound first)");
    /* the server ends close first (their TIME_WAITs do not hold the client ports) */
    for (int i = 0; i < 5; i++)
        if (a[i] >= 0)
            close(a[i]);
    int st = -1;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child: status %#x", st);
    sleep_ms(50);
    return 0;
}

static int mode_lastack(int phase)
{
    static int c, a;
    if (phase == 0) {
        netns_pair(&c, &a);
        if (shutdown(c, SHUT_WR))
            DIE("shutdown");
        if (wait_state(c, TCP_FIN_WAIT2) != TCP_FIN_WAIT2 || wait_state(a, TCP_CLOSE_WAIT) != TCP_CLOSE_WAIT)
            DIE("not FIN_WAIT2 / CLOSE_WAIT");
        drop_packets_to(port_of(c, 0));
        if (write(a, "tail", 4) != 4 || shutdown(a, SHUT_WR))
            DIE("write/shutdown");
        if (tcp_state(a) != TCP_LAST_ACK)
            DIE("server end not LAST_ACK");
        sleep_ms(50);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    int sa = tcp_state(a);
    CHECK(sa == TCP_LAST_ACK || sa == TCP_CLOSE, "server end restored in state %d", sa);
    CHECK(reads_then_eof(c, "tail"), "client end: not \"tail\" then end of file");
    char b[4];
    CHECK(recv(a, b, sizeof b, MSG_DONTWAIT) == 0, "server end: read is not end of file");
    errno = 0;
    CHECK(write(a, "x", 1) < 0 && errno == EPIPE, "server end: write: %s", strerror(errno));
    CHECK(wait_state(a, TCP_CLOSE) == TCP_CLOSE, "server end: state %d at the end", tcp_state(a));
    CHECK(wait_state(c, TCP_CLOSE) == TCP_CLOSE, "client end: state %d at the end", tcp_state(c));
    /* LAST_ACK -> CLOSE leaves no TIME_WAIT: once closed, the server end's port binds
     * again (CLOSING would have left a TIME_WAIT holding it) */
    struct sockaddr_in again = lo4(port_of(a, 0));
    close(a);
    int s2 = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(s2, (struct sockaddr *)&again, sizeof again) == 0, "binding the server end's port again: %s (TIME_WAIT?)", strerror(errno));
    close(s2);
    return 0;
}

static int mode_closing(int phase)
{
    static int c, a;
    if (phase == 0) {
        netns_pair(&c, &a);
        drop_packets_to(port_of(a, 0));
        if (write(c, "c-data", 6) != 6 || shutdown(c, SHUT_WR))
            DIE("client write/shutdown");
        if (write(a, "s-data", 6) != 6 || shutdown(a, SHUT_WR))
            DIE("server write/shutdown");
        if (wait_state(c, TCP_CLOSING) != TCP_CLOSING || tcp_state(a) != TCP_FIN_WAIT1)
            DIE("not CLOSING / FIN_WAIT1");
        sleep_ms(50);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    int sc = tcp_state(c);
    CHECK(sc == TCP_CLOSING || sc == TCP_CLOSE, "client end restored in state %d", sc);
    CHECK(reads_then_eof(c, "s-data"), "client end: not \"s-data\" then end of file");
    CHECK(reads_then_eof(a, "c-data"), "server end: not \"c-data\" then end of file (states %d %d)", tcp_state(c), tcp_state(a));
    int fds[2] = { c, a };
    for (int i = 0; i < 2; i++) {
        errno = 0;
        CHECK(write(fds[i], "x", 1) < 0 && errno == EPIPE, "end %d: write: %s", i, strerror(errno));
        CHECK(wait_state(fds[i], TCP_CLOSE) == TCP_CLOSE, "end %d: state %d at the end", i, tcp_state(fds[i]));
    }
    return 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "opts";
    int to_result = 0;
    for (int i = 3; i < argc; i++)
        to_result |= !strcmp(argv[i], "result");
    for (int i = 3; i < argc; i++)
        g_acceptq_bytes |= !strcmp(argv[i], "bytes");
    g_port = argc > 3 ? atoi(argv[3]) : 0;
    int (*fn)(int) = !strcmp(mode, "opts")      ? mode_opts
                     : !strcmp(mode, "v6")      ? mode_v6
                     : !strcmp(mode, "kinds")   ? mode_kinds
                     : !strcmp(mode, "shutrd")  ? mode_shutrd
                     : !strcmp(mode, "synsent") ? mode_synsent
                     : !strcmp(mode, "closed")  ? mode_closed
                     : !strcmp(mode, "mcast")   ? mode_mcast
                     : !strcmp(mode, "urgent")  ? mode_urgent
                     : !strcmp(mode, "timewait") ? mode_timewait
                     : !strcmp(mode, "md5")     ? mode_md5
                     : !strcmp(mode, "finwait") ? mode_finwait
                     : !strcmp(mode, "closewait") ? mode_closewait
                     : !strcmp(mode, "closewait_eof") ? mode_closewait_eof
                     : !strcmp(mode, "finished") ? mode_finished
                     : !strcmp(mode, "synblock") ? mode_synblock
                     : !strcmp(mode, "udpq")    ? mode_udpq
                     : !strcmp(mode, "halfpair") ? mode_halfpair
                     : !strcmp(mode, "udpwild") ? mode_udpwild
                     : !strcmp(mode, "lastack") ? mode_lastack
                     : !strcmp(mode, "closing") ? mode_closing
                     : !strcmp(mode, "acceptq") ? mode_acceptq
                                                : NULL;
    if (!fn) {
        printf("FAIL: unknown mode %s\n", mode);
        return 2;
    }
    fn(0);
    ready();
    wait_go();
    if (to_result && stdout_to_result())
        return 1;
    fn(1);
    return finish();
}
