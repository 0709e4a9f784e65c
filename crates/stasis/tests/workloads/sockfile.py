"""sockfile: listening unix sockets whose socket files belong to another user.
args: WORKDIR
  own   WORKDIR/own (a directory of uid 1000) holds s.sock, bound by this root process,
        then given to 1000:1000 with mode 0660 (a server's socket for its group)
  root  WORKDIR/rootdir (root's, 0755) holds r.sock, given to 1000:1000 with mode 0604
        (uid 1000 could not create it there)
After go (a restore removed the files the dump left behind and bound them again): both
files have the owner and mode they had, and a client running as uid 1000 connects to
each and is accepted."""
import os
import socket
import sys
import time

d = sys.argv[1]
for p in (os.path.dirname(d), d):
    os.chmod(p, 0o711)  # uid 1000 passes through to the sockets
own = os.path.join(d, "own")
rootdir = os.path.join(d, "rootdir")
os.mkdir(own)
os.chown(own, 1000, 1000)
os.mkdir(rootdir, 0o755)
socks = []
for path, mode in ((os.path.join(own, "s.sock"), 0o660), (os.path.join(rootdir, "r.sock"), 0o604)):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    os.chown(path, 1000, 1000)
    os.chmod(path, mode)
    socks.append((s, path, mode))
print("READY", flush=True)
go = os.path.join(d, "go")
while not os.path.exists(go):
    time.sleep(0.01)
fails = []
for s, path, mode in socks:
    st = os.lstat(path)
    if (st.st_uid, st.st_gid, st.st_mode & 0o777) != (1000, 1000, mode):
        fails.append("%s: owner %d:%d mode %o, want 1000:1000 %o" % (path, st.st_uid, st.st_gid, st.st_mode & 0o777, mode))
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(1000)
            os.setuid(1000)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path)
            c.sendall(b"hi")
            os._exit(0)
        except Exception as e:
            print("FAIL: uid 1000 connecting to %s: %s" % (path, e), flush=True)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        fails.append("%s: the uid 1000 client failed" % path)
        continue
    s.settimeout(5)
    a, _ = s.accept()
    if a.recv(2) != b"hi":
        fails.append("%s: accepted connection did not read 'hi'" % path)
if fails:
    for f in fails:
        print("FAIL: " + f, flush=True)
    sys.exit(1)
print("PASS", flush=True)
