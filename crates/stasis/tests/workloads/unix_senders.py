"""unix_senders: queued datagrams keep their senders' addresses (what recvfrom reads).
args: WORKDIR

  srv     a datagram socket bound to WORKDIR/srv.sock with datagrams queued from:
          `abs` (an abstract name, made before srv, not connected: sendto), `pcli`
          (bound to WORKDIR/pcli.sock, connected to srv), `pgone` (bound to
          WORKDIR/gone/pgone.sock, closed, its file and directory removed), `auto`
          (autobind), an unnamed socket, and a relative path `rel.sock` (bound in
          WORKDIR, the workload's cwd). `pgone` also sent to `ul` (WORKDIR/ul.sock),
          whose file was then unlinked (bound privately at restore).
  csrv    the same with SO_PASSCRED on (its messages carry credentials, so they are
          sent once every process exists): from `pcli2` (a path) and `abs`.
  pair    an unnamed datagram socketpair with two datagrams queued: the sender reads
          as unnamed.
  ma/mb   datagram sockets connected to each other, ma bound to WORKDIR/ma.sock, mb to
          an abstract name; one datagram queued each way.
  lb/late a datagram socketpair whose end `late` was bound (abstract) after the pair was
          made, then sent: its peer reads that name.
  gc/ga   a stream connection accepted from a listener on WORKDIR/gl.sock whose file
          was then unlinked (the listener closed): bytes queued both ways; both ends
          show the path, and no file comes back at it.
  uc/us   a datagram client connected to a server (WORKDIR/us.sock) whose file was then
          unlinked, a datagram queued: it comes back connected to it.
  uf/ucr  datagram sockets whose files were unlinked, one with a pipe in flight
          (SCM_RIGHTS), one with SO_PASSCRED (credentials), both from `abs`.
  dc, dp  datagram sockets connected to a peer that closed since: `dc` (abstract name)
          to a server on WORKDIR/dcs.sock that sent it a datagram, `dp` one end of a
          pair with two queued: the queue, getpeername (the closed peer's name), then a
          send fails once with ECONNREFUSED and the socket is unconnected.
  wc/wl   a client waiting on a listener (WORKDIR/wl.sock) whose file was then
          unlinked: the listener accepts it after restore.
After restore each datagram is read with recvfrom and compared with the address it
had; no socket file is made at the paths of `pgone` or `gl.sock`, and the sockets that
still own their files (pcli, rel.sock) keep working.
"""
import os
import socket
import struct
import sys

from unix_common import check, client, finish, listener, ready_then_wait_go

d = sys.argv[1]
os.chdir(d)

U = socket.AF_UNIX
DG = socket.SOCK_DGRAM
pid = os.getpid()


def sock(name=None):
    s = socket.socket(U, DG)
    if name is not None:
        s.bind(name)
    return s


abs_name = b"\0stasis-senders-abs-%d" % pid
abs_ = sock(abs_name)  # a lower fd than srv: made first at restore
srv_path = os.path.join(d, "srv.sock")
srv = sock(srv_path)
pcli_path = os.path.join(d, "pcli.sock")
pcli = sock(pcli_path)
pcli.connect(srv_path)
os.mkdir(os.path.join(d, "gone"))
pgone_path = os.path.join(d, "gone", "pgone.sock")
pgone = sock(pgone_path)
auto = sock(b"")
auto_name = auto.getsockname()
unnamed = sock()
rel = sock("rel.sock")

want = []


def sent(s, data, frm, to=srv_path):
    s.sendto(data, to)
    want.append((data, frm))


sent(abs_, b"from-abs", abs_name)
pcli.send(b"from-pcli")
want.append((b"from-pcli", pcli_path))
sent(pgone, b"from-pgone", pgone_path)
sent(auto, b"from-auto", auto_name)
sent(unnamed, b"from-unnamed", None)
sent(rel, b"from-rel", "rel.sock")
ul_path = os.path.join(d, "ul.sock")
ul = sock(ul_path)
pgone.sendto(b"pgone-to-ul", ul_path)
os.unlink(ul_path)
pcli.send(b"pcli-again")
want.append((b"pcli-again", pcli_path))
pgone.close()
os.unlink(pgone_path)
os.rmdir(os.path.join(d, "gone"))
unnamed.close()

csrv_path = os.path.join(d, "csrv.sock")
csrv = sock(csrv_path)
csrv.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
pcli2_path = os.path.join(d, "pcli2.sock")
pcli2 = sock(pcli2_path)
cwant = []
for s, data, frm in ((pcli2, b"c-pcli2", pcli2_path), (abs_, b"c-abs", abs_name)):
    s.sendto(data, csrv_path)
    cwant.append((data, frm))

