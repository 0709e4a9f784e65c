"""dgram_queue: a unix datagram socket pair with datagrams queued on one end.
args: WORKDIR zero|bytes  (zero: two empty datagrams; bytes: three of 6 bytes)
After go, every datagram is still there, in order (an empty datagram used to go
unnoticed: the socket table gives the first datagram's length only)."""
import os
import socket
import sys

d, mode = sys.argv[1], sys.argv[2]
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
want = [b""] * 2 if mode == "zero" else [b"abcdef"] * 3
for m in want:
    a.send(m)
print("INFO fd=%d" % b.fileno(), flush=True)
print("READY", flush=True)
go = os.path.join(d, "go")
while not os.path.exists(go):
    import time
    time.sleep(0.01)
b.setblocking(False)
got = []
try:
    while True:
        got.append(b.recv(100))
except BlockingIOError:
    pass
if got == want:
    print("PASS", flush=True)
else:
    print("FAIL: queued %r, want %r" % (got, want), flush=True)
    sys.exit(1)
