/*
 * ebpf_filter: an eBPF socket filter (SO_ATTACH_BPF) that drops every packet, on a UDP
 * socket bound to 127.0.0.1 (argv "udp") or on one end of a unix datagram pair
 * ("unix"). The kernel gives no program of this kind back (SO_GET_FILTER: EACCES), so
 * a dump must refuse it; the process then checks its filter still drops what is sent.
 */
#include "common.h"
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int unix_pair = argc > 2 && !strcmp(argv[2], "unix");
    // r0 = 0: keep no byte of any packet
    struct bpf_insn prog[] = {
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
        { .code = BPF_JMP | BPF_EXIT },
    };
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    a.insn_cnt = 2;
    a.insns = (unsigned long)prog;
    a.license = (unsigned long)"GPL";
    int pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
    if (pfd < 0)
        DIE("BPF_PROG_LOAD");
    int rx, tx;
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t tl = sizeof to;
    if (unix_pair) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp))
            DIE("socketpair");
        rx = sp[0], tx = sp[1];
    } else {
        rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
        if (bind(rx, (void *)&to, sizeof to) || getsockname(rx, (void *)&to, &tl) || connect(tx, (void *)&to, sizeof to))
            DIE("udp");
    }
    if (setsockopt(rx, SOL_SOCKET, SO_ATTACH_BPF, &pfd, sizeof pfd))
        DIE("SO_ATTACH_BPF");
    close(pfd);
    ready();
    wait_go();
    char b[8];
    CHECK(send(tx, "x", 1, 0) == 1, "send: %s", strerror(errno));
    sleep_ms(50);
    CHECK(recv(rx, b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN, "the filter let a packet through");
    return finish();
}