pa, pb = socket.socketpair(U, DG)
pa.send(b"pair-1")
pa.send(b"pair-2")

ma_path = os.path.join(d, "ma.sock")
mb_name = b"\0stasis-senders-mb-%d" % pid
ma = sock(ma_path)
mb = sock(mb_name)
ma.connect(mb_name)
mb.connect(ma_path)
ma.send(b"to-mb")
mb.send(b"to-ma")

lb, late = socket.socketpair(U, DG)
late_name = b"\0stasis-senders-late-%d" % pid
late.bind(late_name)
late.send(b"from-late")

gl_path = os.path.join(d, "gl.sock")
gl = listener(gl_path, 1)
gc = client(gl_path)
ga, _ = gl.accept()
gl.close()
os.unlink(gl_path)
gc.send(b"gc-to-ga")
ga.send(b"ga-to-gc")

us_path = os.path.join(d, "us.sock")
us = sock(us_path)
uc = client(us_path, DG)
os.unlink(us_path)
uc.send(b"uc-1")
# receivers whose files were unlinked, with a file descriptor in flight and with
# credentials
uf_path = os.path.join(d, "uf.sock")
uf = sock(uf_path)
pr, pw = os.pipe()
os.write(pw, b"through-the-pipe")
abs_.sendmsg([b"with-fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", pr))], 0, uf_path)
os.close(pr)
ucr_path = os.path.join(d, "ucr.sock")
ucr = sock(ucr_path)
ucr.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
abs_.sendto(b"with-creds", ucr_path)
os.unlink(uf_path)
os.unlink(ucr_path)
# datagram sockets connected to a peer that closed since: a client of a server on a
# path (a datagram queued on the client), one end of a pair with two queued on it
dc_srv_path = os.path.join(d, "dcs.sock")
dc_srv = sock(dc_srv_path)
dc_name = b"\0stasis-senders-dc-%d" % pid
dc = sock(dc_name)
dc.connect(dc_srv_path)
dc_srv.sendto(b"before-close", dc_name)
dc_srv.close()
os.unlink(dc_srv_path)
dp, dp_gone = socket.socketpair(U, DG)
dp_gone.send(b"dp-1")
dp_gone.send(b"dp-2")
dp_gone.close()
wl_path = os.path.join(d, "wl.sock")
wl = listener(wl_path, 2)
wc = client(wl_path)
os.unlink(wl_path)


def norm(a):
    # an unnamed sender reads as None or an empty name; paths as str
    if a in (None, "", b""):
        return None
    return a


def drain(s, n):
    s.setblocking(False)
    got = []
    try:
        while True:
            got.append(s.recvfrom(n))
    except BlockingIOError:
        pass
    return got


ready_then_wait_go(d)

got = [(m, norm(a)) for m, a in drain(srv, 1000)]
check(got == want, "srv read %r, want %r" % (got, want))
CRED = struct.calcsize("3i")
csrv.setblocking(False)
cgot = []
try:
    while True:
        data, anc, _, frm = csrv.recvmsg(100, socket.CMSG_SPACE(CRED))
        creds = [struct.unpack("3i", raw[:CRED]) for lv, ty, raw in anc if lv == socket.SOL_SOCKET and ty == socket.SCM_CREDENTIALS]
        check(creds == [(pid, 0, 0)], "csrv %r credentials %r, want %r" % (data, creds, [(pid, 0, 0)]))
        cgot.append((data, norm(frm)))
except BlockingIOError:
    pass
check(cgot == cwant, "csrv read %r, want %r" % (cgot, cwant))
got = [(m, norm(a)) for m, a in drain(pb, 100)]
check(got == [(b"pair-1", None), (b"pair-2", None)], "unnamed pair read %r" % got)
got = [(m, norm(a)) for m, a in drain(mb, 100)]
check(got == [(b"to-mb", ma_path)], "mb read %r" % got)
got = [(m, norm(a)) for m, a in drain(ma, 100)]
check(got == [(b"to-ma", mb_name)], "ma read %r" % got)
check(ma.getsockname() == ma_path and ma.getpeername() == mb_name, "ma name/peer %r %r" % (ma.getsockname(), ma.getpeername()))
check(mb.getsockname() == mb_name and mb.getpeername() == ma_path, "mb name/peer %r %r" % (mb.getsockname(), mb.getpeername()))
got = [(m, norm(a)) for m, a in drain(lb, 100)]
check(got == [(b"from-late", late_name)], "lb read %r" % got)
check(late.getsockname() == late_name and norm(lb.getsockname()) is None, "late pair names %r %r" % (late.getsockname(), lb.getsockname()))

