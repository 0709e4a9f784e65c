"""unix_states: unix sockets in the states programs leave them, checked after restore.
args: WORKDIR [LOGSOCK]   (LOGSOCK: a datagram socket of the test, outside the tree)

  idle_*     unbound, unconnected stream / datagram / seqpacket sockets (a JVM keeps
             one): same type, no name, usable after restore (bind + connect).
  srv        a datagram socket bound to WORKDIR/srv.sock with four datagrams queued:
             three from `cli` (bound to an abstract name; one empty), one from an
             unnamed socket, each with its sender; `cli` is connected to `srv` (one way).
  gone       a stream socket whose peer sent "last words" and closed: the bytes, then EOF,
             then EPIPE on write.
  acc/con    a stream connection accepted from a listener on an abstract name, bytes
             queued both ways; the listener keeps listening; names on both ends kept.
  pacc/pcon  the same with a listener on a path (WORKDIR/plisten.sock).
  unl        a datagram socket bound to WORKDIR/unl.sock with a datagram queued, whose
             file was then unlinked: the name and the datagram come back, no file
             appears at the path.
  rep        bound to WORKDIR/rep.sock, unlinked, and a regular file made at that path:
             the name comes back, the file is untouched.
  sp         a seqpacket pair with two records queued each way (boundaries kept).
  opt        options: SO_PASSCRED on a stream pair end with bytes queued (it used to be
             refused), SO_PEEK_OFF 3 on another, SO_RCVBUF / SO_SNDBUF set.
  log        (with LOGSOCK) a datagram socket connected to the test's socket: "before"
             was sent before the dump, "after" is sent after restore.
"""
import os
import socket
import sys

from unix_common import check, client, closed_by_peer, finish, listener, ready_then_wait_go

d = sys.argv[1]
logsock = sys.argv[2] if len(sys.argv) > 2 else None

U = socket.AF_UNIX
SO_PEEK_OFF = 42  # Linux; python's socket module does not name it
idle = {t: socket.socket(U, t) for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET)}

srv_path = os.path.join(d, "srv.sock")
srv = socket.socket(U, socket.SOCK_DGRAM)
srv.bind(srv_path)
cli_name = b"\0stasis-test-cli-%d" % os.getpid()
cli = socket.socket(U, socket.SOCK_DGRAM)
cli.bind(cli_name)
cli.connect(srv_path)
anon = socket.socket(U, socket.SOCK_DGRAM)
cli.send(b"one")
anon.sendto(b"from-anon", srv_path)
cli.send(b"")
cli.send(b"three" * 1000)
anon.close()
want_srv = [b"one", b"from-anon", b"", b"three" * 1000]

gone, gone_peer = socket.socketpair(U, socket.SOCK_STREAM)
gone_peer.send(b"last words")
gone_peer.close()

lname = b"\0stasis-test-listen-%d" % os.getpid()
lst = listener(lname, 5)
con = client(lname)
acc, _ = lst.accept()
con.send(b"to-server")
acc.send(b"to-client")

ppath = os.path.join(d, "plisten.sock")
plst = listener(ppath, 2)
pcon = client(ppath)
pacc, _ = plst.accept()
pacc.send(b"p-to-client")

unl_path = os.path.join(d, "unl.sock")
unl = socket.socket(U, socket.SOCK_DGRAM)
unl.bind(unl_path)
snd = socket.socket(U, socket.SOCK_DGRAM)
snd.sendto(b"to-unl", unl_path)
snd.close()
os.unlink(unl_path)
rep_path = os.path.join(d, "rep.sock")
rep = socket.socket(U, socket.SOCK_DGRAM)
rep.bind(rep_path)
os.unlink(rep_path)
with open(rep_path, "w") as f:
    f.write("not a socket")

sp_a, sp_b = socket.socketpair(U, socket.SOCK_SEQPACKET)
sp_a.send(b"r1")
sp_a.send(b"record-2")
sp_b.send(b"back-1")
sp_b.send(b"")

opt_a, opt_b = socket.socketpair(U, socket.SOCK_STREAM)
opt_a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
opt_b.send(b"with-passcred")
peek_a, peek_b = socket.socketpair(U, socket.SOCK_STREAM)
peek_b.send(b"0123456789")
peek_a.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 3)
peek_a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 50000)
peek_a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 70000)
bufs = (peek_a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), peek_a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))

log = None
if logsock:
    log = socket.socket(U, socket.SOCK_DGRAM)
    log.connect(logsock)
    log.send(b"before")

