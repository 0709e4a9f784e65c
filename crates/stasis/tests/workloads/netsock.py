"""netsock: netlink and packet sockets in a network namespace of the workload's own
(loopback only, up).
args: WORKDIR all|nlqueue|nlevent|ring|cbpf|host|pingq|rawq [result]   (result: the verdict goes to WORKDIR/result,
so stdout does not change after the dump: a --leave-running original runs on)
all: a NETLINK_ROUTE socket (autobound port id, group RTMGRP_LINK from bind and group 33
  added, every SOL_NETLINK flag on, SO_RCVBUF), a NETLINK_KOBJECT_UEVENT socket in group
  1 (SO_PASSCRED, a filter), two NETLINK_USERSOCK sockets (one bound to port id 0x7e57, one autobound to a
  random port id (a third took the one equal to the pid) and connected to it, O_NONBLOCK), an unbound NETLINK_GENERIC datagram
  socket (SO_SNDBUF, O_NONBLOCK); a raw packet socket bound to lo for ETH_P_ALL with
  options (version, reserve, timestamp, auxdata, origdev, qdisc bypass, ignore outgoing),
  a promiscuous membership on lo added twice, fanout group 1234 (LB, defrag), a classic
  BPF filter (UDP to port 47555 only), locked; an unbound raw packet socket with a
  12-byte vnet header and TPACKET_V3; a datagram packet socket for ETH_P_IP on every
  interface (SO_RCVBUF, SO_PRIORITY, SO_TIMESTAMPNS, SO_MARK).
  After go, every value read back equals what was set; the route socket answers an
  RTM_GETLINK request (lo, promiscuity 1) and gets the RTM_NEWLINK event of lo going
  down; dropping the membership twice takes lo out of promiscuous mode (it was counted
  twice); a UDP datagram to 127.0.0.1:47555 reaches the filtered raw socket and the
  datagram one (a packet queued on the raw socket before READY is dropped by a restore,
  kept by a --leave-running dump: WORKDIR/queued_seen says which); a message sent on the
  connected usersock socket reaches the bound one.
nlqueue: the route socket has an RTM_GETLINK reply queued (the dump must be refused);
  after go the reply is read.
nlevent: the route socket has an RTM_NEWLINK notification (group RTMGRP_LINK: lo became
  promiscuous) queued (the dump must be refused); after go it is read.
ring: the raw packet socket has a PACKET_TX_RING (refused); after go it is still set up.
cbpf: the raw packet socket is in a fanout group steered by BPF (refused); after go it
  still is.
host: netlink sockets only, in the host's namespace (see host_mode).
pingq, rawq: a ping socket (ICMP datagram, bound to 127.0.0.1) or a raw ICMP socket with
  two ICMP messages queued (echo replies to two requests the ping socket sent; the raw
  socket sees the requests and the replies); the dump must be refused; after go both
  are read, first and second in order.
"""
import ctypes
import fcntl
import os
import socket
import struct
import sys
import time

import verdict

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
SOL_NETLINK = 270
NL_FLAGS = {"PKTINFO": 3, "BROADCAST_ERROR": 4, "NO_ENOBUFS": 5, "LISTEN_ALL_NSID": 8, "CAP_ACK": 10, "EXT_ACK": 11, "GET_STRICT_CHK": 12}
NETLINK_ADD_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS = 1, 9
NETLINK_USERSOCK, NETLINK_GENERIC, NETLINK_KOBJECT_UEVENT = 2, 16, 15
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_DROP_MEMBERSHIP, PACKET_MR_PROMISC = 1, 2, 1
PACKET_TX_RING, PACKET_FANOUT, PACKET_VNET_HDR_SZ = 13, 18, 24
PKT_OPTS = {"AUXDATA": (8, 1), "ORIGDEV": (9, 1), "VERSION": (10, 1), "RESERVE": (12, 32), "TIMESTAMP": (17, 4), "QDISC_BYPASS": (20, 1), "IGNORE_OUTGOING": (23, 1)}
SO_ATTACH_FILTER, SO_LOCK_FILTER, SO_TIMESTAMPNS = 26, 44, 35
ETH_P_ALL, ETH_P_IP = 3, 0x0800
RTMGRP_LINK, RTM_NEWLINK, RTM_GETLINK = 1, 16, 18
NLM_F_REQUEST = 1
IFLA_IFNAME, IFLA_PROMISCUITY = 3, 30
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP, IFF_PROMISC = 0x8913, 0x8914, 1, 0x100
FANOUT = 1234 | (1 << 16) | (0x80 << 24)  # id 1234, PACKET_FANOUT_LB, FLAG_DEFRAG
UDP_PORT = 47555
USER_PORTID = 0x7E57
FILTER = [  # ldh [12]; jeq IP; ldb [23]; jeq UDP; ldh [36]; jeq port; ret all; ret 0
    (0x28, 0, 0, 12), (0x15, 0, 5, 0x800), (0x30, 0, 0, 23), (0x15, 0, 3, 17),
    (0x28, 0, 0, 36), (0x15, 0, 1, UDP_PORT), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0),
]

