"""Client of tcp_stream.py, outside the dumped tree: streams the pattern to PORT and
checks what it receives. Prints PROGRESS sent= recv= every 0.2 s. When the server's
stream ends (EOF), stops sending, shuts its side down and prints DONE sent=N recv=M.
Any error (reset, mismatch) prints ERR and exits 1.

args: PORT
"""
import select
import socket
import sys
import time

BASE = bytes(i % 251 for i in range(251 * 300))  # > 65536 + 251: any recv size


def pattern(off, n):
    s = off % 251
    return BASE[s:s + n]


s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setblocking(False)
sent = recv = 0
last = shown = 0.0
try:
    while True:
        rl, wl, _ = select.select([s], [s], [], 0.005)
        if rl:
            try:
                b = s.recv(65536)
            except BlockingIOError:
                b = None
            if b == b"":
                break
            if b:
                if b != pattern(recv, len(b)):
                    print("ERR byte mismatch in the %d bytes at offset %d" % (len(b), recv), flush=True)
                    sys.exit(1)
                recv += len(b)
        if wl and time.time() - last >= 0.005:
            try:
                sent += s.send(pattern(sent, 1024))
            except BlockingIOError:
                pass
            last = time.time()
        if time.time() - shown >= 0.2:
            print("PROGRESS sent=%d recv=%d" % (sent, recv), flush=True)
            shown = time.time()
    s.shutdown(socket.SHUT_WR)
    print("DONE sent=%d recv=%d" % (sent, recv), flush=True)
except OSError as e:
    print("ERR %r (sent=%d recv=%d)" % (e, sent, recv), flush=True)
    sys.exit(1)
