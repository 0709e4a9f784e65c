"""real_threads: CPython with 4 threading.Thread workers (GIL hand-offs
mean the threads sit in futex waits at any moment).

Each worker w keeps its own SHA-256 chain and counter and appends
"w i digest" lines to WORKDIR/progress.txt under a lock.  After
WORKDIR/go appears each worker does 100 more iterations.  Then main joins
them and checks: every chain re-derives from scratch, every worker's native
thread id (gettid) is what it was at the start, the progress file holds
every worker's lines 1..n in order with the right digests, and
/proc/self/task has exactly the main thread again.
"""
import hashlib
import os
import sys
import threading
import time

d = sys.argv[1]
go = os.path.join(d, "go")
progress_path = os.path.join(d, "progress.txt")
progress = open(progress_path, "w", buffering=1)
lock = threading.Lock()
NW = 4
results = {}
started = threading.Barrier(NW + 1)


def worker(w):
    tid = threading.get_native_id()
    started.wait()
    h = hashlib.sha256()
    chain = []
    i = 0
    after_go = None
    while True:
        i += 1
        h.update(b"%d:%d;" % (w, i))
        chain.append(h.hexdigest()[:16])
        with lock:
            progress.write("%d %d %s\n" % (w, i, chain[-1]))
        if after_go is None and os.path.exists(go):
            after_go = i
        if after_go is not None and i >= after_go + 100:
            break
        time.sleep(0.003)
    results[w] = (tid, threading.get_native_id(), chain)


threads = [threading.Thread(target=worker, args=(w,), name="worker-%d" % w) for w in range(NW)]
for t in threads:
    t.start()
started.wait()
print("INFO pid=%d" % os.getpid(), flush=True)
print("INFO threads=%d" % len(os.listdir("/proc/self/task")), flush=True)
print("READY", flush=True)
for t in threads:
    t.join()
progress.close()

fails = []
for w in range(NW):
    tid0, tid1, chain = results[w]
    if tid0 != tid1:
        fails.append("worker %d: native thread id %d -> %d" % (w, tid0, tid1))
    h = hashlib.sha256()
    for k, dg in enumerate(chain, 1):
        h.update(b"%d:%d;" % (w, k))
        if h.hexdigest()[:16] != dg:
            fails.append("worker %d: chain differs at %d" % (w, k))
            break
seen = {w: 0 for w in range(NW)}
with open(progress_path) as f:
    for line in f:
        w, k, dg = line.split()
        w, k = int(w), int(k)
        if k != seen[w] + 1 or results[w][2][k - 1] != dg:
            fails.append("progress.txt: worker %d line %d out of order or wrong (%r)" % (w, k, line))
            break
        seen[w] = k
for w in range(NW):
    if seen[w] != len(results[w][2]):
        fails.append("progress.txt: worker %d has %d lines, want %d" % (w, seen[w], len(results[w][2])))
# a joined thread's task may linger for a moment while it exits
for _ in range(200):
    ntask = len(os.listdir("/proc/self/task"))
    if ntask == 1:
        break
    time.sleep(0.01)
if ntask != 1:
    fails.append("%d tasks after join" % ntask)
print("INFO iterations=%s" % ",".join(str(len(results[w][2])) for w in range(NW)), flush=True)
for f in fails:
    print("FAIL: " + f, flush=True)
if not fails:
    print("PASS", flush=True)
sys.exit(1 if fails else 0)
