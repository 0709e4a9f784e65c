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

from unix_common import check, client, closed_by_peer, finish, listener, ready_then_wait_go

d = sys.argv[1]

path = os.path.join(d, "l.sock")
lst = listener(path, 4)
c1 = client(path)
c2 = client(path)
early = len(sys.argv) > 2 and sys.argv[2] == "early"
if early:
    c3 = client(path)
    c3.send(b"early")
sq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sq.bind(b"\0stasis-test-sq-%d" % os.getpid())
sq.listen(2)
sc = client(b"\0stasis-test-sq-%d" % os.getpid(), socket.SOCK_SEQPACKET)
ready_then_wait_go(d)

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
    closed_by_peer(c3, "c3 (dropped)")
a1.send(b"reply")
check(c1.recv(10) == b"reply", "c1 does not get the reply")
sc.send(b"rec")
sq.settimeout(2)
sa, _ = sq.accept()
check(sa.recv(10) == b"rec", "seqpacket connection")
n = client(path)
lst.setblocking(True)
a3, _ = lst.accept()
n.send(b"new")
check(a3.recv(10) == b"new", "new client after restore")
finish()
