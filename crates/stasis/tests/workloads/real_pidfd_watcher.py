"""real_pidfd_watcher: CPython's asyncio waiting for a child process through a pidfd
(asyncio.PidfdChildWatcher: os.pidfd_open + loop.add_reader, i.e. the pidfd is an
item of the loop's epoll). The child is `sleep 1000`. After WORKDIR/go exists the
program sends SIGTERM through the pidfd (signal.pidfd_send_signal) and awaits the
child: the loop must learn of the exit through the pidfd (returncode -15).
"""
import asyncio
import os
import signal
import sys
import warnings

d = sys.argv[1]
go = os.path.join(d, "go")
warnings.simplefilter("ignore", DeprecationWarning)


async def main():
    proc = await asyncio.create_subprocess_exec("sleep", "1000")
    pidfd = os.pidfd_open(proc.pid)
    print("INFO kid=%d" % proc.pid, flush=True)
    print("READY", flush=True)
    while not os.path.exists(go):
        await asyncio.sleep(0.01)
    signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    try:
        rc = await asyncio.wait_for(proc.wait(), 10)
    except asyncio.TimeoutError:
        print("FAIL: the loop did not see the child exit through its pidfd", flush=True)
        sys.exit(1)
    if rc != -signal.SIGTERM:
        print("FAIL: returncode %r, want -15" % rc, flush=True)
        sys.exit(1)
    print("PASS", flush=True)


if hasattr(asyncio, "set_child_watcher") and hasattr(asyncio, "PidfdChildWatcher"):
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
# (3.14 has no watchers to choose: its loop waits for children through pidfds itself)
asyncio.run(main())
