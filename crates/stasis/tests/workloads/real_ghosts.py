"""real_ghosts: deleted files held by programs nobody here wrote: CPython's
tempfile.TemporaryFile (O_TMPFILE: a nameless file from the start) and
SQLite's temporary database (PRAGMA temp_store=FILE with a tiny cache: SQLite
creates its temp file in SQLITE_TMPDIR and unlinks it at once), while the main
database has a write transaction open (its rollback journal on disk).

Before READY it prints INFO ghosts=N (fds whose /proc link says "(deleted)").
After WORKDIR/go it checks everything: the temporary file's content, its
offset and its hole (SEEK_HOLE/SEEK_DATA), the temp table's rows (read back
from the deleted file, the cache holds only 10 pages), then commits the open
transaction and reads it back.
"""
import os
import sys
import time

d = sys.argv[1]
os.environ["SQLITE_TMPDIR"] = d
import sqlite3  # noqa: E402
import tempfile  # noqa: E402

fails = []


def check(ok, what):
    if not ok:
        fails.append(what)
        print("FAIL: " + what, flush=True)


blob = bytes((i * 7 + 3) % 251 for i in range(100000))
t = tempfile.TemporaryFile(dir=d)
t.write(blob)
t.seek(8 << 20)
t.write(b"tail of the sparse temporary file")
t.flush()
t.seek(12345)

con = sqlite3.connect(os.path.join(d, "main.db"), isolation_level=None)
con.execute("PRAGMA temp_store=FILE")
con.execute("PRAGMA cache_size=10")
con.execute("CREATE TEMP TABLE warm(x)")
con.execute("PRAGMA temp.cache_size=10")
con.execute("CREATE TABLE main_t(k INTEGER PRIMARY KEY, v TEXT)")
con.execute("CREATE TEMP TABLE tmp_t(k INTEGER PRIMARY KEY, v TEXT)")
con.execute("BEGIN")
con.executemany("INSERT INTO tmp_t VALUES(?, ?)", ((i, "v%06d" % i * 4) for i in range(20000)))
con.executemany("INSERT INTO main_t VALUES(?, ?)", ((i, "m%d" % i) for i in range(500)))

ghosts = 0
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink("/proc/self/fd/" + fd).endswith(" (deleted)"):
            ghosts += 1
    except OSError:
        pass
print("INFO ghosts=%d" % ghosts, flush=True)
print("READY", flush=True)
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)

fd = t.fileno()
check(t.tell() == 12345, "temporary file offset %d, want 12345" % t.tell())
t.seek(0)
check(t.read(len(blob)) == blob, "temporary file content differs")
check(os.fstat(fd).st_size == (8 << 20) + 33, "temporary file size %d" % os.fstat(fd).st_size)
check(os.fstat(fd).st_nlink == 0, "temporary file has a name")
hole = os.lseek(fd, 0, os.SEEK_HOLE)
check(hole == 102400 or hole == 100000, "first hole of the temporary file at %d" % hole)
data = os.lseek(fd, hole, os.SEEK_DATA)
check(data == 8 << 20, "data after the hole at %d, want %d" % (data, 8 << 20))
t.seek(8 << 20)
check(t.read() == b"tail of the sparse temporary file", "temporary file tail differs")
n, total = con.execute("SELECT count(*), sum(length(v)) FROM tmp_t").fetchone()
check(n == 20000 and total == 20000 * 28, "temp table has %s rows, %s bytes" % (n, total))
check(con.execute("SELECT v FROM tmp_t WHERE k = 12345").fetchone()[0] == "v012345" * 4, "temp table row 12345")
con.execute("COMMIT")
check(con.execute("SELECT count(*) FROM main_t").fetchone()[0] == 500, "main table after commit")
con.close()
con = sqlite3.connect(os.path.join(d, "main.db"))
check(con.execute("SELECT sum(k) FROM main_t").fetchone()[0] == sum(range(500)), "main database read again")
print("FAIL: %d checks" % len(fails) if fails else "PASS", flush=True)
sys.exit(1 if fails else 0)
