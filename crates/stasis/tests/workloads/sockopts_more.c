/*
 * sockopts_more: socket options beyond inet.c's set, on a UDP socket, an IPv6 UDP
 * socket and a TCP listener: busy polling, incoming CPU, receive mark, pacing rate,
 * SO_TXTIME, IP_UNICAST_IF, IP_OPTIONS (bytes of any length), the IPv6 ancillary-data
 * switches, minimum hop count, address preferences, flow info, TCP_SAVE_SYN, TCP_INQ,
 * TCP_RTO_MIN_US and TCP_DELACK_MAX_US. Each is read back right after it is set (the
 * kernel may round it) and again after restore: the same bytes. An option this kernel
 * refuses to set is skipped (INFO line).
 */
#include "common.h"
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

enum { UDP4, UDP6, TCPL, NSOCK };
static const struct opt {
    int sock, level, name, len;
    long long val; // int, or the u64 of SO_MAX_PACING_RATE
    const char *label;
} opts[] = {
    { UDP4, SOL_SOCKET, 69, 4, 1, "SO_PREFER_BUSY_POLL" },
    { UDP4, SOL_SOCKET, 49, 4, 1, "SO_INCOMING_CPU" },
    { UDP4, SOL_SOCKET, 75, 4, 1, "SO_RCVMARK" },
    { UDP4, SOL_SOCKET, 41, 4, 1, "SO_WIFI_STATUS" },
    { UDP4, SOL_SOCKET, 47, 8, 123456789, "SO_MAX_PACING_RATE" },
    { UDP4, IPPROTO_IP, 50, 4, 0x01000000, "IP_UNICAST_IF" }, // lo (1), network byte order
    { UDP6, IPPROTO_IPV6, 56, 4, 1, "IPV6_RECVRTHDR" },
    { UDP6, IPPROTO_IPV6, 53, 4, 1, "IPV6_RECVHOPOPTS" },
    { UDP6, IPPROTO_IPV6, 58, 4, 1, "IPV6_RECVDSTOPTS" },
    { UDP6, IPPROTO_IPV6, 77, 4, 1, "IPV6_RECVFRAGSIZE" },
    { UDP6, IPPROTO_IPV6, 11, 4, 1, "IPV6_FLOWINFO" },
    { UDP6, IPPROTO_IPV6, 73, 4, 5, "IPV6_MINHOPCOUNT" },
    { UDP6, IPPROTO_IPV6, 72, 4, 0x0400, "IPV6_ADDR_PREFERENCES" }, // IPV6_PREFER_SRC_PUBLIC
    { TCPL, IPPROTO_TCP, 27, 4, 1, "TCP_SAVE_SYN" },
    { TCPL, IPPROTO_TCP, 36, 4, 1, "TCP_INQ" },
    { TCPL, IPPROTO_TCP, 45, 4, 50000, "TCP_RTO_MIN_US" },
    { TCPL, IPPROTO_TCP, 46, 4, 20000, "TCP_DELACK_MAX_US" },
    { TCPL, SOL_SOCKET, 49, 4, 1, "SO_INCOMING_CPU (tcp)" },
};
#define NOPTS (int)(sizeof opts / sizeof opts[0])

static int s[NSOCK];
static int set_ok[NOPTS + 2];
static unsigned char was[NOPTS + 2][40];
static socklen_t was_len[NOPTS + 2];

static int snap(int i, int fd, int level, int name, unsigned char *out, socklen_t *len)
{
    *len = 40;
    memset(out, 0, 40);
    (void)i;
    return getsockopt(fd, level, name, out, len);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    s[UDP4] = socket(AF_INET, SOCK_DGRAM, 0);
    s[UDP6] = socket(AF_INET6, SOCK_DGRAM, 0);
    s[TCPL] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(s[TCPL], (void *)&a, sizeof a) || listen(s[TCPL], 4))
        DIE("listen");
    for (int i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        int iv = (int)o->val;
        unsigned long long lv = (unsigned long long)o->val;
        set_ok[i] = !setsockopt(s[o->sock], o->level, o->name, o->len == 8 ? (void *)&lv : (void *)&iv, o->len);
        if (!set_ok[i])
            info(o->label, "not settable here: %s", strerror(errno));
        else if (snap(i, s[o->sock], o->level, o->name, was[i], &was_len[i])) {
            info(o->label, "set but not readable here: %s", strerror(errno));
            set_ok[i] = 0;
        }
    }
    // SO_TXTIME (struct sock_txtime) and IP_OPTIONS (a record route option, 4 bytes)
    struct sock_txtime tt = { CLOCK_TAI, SOF_TXTIME_REPORT_ERRORS };
    unsigned char rr[4] = { 1, 1, 1, 0 }; // NOP, NOP, NOP, END
    set_ok[NOPTS] = !setsockopt(s[UDP4], SOL_SOCKET, SO_TXTIME, &tt, sizeof tt);
    set_ok[NOPTS + 1] = !setsockopt(s[UDP4], IPPROTO_IP, IP_OPTIONS, rr, sizeof rr);
    if (!set_ok[NOPTS] || !set_ok[NOPTS + 1])
        DIE("SO_TXTIME / IP_OPTIONS");
    snap(NOPTS, s[UDP4], SOL_SOCKET, SO_TXTIME, was[NOPTS], &was_len[NOPTS]);
    snap(NOPTS + 1, s[UDP4], IPPROTO_IP, IP_OPTIONS, was[NOPTS + 1], &was_len[NOPTS + 1]);
    ready();
    wait_go();
    for (int i = 0; i < NOPTS + 2; i++) {
        if (!set_ok[i])
            continue;
        const char *label = i < NOPTS ? opts[i].label : i == NOPTS ? "SO_TXTIME" : "IP_OPTIONS";
        int fd = i < NOPTS ? s[opts[i].sock] : s[UDP4];
        int level = i < NOPTS ? opts[i].level : i == NOPTS ? SOL_SOCKET : IPPROTO_IP;
        int name = i < NOPTS ? opts[i].name : i == NOPTS ? SO_TXTIME : IP_OPTIONS;
        unsigned char now[40];
        socklen_t len;
        int r = snap(i, fd, level, name, now, &len);
        CHECK(r == 0 && len == was_len[i] && !memcmp(now, was[i], len), "%s: %u bytes %02x%02x%02x%02x (was %u bytes %02x%02x%02x%02x)", label, len,
              now[0], now[1], now[2], now[3], was_len[i], was[i][0], was[i][1], was[i][2], was[i][3]);
    }
    return finish();
}
