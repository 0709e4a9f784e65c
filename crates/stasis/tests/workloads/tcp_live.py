"""tcp_live: a server with a listener (SO_REUSEADDR, as redis, nginx and node set it)
and one accepted connection from a client outside the tree (the test), holding 5
unread bytes from it, with options set on the connection.

args: WORKDIR. Prints INFO port=, then (after the client's 5 bytes arrived) the state
of both sockets read from inside (options, TCP state, queue lengths, addresses) as
INFO state=, READY. After WORKDIR/go: reads the state again and compares (FAIL on any
difference), then checks the connection both ways: reads the 5 queued bytes
("hello"), sends "world", reads "ping", sends "pong"; PASS.
"""
import fcntl
import os
import socket
import struct
import sys
import time

d = sys.argv[1]
TCP_REPAIR = 19
SIOCINQ, SIOCOUTQ = 0x541B, 0x5411


def state(s):
    v = []
    for lvl, opt in [(socket.SOL_SOCKET, socket.SO_REUSEADDR), (socket.SOL_SOCKET, socket.SO_REUSEPORT),
                     (socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.IPPROTO_TCP, socket.TCP_NODELAY),
                     (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                     (socket.IPPROTO_TCP, TCP_REPAIR)]:
        v.append(s.getsockopt(lvl, opt))
    v.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])  # tcpi_state
    for req in (SIOCINQ, SIOCOUTQ):  # EINVAL on a listener
        try:
            v.append(struct.unpack("i", fcntl.ioctl(s.fileno(), req, b"\0" * 4))[0])
        except OSError:
            v.append(None)
    v.append(s.getsockname())
    try:
        v.append(s.getpeername())
    except OSError:
        v.append(None)
    return v


ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(16)
print("INFO port=%d" % ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 30000)
t0 = time.time()
while state(c)[8] < 5:
    if time.time() - t0 > 10:
        print("FAIL: the client's 5 bytes never arrived", flush=True)
        sys.exit(1)
    time.sleep(0.01)
before = [state(ls), state(c)]
print("INFO state=%r" % (before,), flush=True)
print("READY", flush=True)
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)
after = [state(ls), state(c)]
ok = True
for name, b, a in zip(["listener", "connection"], before, after):
    if a != b:
        print("FAIL: %s changed: before %r, after %r" % (name, b, a), flush=True)
        ok = False
c.settimeout(10)


def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


got = recv_exact(5)
if got != b"hello":
    print("FAIL: queued bytes %r, expected b'hello'" % got, flush=True)
    ok = False
c.sendall(b"world")
got = recv_exact(4)
if got != b"ping":
    print("FAIL: read %r after the dump, expected b'ping'" % got, flush=True)
    ok = False
c.sendall(b"pong")
if ok:
    print("PASS", flush=True)
sys.exit(0 if ok else 1)
