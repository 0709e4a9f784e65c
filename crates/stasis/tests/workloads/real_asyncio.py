"""real_asyncio: a CPython asyncio program (event loop = epoll + a unix socketpair as
its self-pipe). A producer task puts numbers on a queue every 5 ms and signals the
loop from a thread with call_soon_threadsafe (which writes to the self-pipe); a
consumer appends them to WORKDIR/progress.txt. After WORKDIR/go exists it runs 100
more items and checks the sequence had no gap and no repeat, and that the loop's
self-pipe still works across the checkpoint.
"""
import asyncio
import os
import sys
import threading

d = sys.argv[1]
go = os.path.join(d, "go")
progress = open(os.path.join(d, "progress.txt"), "w", buffering=1)


async def main():
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    seen = []

    def from_thread():
        # wakes the loop through its self-pipe (the socketpair)
        n = 0
        while True:
            ev = threading.Event()
            loop.call_soon_threadsafe(q.put_nowait, ("t", n))
            loop.call_soon_threadsafe(ev.set)
            ev.wait()
            n += 1
            threading.Event().wait(0.005)

    threading.Thread(target=from_thread, daemon=True).start()
    print("READY", flush=True)
    after_go = None
    last_t = -1
    while True:
        kind, v = await q.get()
        progress.write("%d %s\n" % (len(seen) + 1, v))
        seen.append(v)
        if v != last_t + 1:
            print("FAIL: thread item %d after %d" % (v, last_t), flush=True)
            return 1
        last_t = v
        if after_go is None and os.path.exists(go):
            after_go = len(seen)
        if after_go is not None and len(seen) >= after_go + 100:
            break
    print("PASS", flush=True)
    return 0


sys.exit(asyncio.run(main()))