work, mode = sys.argv[1], sys.argv[2]
to_file = sys.argv[3:] == ["result"]
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


def lo_flags(new=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0)))[1]
        if new is not None:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", new))
        return flags
    finally:
        s.close()


def getsockopt_raw(sock, level, opt, size):
    """getsockopt through libc: (bytes, optlen as the kernel answered it)."""
    buf = ctypes.create_string_buffer(size)
    ln = ctypes.c_uint32(size)
    if libc.getsockopt(sock.fileno(), level, opt, buf, ctypes.byref(ln)) != 0:
        raise OSError(ctypes.get_errno(), "getsockopt")
    return buf.raw, ln.value


def groups_of(sock):
    raw = sock.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 64)
    words = struct.unpack("%dI" % (len(raw) // 4), raw)
    return sorted(i * 32 + b + 1 for i, w in enumerate(words) for b in range(32) if w >> b & 1)


def get_filter(sock):
    # SO_GET_FILTER counts instructions: optlen 0 asks for the count
    _, n = getsockopt_raw(sock, socket.SOL_SOCKET, SO_ATTACH_FILTER, 0)
    raw, n = getsockopt_raw(sock, socket.SOL_SOCKET, SO_ATTACH_FILTER, n * 8) if n else (b"", 0)
    return [struct.unpack_from("HBBI", raw, 8 * i) for i in range(n)]


def getlink_request(seq):
    # nlmsghdr + ifinfomsg (all zero: a strict-checking socket takes it), lo by index
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 1, 0, 0)
    return struct.pack("IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body


def messages(data):
    off = 0
    while off + 16 <= len(data):
        ln, ty, fl, seq, pid = struct.unpack_from("IHHII", data, off)
        if ln < 16:
            break
        yield ty, seq, pid, data[off + 16:off + ln]
        off += (ln + 3) & ~3


def link_attrs(body):
    _, _, index, flags, _ = struct.unpack_from("BxHiII", body, 0)
    attrs, off = {}, 16
    while off + 4 <= len(body):
        ln, ty = struct.unpack_from("HH", body, off)
        if ln < 4:
            break
        attrs[ty] = body[off + 4:off + ln]
        off += (ln + 3) & ~3
    return index, flags, attrs


def wait_link(route, seq=None, down=None, timeout=5.0):
    """The first RTM_NEWLINK of lo answering `seq` (or an event when seq is None)."""
    end = time.time() + timeout
    while time.time() < end:
        route.settimeout(max(0.05, end - time.time()))
        try:
            data = route.recv(65536)
        except socket.timeout:
            break
        for ty, s, pid, body in messages(data):
            if ty != RTM_NEWLINK:
                continue
            index, flags, attrs = link_attrs(body)
            if index != 1 or (seq is not None and s != seq) or (seq is None and s != 0):
                continue
            if down is not None and bool(flags & IFF_UP) == down:
                continue
            return flags, attrs
    return None


def promiscuity(route, seq):
    route.send(getlink_request(seq))
    got = wait_link(route, seq=seq)
    if got is None:
        return None
    name = got[1].get(IFLA_IFNAME, b"").rstrip(b"\0")
    check(name == b"lo", "RTM_GETLINK answered for %r, not lo" % name)
    return struct.unpack("I", got[1][IFLA_PROMISCUITY])[0] if IFLA_PROMISCUITY in got[1] else None


def wait_go():
    go = os.path.join(work, "go")
    while not os.path.exists(go):
        time.sleep(0.01)


def host_mode():
    """Netlink sockets in the host's network namespace (no packet sockets: the host's lo
    carries other traffic): a NETLINK_ROUTE socket autobound to the pid with flags, a
    NETLINK_USERSOCK socket bound to 0x7e570000 + pid and one connected to it."""
    user_portid = 0x7E570000 + os.getpid()
    route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    route.bind((0, 0))
    route.setsockopt(SOL_NETLINK, NL_FLAGS["EXT_ACK"], 1)
    usr_a = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_USERSOCK)
    usr_a.bind((user_portid, 0))
    usr_b = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_USERSOCK)
    usr_b.connect((user_portid, 0))
    names = (route.getsockname(), usr_a.getsockname(), usr_b.getsockname())
    print("INFO user_portid=%d" % user_portid, flush=True)
    print("READY", flush=True)
    wait_go()
    now = (route.getsockname(), usr_a.getsockname(), usr_b.getsockname())
    check(now == names and names[0][0] == os.getpid(), "names %r, were %r" % (now, names))
    check(route.getsockopt(SOL_NETLINK, NL_FLAGS["EXT_ACK"]) == 1, "NETLINK_EXT_ACK lost")
    route.send(getlink_request(9))
    got = wait_link(route, seq=9)
    check(got is not None and got[1].get(IFLA_IFNAME, b"").rstrip(b"\0") == b"lo", "RTM_GETLINK of lo: %r" % (got,))
    usr_b.send(struct.pack("IHHII", 21, 0x10, 0, 1, 0) + b"howdy")
    usr_a.settimeout(5)
    try:
        check(usr_a.recv(100)[16:21] == b"howdy", "usersock message")
    except socket.timeout:
        check(False, "the usersock message did not arrive")