# a receiver whose file was unlinked (bound privately), its sender a path that is gone
ul.settimeout(2)
got = ul.recvfrom(100)
check(got == (b"pgone-to-ul", pgone_path), "ul read %r" % (got,))

# the senders that own their files still work; the gone ones left no file
pcli.send(b"new")
srv.settimeout(2)
check(srv.recvfrom(100) == (b"new", pcli_path), "pcli -> srv after restore")
rel.sendto(b"rel-new", srv_path)
check(srv.recvfrom(100) == (b"rel-new", "rel.sock"), "rel.sock -> srv after restore")
check(not os.path.exists(os.path.join(d, "gone")), "a file or directory appeared at pgone's path")
# lb's queue was read: the pair still works both ways
late.send(b"again")
lb.settimeout(2)
check(lb.recvfrom(100) == (b"again", late_name), "late -> lb after restore")

# the connection whose listener's path was unlinked
gc.settimeout(2)
ga.settimeout(2)
check(ga.recv(100) == b"gc-to-ga" and gc.recv(100) == b"ga-to-gc", "unlinked listener's connection: queued bytes")
check(ga.getsockname() == gl_path and gc.getpeername() == gl_path, "unlinked listener's connection names %r %r" % (ga.getsockname(), gc.getpeername()))
check(not os.path.exists(gl_path), "a file appeared at the unlinked listener's path")
gc.send(b"more")
check(ga.recv(100) == b"more", "gc -> ga after restore")

uf.settimeout(2)
data, anc, _, frm = uf.recvmsg(100, socket.CMSG_SPACE(4))
fds = [struct.unpack("i", raw[:4])[0] for lv, ty, raw in anc if lv == socket.SOL_SOCKET and ty == socket.SCM_RIGHTS]
check((data, frm) == (b"with-fd", abs_name) and len(fds) == 1, "uf read %r from %r with fds %r" % (data, frm, fds))
if len(fds) == 1:
    check(os.read(fds[0], 100) == b"through-the-pipe", "the pipe in flight to uf")
ucr.settimeout(2)
data, anc, _, frm = ucr.recvmsg(100, socket.CMSG_SPACE(CRED))
creds = [struct.unpack("3i", raw[:CRED]) for lv, ty, raw in anc if lv == socket.SOL_SOCKET and ty == socket.SCM_CREDENTIALS]
check((data, frm, creds) == (b"with-creds", abs_name, [(pid, 0, 0)]), "ucr read %r from %r with %r" % (data, frm, creds))
check(uf.getsockname() == uf_path and ucr.getsockname() == ucr_path, "uf/ucr names")

# connected to a peer that closed: the queue, the peer's name, then one ECONNREFUSED
dc.settimeout(2)
got = dc.recvfrom(100)
check(got == (b"before-close", dc_srv_path), "dc read %r" % (got,))
check(dc.getsockname() == dc_name and dc.getpeername() == dc_srv_path, "dc names %r %r" % (dc.getsockname(), dc.getpeername()))
dp.settimeout(2)
got = [dp.recvfrom(100), dp.recvfrom(100)]
check([(m, norm(a)) for m, a in got] == [(b"dp-1", None), (b"dp-2", None)], "dp read %r" % got)
for s_, what in ((dc, "dc"), (dp, "dp")):
    try:
        s_.send(b"x")
        check(False, "%s: a send to a closed peer succeeded" % what)
    except ConnectionRefusedError:
        pass
    try:
        s_.getpeername()
        check(False, "%s: still connected after ECONNREFUSED" % what)
    except OSError:
        pass

# a datagram client of a server whose file was unlinked; a client waiting on a listener
# whose file was unlinked
us.settimeout(2)
check(us.recvfrom(100) == (b"uc-1", None), "us: the queued datagram")
check(uc.getpeername() == us_path and us.getsockname() == us_path, "uc/us names %r %r" % (uc.getpeername(), us.getsockname()))
uc.send(b"uc-2")
check(us.recv(100) == b"uc-2", "uc -> us after restore")
wl.settimeout(2)
wa, _ = wl.accept()
wc.send(b"wc")
check(wa.recv(100) == b"wc", "the connection waiting on the unlinked listener")
check(wc.getpeername() == wl_path and wl.getsockname() == wl_path, "wc/wl names %r %r" % (wc.getpeername(), wl.getsockname()))
check(not os.path.exists(us_path) and not os.path.exists(wl_path), "a file appeared at an unlinked socket's path")

finish()
