"""pktring: a packet socket with an mmap'ed receive ring, in a network namespace of the
workload's own (loopback only, up).
args: WORKDIR v1|v2|v3|hostns|hostns-used [result]   (result: the verdict goes to WORKDIR/result, so stdout
does not change after the dump: a --leave-running original runs on)
v1, v2: a raw packet socket bound to lo for ethertype 0x88B7 with TPACKET_V1 or V2,
  PACKET_RESERVE 16, a ring of 4 blocks of 4096 bytes (16 frames of 1024). Before READY
  a second packet socket sends 14 frames "pkt-0".."pkt-13" over lo (frames 0..13), the
  program consumes 12 (checking each), then 4 more arrive ("pkt-14".."pkt-17": frames
  14, 15, 0, 1): six frames are the program's (12..15, 0, 1), the kernel fills frame 2
  next. After go: the ring is mapped where it was, version and reserve read back, the six
  frames hold "pkt-12".."pkt-17" in order with their lengths, and three new frames
  ("new-0".."new-2") arrive in frames 2, 3, 4; a second PACKET_RX_RING fails (EBUSY);
  PACKET_STATISTICS ("packets drops") goes to WORKDIR/ring_stats.
hostns: the same ring in the host's network namespace, nothing received (its next
  frame is 0); prints INFO ring_fd and READY, after go checks the ring is still set up.
hostns-used: as hostns, bound to the host's lo for ethertype 0x88B7, one frame received
  and consumed (next frame 1: a restore must refuse to move it there).
v3: as hostns with a TPACKET_V3 ring (a dump must refuse it).
"""
import ctypes
import mmap
import os
import socket
import struct
import sys
import time

import verdict

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION, PACKET_RESERVE = 5, 6, 10, 12
ETH_P_TEST = 0x88B7
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1
BLOCK, BLOCKS, FRAME = 4096, 4, 1024
NFRAMES = BLOCK // FRAME * BLOCKS
RESERVE = 16

work, mode = sys.argv[1], sys.argv[2]
to_file = sys.argv[3:] == ["result"]
version = {"v1": 0, "v3": 2}.get(mode, 1)
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


def lo_up():
    import fcntl
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack("16sH", b"lo", 0)
    flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, ifr + b"\0" * 22)[:18])[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP) + b"\0" * 22)
    s.close()


def hdr(ring, i):
    """(status, snaplen, mac offset) of frame i (TPACKET_V1: unsigned long status)."""
    off = i * FRAME
    if version == 0:
        status, _, snaplen, mac = struct.unpack_from("QIIH", ring, off)
    else:
        status, _, snaplen, mac = struct.unpack_from("IIIH", ring, off)
    return status, snaplen, mac


def set_kernel(ring, i):
    struct.pack_into("Q" if version == 0 else "I", ring, i * FRAME, 0)


def wait_user(ring, i, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if hdr(ring, i)[0] & 1:
            return True
        time.sleep(0.002)
    return False


def payload(ring, i):
    """The frame's packet without its 14-byte ethernet header."""
    _, snaplen, mac = hdr(ring, i)
    return bytes(ring[i * FRAME + mac + 14:i * FRAME + mac + snaplen])


def wait_go():
    go = os.path.join(work, "go")
    while not os.path.exists(go):
        time.sleep(0.01)


def ring_req():
    return struct.pack("IIIIIII", BLOCK, BLOCKS, FRAME, NFRAMES, 10 if version == 2 else 0, 0, 0)


def make_ring():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
    s.setsockopt(SOL_PACKET, PACKET_VERSION, version)
    s.setsockopt(SOL_PACKET, PACKET_RESERVE, RESERVE)
    s.setsockopt(SOL_PACKET, PACKET_RX_RING, ring_req())
    ring = mmap.mmap(s.fileno(), BLOCK * BLOCKS, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    return s, ring


def ring_busy(s):
    try:
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, ring_req())
        return "PACKET_RX_RING could be set again: the ring is gone"
    except OSError as e:
        return None if e.errno == 16 else "PACKET_RX_RING again: %s (want EBUSY)" % e


def main():
    if mode in ("hostns", "hostns-used", "v3"):
        s, ring = make_ring()
        if mode == "hostns-used":
            s.bind(("lo", ETH_P_TEST))
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            tx.sendto(b"pkt-0", ("lo", ETH_P_TEST, 0, 0, b"\0" * 6))
            check(wait_user(ring, 0) and payload(ring, 0) == b"pkt-0", "frame 0 not received")
            set_kernel(ring, 0)
        print("INFO ring_fd=%d" % s.fileno(), flush=True)
        print("READY", flush=True)
        wait_go()
        why = ring_busy(s)
        check(why is None, why)
        return
    if libc.unshare(CLONE_NEWNET) != 0:
        check(False, "unshare(CLONE_NEWNET): errno %d" % ctypes.get_errno())
        return
    lo_up()
    s, ring = make_ring()
    s.bind(("lo", ETH_P_TEST))
    addr = ctypes.addressof(ctypes.c_char.from_buffer(ring))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)

    def send(data):
        tx.sendto(data, ("lo", ETH_P_TEST, 0, 0, b"\0" * 6))

    idx = 0
    for n in range(14):
        send(b"pkt-%d" % n)
    for _ in range(12):
        check(wait_user(ring, idx), "frame %d never filled before the dump" % idx)
        got = payload(ring, idx)
        check(got == b"pkt-%d" % idx, "frame %d before the dump: %r" % (idx, got))
        set_kernel(ring, idx)
        idx += 1
    for n in range(14, 18):
        send(b"pkt-%d" % n)
    check(wait_user(ring, 1), "frame 1 never filled before the dump")
    print("INFO ring_addr=%d" % addr, flush=True)
    print("READY", flush=True)
    wait_go()

    check(ctypes.addressof(ctypes.c_char.from_buffer(ring)) == addr, "ring moved")
    check(s.getsockopt(SOL_PACKET, PACKET_VERSION) == version, "PACKET_VERSION %d" % s.getsockopt(SOL_PACKET, PACKET_VERSION))
    check(s.getsockopt(SOL_PACKET, PACKET_RESERVE) == RESERVE, "PACKET_RESERVE %d" % s.getsockopt(SOL_PACKET, PACKET_RESERVE))
    # the six frames the program had not consumed, in order, then new ones where the
    # program expects them
    want = [b"pkt-%d" % n for n in range(12, 18)] + [b"new-%d" % n for n in range(3)]
    for k, w in enumerate(want):
        if k == 6:
            for n in range(3):
                send(b"new-%d" % n)
        if not wait_user(ring, idx):
            check(False, "frame %d (%r) never filled after go" % (idx, w))
            break
        status, snaplen, mac = hdr(ring, idx)
        got = payload(ring, idx)
        check(got == w and snaplen == 14 + len(w), "frame %d: %r (snaplen %d), want %r" % (idx, got, snaplen, w))
        check(mac >= RESERVE, "frame %d: mac offset %d below the reserve" % (idx, mac))
        set_kernel(ring, idx)
        idx = (idx + 1) % NFRAMES
    check(idx == 5, "stopped at frame %d" % idx)
    # PACKET_STATISTICS (tp_packets, tp_drops), for the test to check: the original
    # counts the 21 frames it got, a restored socket only the 3 new ones
    with open(os.path.join(work, "ring_stats"), "w") as f:
        f.write("%d %d" % struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)))
    check(all(hdr(ring, i)[0] & 1 == 0 for i in range(NFRAMES)), "a frame filled too many")
    why = ring_busy(s)
    check(why is None, why)


main()
verdict.finish(work, to_file, fails)