ready_then_wait_go(d)

# idle sockets: same type, unnamed, and they work
for t, s in idle.items():
    check(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == t, "idle socket type %d changed" % t)
    check(s.getsockname() in ("", b""), "idle socket %d got a name %r" % (t, s.getsockname()))
s = idle[socket.SOCK_STREAM]
n = b"\0stasis-test-idle-%d" % os.getpid()
s.bind(n)
s.listen(1)
c = socket.socket(U, socket.SOCK_STREAM)
c.connect(n)
a2, _ = s.accept()
c.send(b"hi")
check(a2.recv(10) == b"hi", "the idle stream socket does not work as a listener")

# srv queue: every datagram, in order, with the sender we can check
srv.setblocking(False)
got = []
try:
    while True:
        got.append(srv.recvfrom(10000))
except BlockingIOError:
    pass
check([g[0] for g in got] == want_srv, "srv queue %r, want %r" % ([g[0][:12] for g in got], [w[:12] for w in want_srv]))
senders = [g[1] for g in got]
check(len(senders) == 4 and senders[0] == cli_name and senders[2] == cli_name and senders[3] == cli_name and not senders[1],
      "senders of the queued datagrams %r (cli is %r, the second was unnamed)" % (senders, cli_name))
check(srv.getsockname() == srv_path, "srv name %r" % srv.getsockname())
check(cli.getsockname() == cli_name, "cli name %r" % cli.getsockname())
check(cli.getpeername() == srv_path, "cli peer %r" % cli.getpeername())
cli.send(b"new")
srv.setblocking(True)
srv.settimeout(2)
m, frm = srv.recvfrom(100)
check(m == b"new" and frm == cli_name, "srv got %r from %r after restore" % (m, frm))

# gone: the queued bytes, EOF, EPIPE
check(gone.recv(100) == b"last words", "gone: queued bytes lost")
closed_by_peer(gone, "gone")

# accepted connection
check(acc.recv(100) == b"to-server", "acc: queued bytes")
check(con.recv(100) == b"to-client", "con: queued bytes")
acc.send(b"again")
check(con.recv(100) == b"again", "acc -> con after restore")
check(lst.getsockname() == lname, "listener name %r" % lst.getsockname())
c2 = socket.socket(U, socket.SOCK_STREAM)
c2.connect(lname)
a3, _ = lst.accept()
c2.send(b"new-client")
check(a3.recv(100) == b"new-client", "the listener does not accept after restore")

check(acc.getsockname() == lname, "accepted socket name %r, want %r" % (acc.getsockname(), lname))
check(con.getpeername() == lname, "client's peer name %r, want %r" % (con.getpeername(), lname))
check(pcon.recv(100) == b"p-to-client", "pcon: queued bytes")
check(pacc.getsockname() == ppath and pcon.getpeername() == ppath, "path-accepted names %r / %r" % (pacc.getsockname(), pcon.getpeername()))
pcon.send(b"p-back")
check(pacc.recv(100) == b"p-back", "pcon -> pacc after restore")
check(unl.getsockname() == unl_path, "unlinked socket name %r" % unl.getsockname())
check(not os.path.exists(unl_path), "a file appeared at the unlinked socket's path")
unl.settimeout(2)
check(unl.recv(100) == b"to-unl", "the datagram queued on the unlinked socket")
check(rep.getsockname() == rep_path, "replaced socket name %r" % rep.getsockname())
check(open(rep_path).read() == "not a socket", "the file that replaced the socket's path changed")

# seqpacket records
check(sp_b.recv(100) == b"r1" and sp_b.recv(100) == b"record-2", "seqpacket a->b records")
check(sp_a.recv(100) == b"back-1" and sp_a.recv(100) == b"", "seqpacket b->a records")

# options
check(opt_a.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1, "SO_PASSCRED lost")
check(opt_a.recv(100) == b"with-passcred", "bytes queued on a SO_PASSCRED socket")
check(peek_a.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF) == 3, "SO_PEEK_OFF %d" % peek_a.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF))
check(peek_a.recv(4, socket.MSG_PEEK) == b"3456", "peek at offset 3")
now = (peek_a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), peek_a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
check(now == bufs, "buffers %r, were %r" % (now, bufs))
check(opt_b.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 0, "SO_PASSCRED appeared on the other end")

if log:
    check(log.getpeername() == logsock, "log peer %r" % log.getpeername())
    log.send(b"after")

finish()
