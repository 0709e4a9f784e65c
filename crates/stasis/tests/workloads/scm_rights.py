"""scm_rights: file descriptors in flight (SCM_RIGHTS) in unix socket queues at dump time.
  s1 -> s2 (stream): b"hdr" (no fds), then b"fds" carrying [r, f, x], then b"tail".
     r: read end of a pipe holding b"pipedata", closed here (only in flight);
     f: a regular file at offset 5, ALSO still open here (one description, shared);
     x: one end of a socketpair whose other end y is kept here; x closed here.
  d1 -> d2 (datagram): b"m1" carrying a memfd holding b"memfd-content" (closed here),
     then an empty datagram carrying a dup of f.
After restore: the reads see the same boundaries (b"hdr" alone, then b"fds" with three
fds), each received fd is what was sent (pipe bytes, shared offset with f, a working
socket to y, the memfd's content), and nothing else is queued."""
import os
import socket
import sys
import time

d = sys.argv[1]
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
r, w = os.pipe()
os.write(w, b"pipedata")
path = os.path.join(d, "data.txt")
with open(path, "wb") as fh:
    fh.write(b"0123456789")
f = os.open(path, os.O_RDONLY)
os.lseek(f, 5, os.SEEK_SET)
x, y = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
s1.send(b"hdr")
socket.send_fds(s1, [b"fds"], [r, f, x.fileno()])
s1.send(b"tail")
os.close(r)
x.close()

d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
m = os.memfd_create("inflight")
os.write(m, b"memfd-content")
socket.send_fds(d1, [b"m1"], [m])
os.close(m)
socket.send_fds(d1, [b""], [f])

if sys.argv[2:] == ["fork"]:
    alive_r, alive_w = os.pipe()
    if os.fork() == 0:
        os.close(alive_w)
        os.read(alive_r, 1)  # EOF once the parent is gone
        os._exit(0)
    os.close(alive_r)

print("READY", flush=True)
go = os.path.join(d, "go")
while not os.path.exists(go):
    time.sleep(0.01)

s2.setblocking(False)
check(s2.recv(3) == b"hdr", "the bytes before the fds")
data, fds, flags, _ = socket.recv_fds(s2, 100, 10)
check(data == b"fds" and len(fds) == 3, "the message with fds: %r, %d fds" % (data, len(fds)))
if len(fds) == 3:
    rr, ff, xx = fds
    check(os.read(rr, 100) == b"pipedata", "the pipe in flight lost its bytes")
    os.write(w, b"more")
    check(os.read(rr, 100) == b"more", "the pipe in flight is not the pipe of w")
    check(os.lseek(ff, 0, os.SEEK_CUR) == 5, "file offset in flight %d" % os.lseek(ff, 0, os.SEEK_CUR))
    os.read(f, 2)
    check(os.lseek(ff, 0, os.SEEK_CUR) == 7, "the file in flight does not share its description with f")
    xs = socket.socket(fileno=xx)
    y.send(b"to-x")
    check(xs.recv(10) == b"to-x", "the socket in flight is not connected to y")
check(s2.recv(100) == b"tail", "the bytes after the fds")
data, fds, _, _ = socket.recv_fds(d2, 100, 10)
check(data == b"m1" and len(fds) == 1, "datagram with a memfd: %r, %d fds" % (data, len(fds)))
if fds:
    os.lseek(fds[0], 0, os.SEEK_SET)
    check(os.read(fds[0], 100) == b"memfd-content", "the memfd in flight lost its content")
data, fds, _, _ = socket.recv_fds(d2, 100, 10)
check(data == b"" and len(fds) == 1, "empty datagram with an fd: %r, %d fds" % (data, len(fds)))
if fds:
    check(os.lseek(fds[0], 0, os.SEEK_CUR) == os.lseek(f, 0, os.SEEK_CUR), "the dgram's fd is not f's description")
d2.setblocking(False)
try:
    d2.recv(10)
    check(False, "more datagrams than were sent")
except BlockingIOError:
    pass
if fails:
    for e in fails:
        print("FAIL: %s" % e, flush=True)
    sys.exit(1)
print("PASS", flush=True)
