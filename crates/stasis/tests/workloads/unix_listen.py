"""unix_listen: a unix stream listener (WORKDIR/l.sock, backlog 4) with two connections
of its own process waiting to be accepted (nothing sent yet), and a seqpacket listener
with one. After restore: accept returns them in the order they connected (each client
sends its name, the accepted socket reads it), then nothing else is waiting (a
connection from outside the tree was dropped with --skip-in-flight), and the listener
takes new clients.
args: WORKDIR [early]   (early: a third client `c3` connects and sends "early" before
the dump, never accepted: the dump refuses it unless --skip-in-flight, which drops that
connection — after restore c3 reads EOF and a write fails with EPIPE)"""
import os
import socket
import sys
import time

d = sys.argv[1]
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


path = os.path.join(d, "l.sock")
lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lst.bind(path)
lst.listen(4)
c1 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c1.connect(path)
c2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c2.connect(path)
early = len(sys.argv) > 2 and sys.argv[2] == "early"
if early:
    c3 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c3.connect(path)
    c3.send(b"early")
sq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sq.bind(b"\0stasis-test-sq-%d" % os.getpid())
sq.listen(2)
sc = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sc.connect(b"\0stasis-test-sq-%d" % os.getpid())
print("READY", flush=True)
go = os.path.join(d, "go")
while not os.path.exists(go):
    time.sleep(0.01)

c1.send(b"c1")
c2.send(b"c2")
lst.settimeout(2)
a1, _ = lst.accept()
a2, _ = lst.accept()
check(a1.recv(10) == b"c1", "first accepted connection is not c1's")
check(a2.recv(10) == b"c2", "second accepted connection is not c2's")
lst.setblocking(False)
try:
    extra, _ = lst.accept()
    check(False, "a third connection was waiting: %r" % extra.recv(10, socket.MSG_DONTWAIT))
except BlockingIOError:
    pass
if early:
    c3.settimeout(2)
    check(c3.recv(10) == b"", "c3 (dropped) does not read EOF")
    try:
        c3.send(b"x")
        check(False, "c3 (dropped): a write succeeded")
    except BrokenPipeError:
        pass
a1.send(b"reply")
check(c1.recv(10) == b"reply", "c1 does not get the reply")
sc.send(b"rec")
sq.settimeout(2)
sa, _ = sq.accept()
check(sa.recv(10) == b"rec", "seqpacket connection")
n = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
n.connect(path)
lst.setblocking(True)
a3, _ = lst.accept()
n.send(b"new")
check(a3.recv(10) == b"new", "new client after restore")
if fails:
    for f in fails:
        print("FAIL: %s" % f, flush=True)
    sys.exit(1)
print("PASS", flush=True)
