"""creds: unix socket messages queued with their senders' credentials (SCM_CREDENTIALS).
args: WORKDIR
The parent holds the reading ends, all with SO_PASSCRED; a child (alive throughout)
and the parent send:
  dgram pair    child: "c1" (credentials the kernel attaches), "c2" (explicit, uid and
                gid 1000); parent: "p1" on the same socket
  stream pair   child "AAA", parent "BBB", child "CC" (a read never joins two writers)
  named dgram   (abstract name) "g1" from a grandchild that exited before the dump:
                its pid is gone, uid and gid 0 stay
  plain pair    no SO_PASSCRED anywhere: "x" carries no credentials
After go every message is read with its credentials, which must be those of its sender:
pid (the child's and parent's pids are kept by the restore), uid, gid."""
import os
import socket
import struct
import sys
import time

d = sys.argv[1]
CRED = struct.calcsize("3i")


def passcred(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)


def send_creds(s, data, pid, uid, gid):
    s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("3i", pid, uid, gid))])


def read(s, n=64):
    data, anc, _, _ = s.recvmsg(n, socket.CMSG_SPACE(CRED))
    creds = None
    for level, ty, raw in anc:
        if level == socket.SOL_SOCKET and ty == socket.SCM_CREDENTIALS:
            creds = struct.unpack("3i", raw[:CRED])
    return data, creds


ra, wa = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
rs, ws = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
rp, wp = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
for s in (ra, rs):
    passcred(s)
name = b"\0stasis-creds-%d" % os.getpid()
rn = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
rn.bind(name)
passcred(rn)
me = os.getpid()
sync_r, sync_w = os.pipe()
child = os.fork()
if child == 0:
    wa.send(b"c1")
    send_creds(wa, b"c2", os.getpid(), 1000, 1000)
    ws.sendall(b"AAA")
    os.write(sync_w, b"1")
    time.sleep(0.2)  # the parent writes BBB meanwhile
    ws.sendall(b"CC")
    g = os.fork()
    if g == 0:
        t = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        passcred(t)
        t.sendto(b"g1", name)
        os._exit(0)
    os.waitpid(g, 0)
    os.write(sync_w, b"2")
    while True:
        time.sleep(1)
os.read(sync_r, 1)
ws.sendall(b"BBB")
os.read(sync_r, 1)
wa.send(b"p1")
wp.send(b"x")
time.sleep(0.05)
print("INFO child=%d" % child, flush=True)
print("READY", flush=True)
go = os.path.join(d, "go")
while not os.path.exists(go):
    time.sleep(0.01)
fails = []


def want(what, got, data, creds):
    if got != (data, creds):
        fails.append("%s: got %r, want %r" % (what, got, (data, creds)))


for s in (ra, rs, rn, rp):
    s.setblocking(False)
want("dgram 1", read(ra), b"c1", (child, 0, 0))
want("dgram 2", read(ra), b"c2", (child, 1000, 1000))
want("dgram 3", read(ra), b"p1", (me, 0, 0))
want("stream 1", read(rs), b"AAA", (child, 0, 0))
want("stream 2", read(rs), b"BBB", (me, 0, 0))
want("stream 3", read(rs), b"CC", (child, 0, 0))
data, creds = read(rn)
if data != b"g1" or creds is None or creds[1:] != (0, 0) or creds[0] in (0, me, child):
    fails.append("named: got %r %r, want b'g1' from a gone pid, uid 0, gid 0" % (data, creds))
want("plain", read(rp), b"x", None)
os.kill(child, 9)
os.waitpid(child, 0)
if fails:
    for f in fails:
        print("FAIL: " + f, flush=True)
    sys.exit(1)
print("PASS", flush=True)