def icmp_queue_mode():
    with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
        f.write("0 2147483647")
    ping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    ping.bind(("127.0.0.1", 0))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) if mode == "rawq" else None
    for i in range(2):
        ping.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, i) + b"echo-%d" % i, ("127.0.0.1", 0))
    time.sleep(0.2)
    if raw:  # only the raw socket keeps its queue
        ping.settimeout(5)
        check([ping.recv(200)[8:] for _ in range(2)] == [b"echo-0", b"echo-1"], "ping replies before READY")
    held = raw or ping
    print("INFO queue_fd=%d" % held.fileno(), flush=True)
    print("READY", flush=True)
    wait_go()
    held.settimeout(5)
    got = []
    for _ in range(4 if raw else 2):
        d = held.recv(200)
        got.append(d[20 + 8:] if raw else d[8:])
    want = [b"echo-0", b"echo-0", b"echo-1", b"echo-1"] if raw else [b"echo-0", b"echo-1"]
    check(got == want, "queued ICMP messages after the refused dump: %r" % got)


def netns_mode():
    lo_flags(lo_flags() | IFF_UP)
    if mode in ("pingq", "rawq"):
        return icmp_queue_mode()

    route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    route.bind((0, RTMGRP_LINK))
    for opt in NL_FLAGS.values():
        route.setsockopt(SOL_NETLINK, opt, 1)
    route.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 33)
    route.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.bind(("lo", ETH_P_ALL))
    if mode == "nlqueue":
        route.send(getlink_request(7))
        time.sleep(0.1)
    elif mode == "nlevent":
        lo_flags(lo_flags() | IFF_PROMISC)
        time.sleep(0.1)
    elif mode == "ring":
        raw.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack("IIII", 4096, 1, 2048, 2))
    elif mode == "cbpf":
        raw.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", 99 | (6 << 16)))  # PACKET_FANOUT_CBPF
    print("INFO route_fd=%d\nINFO raw_fd=%d" % (route.fileno(), raw.fileno()), flush=True)

    if mode == "all":
        uevent = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        uevent.bind((0, 1))
        uevent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # like udev: credentials and a filter
        uevent_filter = [(0x06, 0, 0, 0xFFFFFFFF)]
        uinsns = (ctypes.c_uint64 * 1)(struct.unpack("Q", struct.pack("HBBI", *uevent_filter[0]))[0])
        uevent.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(uinsns)))
        usr_a = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_USERSOCK)
        usr_a.bind((USER_PORTID, 0))
        usr_c = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_USERSOCK)
        usr_c.bind((0, 0))  # takes the port id equal to our pid: usr_b gets a random one
        usr_b = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_USERSOCK)
        usr_b.connect((USER_PORTID, 0))
        usr_b.setblocking(False)
        gen = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_GENERIC)
        gen.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 50000)
        gen.setblocking(False)
        for name, (opt, val) in PKT_OPTS.items():
            raw.setsockopt(SOL_PACKET, opt, val)
        mreq = struct.pack("iHH8s", 1, PACKET_MR_PROMISC, 0, b"")
        raw.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        raw.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        raw.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", FANOUT))
        insns = (ctypes.c_uint64 * len(FILTER))(*[struct.unpack("Q", struct.pack("HBBI", *i))[0] for i in FILTER])
        raw.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(FILTER), ctypes.addressof(insns)))
        raw.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
        vnet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        vnet.setsockopt(SOL_PACKET, PACKET_VNET_HDR_SZ, 12)
        vnet.setsockopt(SOL_PACKET, PKT_OPTS["VERSION"][0], 2)
        vnet.setblocking(False)
        dgram = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        dgram.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 100000)
        dgram.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 5)
        dgram.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        dgram.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 77)
        # a packet queued on the filtered raw socket at dump time: dropped by a restore
        # (WORKDIR/queued_seen says 0), still there after --leave-running (1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"before-dump", ("127.0.0.1", UDP_PORT))
        u.close()
        for _ in range(100):
            if struct.unpack("i", fcntl.ioctl(raw, 0x541B, b"\0" * 4))[0] > 0:  # FIONREAD
                break
            time.sleep(0.01)
        else:
            check(False, "the packet sent before READY is not queued on the raw socket")
        names = {
            "route": route.getsockname(), "usr_a": usr_a.getsockname(), "usr_b": usr_b.getsockname(), "usr_c": usr_c.getsockname(),
            "gen": gen.getsockname(), "uevent": uevent.getsockname(),
        }
        bufs = (route.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), gen.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                dgram.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        print("INFO route_portid=%d\nINFO usr_b_portid=%d" % (names["route"][0], names["usr_b"][0]), flush=True)
        # the events of the setup (lo's promiscuity changed): read, so nothing is queued
        time.sleep(0.1)
        try:
            while True:
                route.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass

    print("READY", flush=True)
    wait_go()

    if mode == "nlqueue":
        route.settimeout(5)
        got = [ty for ty, seq, _, _ in messages(route.recv(65536)) if seq == 7]
        check(got == [RTM_NEWLINK], "the queued RTM_GETLINK reply: %r" % got)
    elif mode == "nlevent":
        route.settimeout(5)
        got = wait_link(route)
        check(got is not None and got[1].get(IFLA_IFNAME, b"").rstrip(b"\0") == b"lo", "the queued RTM_NEWLINK event: %r" % (got,))
    elif mode == "cbpf":
        fan = raw.getsockopt(SOL_PACKET, PACKET_FANOUT)
        check(fan == 99 | (6 << 16), "PACKET_FANOUT reads %#x after the refused dump" % fan)
    elif mode == "ring":
        # a second PACKET_TX_RING on a socket with one fails with EBUSY
        try:
            raw.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack("IIII", 4096, 1, 2048, 2))
            check(False, "PACKET_TX_RING could be set again: the ring is gone")
        except OSError as e:
            check(e.errno == 16, "PACKET_TX_RING again: %s (want EBUSY)" % e)
    else:
        # netlink: names, groups, flags, buffers
        check(route.getsockname() == names["route"] and names["route"][0] == os.getpid(), "route getsockname %r, was %r (pid %d)" % (route.getsockname(), names["route"], os.getpid()))
        check(groups_of(route) == [1, 33], "route groups %r, want [1, 33]" % groups_of(route))
        for name, opt in NL_FLAGS.items():
            v = route.getsockopt(SOL_NETLINK, opt)
            check(v == 1, "NETLINK_%s reads %d" % (name, v))
        check(uevent.getsockname() == names["uevent"] and groups_of(uevent) == [1], "uevent %r groups %r" % (uevent.getsockname(), groups_of(uevent)))
        check(uevent.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1 and get_filter(uevent) == uevent_filter, "uevent SO_PASSCRED / filter %r" % get_filter(uevent))
        sol = [dgram.getsockopt(socket.SOL_SOCKET, o) for o in (socket.SO_PRIORITY, SO_TIMESTAMPNS, socket.SO_MARK)]
        check(sol == [5, 1, 77], "dgram SO_PRIORITY, SO_TIMESTAMPNS, SO_MARK: %r" % sol)
        check(usr_a.getsockname() == (USER_PORTID, 0), "usersock bound name %r" % (usr_a.getsockname(),))
        check(usr_c.getsockname() == names["usr_c"] == (os.getpid(), 0), "usersock autobound to the pid: %r, was %r" % (usr_c.getsockname(), names["usr_c"]))
        check(usr_b.getsockname() == names["usr_b"] and names["usr_b"][0] not in (0, os.getpid()), "usersock autobound name %r, was %r" % (usr_b.getsockname(), names["usr_b"]))
        check(usr_b.getpeername() == (USER_PORTID, 0), "usersock peer %r" % (usr_b.getpeername(),))
        check(not usr_b.getblocking() and not gen.getblocking(), "O_NONBLOCK lost")
        check(gen.getsockname() == (0, 0), "generic socket name %r (was unbound)" % (gen.getsockname(),))
        now = (route.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), gen.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
               dgram.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        check(now == bufs, "buffer sizes %r, were %r" % (now, bufs))
        # packet: options, fanout, filter
        for name, (opt, val) in PKT_OPTS.items():
            v = raw.getsockopt(SOL_PACKET, opt)
            check(v == val, "PACKET_%s reads %d, set %d" % (name, v, val))
        fan = raw.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFFFFFF
        check(fan == FANOUT, "PACKET_FANOUT reads %#x, want %#x" % (fan, FANOUT))
        check(get_filter(raw) == FILTER, "SO_GET_FILTER: %r" % get_filter(raw))
        check(raw.getsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER) == 1, "SO_LOCK_FILTER lost")
        check(raw.getsockname()[:2] == ("lo", ETH_P_ALL), "raw packet socket name %r" % (raw.getsockname(),))
        check(vnet.getsockopt(SOL_PACKET, PACKET_VNET_HDR_SZ) == 12 and vnet.getsockopt(SOL_PACKET, 10) == 2, "vnet socket options")
        check(dgram.getsockname()[1] == ETH_P_IP and dgram.getsockname()[0] == "", "dgram packet socket name %r" % (dgram.getsockname(),))
        # the route socket answers requests; lo is promiscuous once (the membership, added twice)
        n = promiscuity(route, 100)
        check(n == 1, "lo promiscuity %r, want 1" % n)
        raw.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, mreq)
        n = promiscuity(route, 101)
        check(n == 1, "after one drop: promiscuity %r, want 1 (added twice)" % n)
        raw.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, mreq)
        n = promiscuity(route, 102)
        check(n == 0, "after two drops: promiscuity %r, want 0" % n)
        # traffic: a UDP datagram on lo reaches the filtered raw socket and the dgram one
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"other port", ("127.0.0.1", UDP_PORT + 1))
        u.sendto(b"stasis-pkt", ("127.0.0.1", UDP_PORT))
        u.close()
        raw.settimeout(5)
        frames = []
        try:
            while not frames or not frames[-1].endswith(b"stasis-pkt"):
                frames.append(raw.recv(65536))
        except socket.timeout:
            check(False, "nothing reached the raw packet socket")
        # (in a fanout group PACKET_IGNORE_OUTGOING does not apply: the outgoing copy of
        # each datagram may come too)
        tails = [b"before-dump" if f.endswith(b"before-dump") else b"stasis-pkt" if f.endswith(b"stasis-pkt") else f[-12:] for f in frames]
        check(set(tails) <= {b"before-dump", b"stasis-pkt"},
              "raw packet socket received %r (the filter passes only port %d)" % (tails, UDP_PORT))
        with open(os.path.join(work, "queued_seen"), "w") as f:
            f.write("1" if b"before-dump" in tails else "0")
        # it sees every IP packet on lo, outgoing and incoming (ICMP errors too)
        dgram.settimeout(2)
        got = []
        try:
            while len(got) < 50 and not (got and got[-1].endswith(b"stasis-pkt")):
                got.append(dgram.recv(65536))
        except socket.timeout:
            pass
        check(got and got[-1].endswith(b"stasis-pkt"), "dgram packet socket received %r" % got[-4:])
        # netlink unicast between the two usersock sockets
        usr_b.send(struct.pack("IHHII", 21, 0x10, 0, 1, 0) + b"hello")
        usr_a.settimeout(5)
        try:
            check(usr_a.recv(100)[16:21] == b"hello", "usersock message")
        except socket.timeout:
            check(False, "the usersock message did not arrive")

        # a multicast event: lo goes down (RTMGRP_LINK), then up again (last: the packet
        # socket bound to lo gets ENETDOWN)
        lo_flags(lo_flags() & ~IFF_UP)
        check(wait_link(route, down=True) is not None, "no RTM_NEWLINK event for lo going down")
        lo_flags(lo_flags() | IFF_UP)


if mode == "host":
    host_mode()
elif libc.unshare(CLONE_NEWNET) != 0:
    print("FAIL: unshare(CLONE_NEWNET): errno %d" % ctypes.get_errno(), flush=True)
    sys.exit(1)
else:
    netns_mode()
verdict.finish(work, to_file, fails)
