"""mapped_changed: WORKDIR/shared.dat mapped MAP_SHARED (a JVM's hsperfdata, a /dev/shm
segment) and WORKDIR/private.dat mapped MAP_PRIVATE with one page written.
args: WORKDIR. After READY the test dumps with --leave-running; then `poke` makes the
original write b"LIVE" into its shared mapping (the file changes after the dump) and
print POKED. After go (the restored copy): the shared mapping shows the file as it is
now (b"LIVE"), writes through it reach the file, the private page still holds what the
process wrote, and the rest of the private mapping is the file's."""
import mmap
import os
import sys
import time

d = sys.argv[1]
P = mmap.PAGESIZE
for name, fill in (("shared.dat", b"S"), ("private.dat", b"P")):
    with open(os.path.join(d, name), "wb") as f:
        f.write(fill * (4 * P))
fs = open(os.path.join(d, "shared.dat"), "r+b")
sh = mmap.mmap(fs.fileno(), 4 * P, mmap.MAP_SHARED)
fp = open(os.path.join(d, "private.dat"), "r+b")
pr = mmap.mmap(fp.fileno(), 4 * P, mmap.MAP_PRIVATE)
pr[0:5] = b"mine!"
fs.close()
fp.close()
print("READY", flush=True)
poke, go = os.path.join(d, "poke"), os.path.join(d, "go")
while not os.path.exists(go):
    if os.path.exists(poke):
        os.unlink(poke)
        sh[0:4] = b"LIVE"
        sh.flush()
        print("POKED", flush=True)
    time.sleep(0.01)
fails = []
if sh[0:4] != b"LIVE":
    fails.append("shared mapping shows %r, the file holds b'LIVE'" % sh[0:4])
sh[4:8] = b"BACK"
sh.flush()
with open(os.path.join(d, "shared.dat"), "rb") as f:
    if f.read(8) != b"LIVEBACK":
        fails.append("a write through the restored shared mapping did not reach the file")
if pr[0:5] != b"mine!" or pr[5:10] != b"PPPPP" or pr[3 * P:3 * P + 4] != b"PPPP":
    fails.append("private mapping %r / %r" % (pr[0:10], pr[3 * P:3 * P + 4]))
for f in fails:
    print("FAIL: %s" % f, flush=True)
print("FAIL: -" if fails else "PASS", flush=True)
sys.exit(1 if fails else 0)
