"""real_signals: CPython with signal handlers (CPython installs every handler with
SA_ONSTACK; a restored main thread that kept the restorer's alternate stack dies of
SIGSEGV at the first signal).

Handlers for SIGUSR1, SIGUSR2 and SIGALRM (an ITIMER_REAL of 50 ms interval keeps
firing across the checkpoint). Prints READY, loops until WORKDIR/go, then sends itself
SIGUSR1 x3 and SIGUSR2 x2 (os.kill and signal.raise_signal), lets SIGALRM fire at least
5 more times, and checks every count and that the handlers saw the right signal numbers.
"""
import os
import signal
import sys
import time

d = sys.argv[1]
go = os.path.join(d, "go")
seen = {signal.SIGUSR1: 0, signal.SIGUSR2: 0, signal.SIGALRM: 0}
wrong = []


def handler(signum, frame):
    if signum not in seen:
        wrong.append(signum)
    else:
        seen[signum] += 1


for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
    signal.signal(s, handler)
signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
# one of each before the dump: the handlers work here
os.kill(os.getpid(), signal.SIGUSR1)
signal.raise_signal(signal.SIGUSR2)
while seen[signal.SIGALRM] < 2:
    time.sleep(0.01)
print("INFO pid=%d" % os.getpid(), flush=True)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
base = dict(seen)
for _ in range(3):
    os.kill(os.getpid(), signal.SIGUSR1)
for _ in range(2):
    signal.raise_signal(signal.SIGUSR2)
t0 = time.monotonic()
while seen[signal.SIGALRM] < base[signal.SIGALRM] + 5 and time.monotonic() - t0 < 10:
    time.sleep(0.01)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
fails = []
if seen[signal.SIGUSR1] - base[signal.SIGUSR1] != 3:
    fails.append("SIGUSR1 handled %d times after go, want 3" % (seen[signal.SIGUSR1] - base[signal.SIGUSR1]))
if seen[signal.SIGUSR2] - base[signal.SIGUSR2] != 2:
    fails.append("SIGUSR2 handled %d times after go, want 2" % (seen[signal.SIGUSR2] - base[signal.SIGUSR2]))
if seen[signal.SIGALRM] < base[signal.SIGALRM] + 5:
    fails.append("SIGALRM handled only %d times after go" % (seen[signal.SIGALRM] - base[signal.SIGALRM]))
if wrong:
    fails.append("handler called with %r" % wrong)
for f in fails:
    print("FAIL: " + f, flush=True)
if not fails:
    print("PASS", flush=True)
sys.exit(1 if fails else 0)
