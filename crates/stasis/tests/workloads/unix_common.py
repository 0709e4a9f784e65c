"""Helpers shared by the unix socket workloads (unix_states, unix_listen, unix_senders):
checks collected and reported at the end, stream listeners and their clients, and the
check of a connection whose peer closed."""
import os
import socket
import sys
import time

fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


def listener(name, backlog):
    """A unix stream socket bound to NAME, listening."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.listen(backlog)
    return s


def client(name, ty=socket.SOCK_STREAM):
    """A unix socket of type TY connected to NAME."""
    s = socket.socket(socket.AF_UNIX, ty)
    s.connect(name)
    return s


def closed_by_peer(s, what):
    """S reads EOF and a write fails with EPIPE: its peer closed."""
    check(s.recv(100) == b"", "%s: no EOF" % what)
    try:
        s.send(b"x")
        check(False, "%s: a write to a closed peer succeeded" % what)
    except BrokenPipeError:
        pass


def ready_then_wait_go(d):
    print("READY", flush=True)
    go = os.path.join(d, "go")
    while not os.path.exists(go):
        time.sleep(0.01)


def finish():
    if fails:
        for f in fails:
            print("FAIL: %s" % f, flush=True)
        sys.exit(1)
    print("PASS", flush=True)
