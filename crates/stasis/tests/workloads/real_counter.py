"""real_counter: a stateful CPython loop (a program nobody here wrote: the
Debian python3 interpreter).

Each iteration i extends a SHA-256 chain, keeps the digest in a dict and
appends "i digest" to WORKDIR/progress.txt (kept open, line buffered).  It
prints READY once at the start, then loops until WORKDIR/go exists, runs
200 more iterations, then re-derives the whole chain from scratch and
checks the dict and the progress file against it: a restore that lost or
rewound state, or restarted the program, cannot pass (the harness also
checks the numbering continued across the checkpoint).
"""
import hashlib
import os
import sys
import time

d = sys.argv[1]
go = os.path.join(d, "go")
progress_path = os.path.join(d, "progress.txt")
progress = open(progress_path, "w", buffering=1)
pid = os.getpid()
state = {}
h = hashlib.sha256()
i = 0
after_go = None
print("INFO pid=%d" % pid, flush=True)
print("READY", flush=True)
while True:
    i += 1
    h.update(b"%d;" % i)
    state[i] = h.hexdigest()[:16]
    progress.write("%d %s\n" % (i, state[i]))
    if after_go is None and os.path.exists(go):
        after_go = i
    if after_go is not None and i >= after_go + 200:
        break
    time.sleep(0.002)
progress.close()

fails = []
h2 = hashlib.sha256()
for k in range(1, i + 1):
    h2.update(b"%d;" % k)
    if state.get(k) != h2.hexdigest()[:16]:
        fails.append("state differs at iteration %d" % k)
        break
with open(progress_path) as f:
    lines = f.read().splitlines()
if len(lines) != i:
    fails.append("progress.txt has %d lines, want %d" % (len(lines), i))
for k, line in enumerate(lines, 1):
    if line != "%d %s" % (k, state.get(k)):
        fails.append("progress.txt line %d is %r" % (k, line))
        break
if os.getpid() != pid:
    fails.append("pid changed: %d -> %d" % (pid, os.getpid()))
print("INFO iterations=%d after_go=%d" % (i, after_go), flush=True)
for f in fails:
    print("FAIL: " + f, flush=True)
if not fails:
    print("PASS", flush=True)
sys.exit(1 if fails else 0)
