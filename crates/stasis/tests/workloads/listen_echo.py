"""listen_echo: a TCP listener on 127.0.0.1 (INFO port=), no client yet. After go:
accepts one connection, echoes the line it reads, and checks that the connection came
in on the port it listened on. Used to see that a client connecting while the server
is away (between a killing dump and its restore) is held back, not refused."""
import os
import socket
import sys
import time

d = sys.argv[1]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4)
port = ls.getsockname()[1]
print("INFO port=%d" % port, flush=True)
print("READY", flush=True)
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)
ls.settimeout(20)
c, _ = ls.accept()
c.settimeout(20)
line = b""
while not line.endswith(b"\n"):
    b = c.recv(100)
    if not b:
        break
    line += b
c.sendall(line)
ok = line == b"hello\n" and c.getsockname()[1] == port
print("PASS" if ok else "FAIL: got %r on port %d" % (line, c.getsockname()[1]), flush=True)
sys.exit(0 if ok else 1)
