"""tcp_stream: a server streaming both ways with one client outside the tree
(tests/workloads/tcp_stream_client.py), both sending a known byte pattern (byte at
stream offset i = i % 251) in 1 KiB chunks every 5 ms and checking every byte they
receive against it: a lost, repeated or reordered byte is a mismatch.

args: WORKDIR [async]. Keeps WORKDIR/held.txt open (a test changes it to make a restore
fail). `async` also holds a POSIX message queue (a dump refuses it, after the network
lock was taken; the mode keeps its old name; the queue is unlinked right away). Prints INFO port=, READY once the client is accepted.
After WORKDIR/go: stops sending, shuts its side down (SHUT_WR), reads until the
client's EOF, prints INFO sent= and INFO recv= and PASS if every byte matched and the
connection never failed.
"""
import os
import select
import socket
import sys
import time

d = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else ""
BASE = bytes(i % 251 for i in range(251 * 300))  # > 65536 + 251: any recv size


def pattern(off, n):
    s = off % 251
    return BASE[s:s + n]


held = open(os.path.join(d, "held.txt"), "a+")  # a file the test may change (restore refuses)
if mode == "async":
    import ctypes
    rt = ctypes.CDLL("librt.so.1", use_errno=True)
    name = b"/stasis-netlock-%d" % os.getpid()
    mq = rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None)
    if mq < 0:
        sys.exit("mq_open: errno %d" % ctypes.get_errno())
    rt.mq_unlink(name)
    # a notification registered on it (mq_notify, SIGEV_NONE): the dump refuses that
    import struct
    ev = ctypes.create_string_buffer(64)
    struct.pack_into("i", ev, 12, 1)  # struct sigevent: sigev_notify = SIGEV_NONE
    if rt.mq_notify(mq, ev) != 0:
        sys.exit("mq_notify: errno %d" % ctypes.get_errno())
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
print("INFO port=%d" % ls.getsockname()[1], flush=True)
c, _ = ls.accept()
ls.close()
c.setblocking(False)
print("READY", flush=True)
sent = recv = 0
fails = []
sending = True
last = 0.0
go = os.path.join(d, "go")
while True:
    if sending and os.path.exists(go):
        sending = False
        c.shutdown(socket.SHUT_WR)
    rl, wl, _ = select.select([c], [c] if sending else [], [], 0.005)
    if rl:
        try:
            b = c.recv(65536)
        except BlockingIOError:
            b = None
        except OSError as e:
            fails.append("recv: %r" % e)
            break
        if b == b"":
            break
        if b:
            if b != pattern(recv, len(b)):
                fails.append("byte mismatch in the %d bytes at offset %d" % (len(b), recv))
                break
            recv += len(b)
    if sending and wl and time.time() - last >= 0.005:
        try:
            sent += c.send(pattern(sent, 1024))
        except BlockingIOError:
            pass
        except OSError as e:
            fails.append("send: %r" % e)
            break
        last = time.time()
print("INFO sent=%d" % sent, flush=True)
print("INFO recv=%d" % recv, flush=True)
for f in fails:
    print("FAIL: " + f, flush=True)
if not fails:
    print("PASS", flush=True)
sys.exit(1 if fails else 0)
