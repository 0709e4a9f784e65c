/*
 * fifo: named FIFOs (mkfifo) shared by a process tree.
 *   WORKDIR/fifo: child A holds a read description (O_RDONLY); the parent and child B
 *     each hold their own write description (the parent also a dup of it).  Both write
 *     16-byte records (writer, sequence number); A reads some before READY, so at dump
 *     time the FIFO holds records of both writers.  After `go` each writer adds the
 *     rest and closes; A reads to EOF and checks that every record of each writer came
 *     exactly once and in order.
 *   WORKDIR/fifo2: the parent alone holds it O_RDWR|O_NONBLOCK with 100 bytes in it;
 *     after restore it reads them back, then gets EAGAIN.
 */
#include "common.h"
#include <sys/wait.h>

#define PRE_P 300
#define PRE_B 200
#define ALL_P 600
#define ALL_B 400
#define PRE_READ 60

struct rec {
    uint64_t writer, seq;
};

static void put(int fd, uint64_t who, uint64_t from, uint64_t to)
{
    for (uint64_t s = from; s < to; s++) {
        struct rec r = { who, s };
        CHECK(write(fd, &r, sizeof r) == sizeof r, "writer %llu: record %llu: %s", (unsigned long long)who,
              (unsigned long long)s, strerror(errno));
    }
}

static uint64_t next_seq[3];
static int take(int fd, int n)
{
    int got = 0;
    while (n < 0 || got < n) {
        struct rec r;
        ssize_t k = read(fd, &r, sizeof r);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0)
            break;
        if (k != sizeof r) {
            CHECK(0, "reader: short or failed read (%zd): %s", k, strerror(errno));
            break;
        }
        if (r.writer != 1 && r.writer != 2) {
            CHECK(0, "reader: record from unknown writer %llu", (unsigned long long)r.writer);
            break;
        }
        CHECK(r.seq == next_seq[r.writer], "reader: writer %llu sent %llu, want %llu", (unsigned long long)r.writer,
              (unsigned long long)r.seq, (unsigned long long)next_seq[r.writer]);
        next_seq[r.writer] = r.seq + 1;
        got++;
    }
    return got;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *path = wl_path("fifo"), *path2 = wl_path("fifo2");
    if (mkfifo(path, 0600) || mkfifo(path2, 0600))
        DIE("mkfifo");
    int sync[2];
    if (pipe(sync))
        DIE("pipe");
    pid_t a = fork();
    if (a == 0) {
        close(sync[0]);
        int r = open(path, O_RDONLY); /* waits for the parent's writer */
        if (r < 0)
            DIE("A: open fifo");
        CHECK(take(r, PRE_READ) == PRE_READ, "A: early records");
        CHECK(write(sync[1], "a", 1) == 1, "A: sync");
        close(sync[1]);
        wait_go();
        struct stat sb;
        CHECK(fstat(r, &sb) == 0 && S_ISFIFO(sb.st_mode), "A: fd is no longer a FIFO");
        struct stat pb;
        CHECK(stat(path, &pb) == 0 && pb.st_ino == sb.st_ino && pb.st_dev == sb.st_dev, "A: fd is not the FIFO at %s", path);
        CHECK((fcntl(r, F_GETFL) & O_ACCMODE) == O_RDONLY, "A: access mode changed");
        take(r, -1);
        CHECK(next_seq[1] == ALL_P && next_seq[2] == ALL_B, "A: got %llu records of the parent, %llu of B",
              (unsigned long long)next_seq[1], (unsigned long long)next_seq[2]);
        _exit(g_failed ? 1 : 0);
    }
    int w = open(path, O_WRONLY); /* waits for A */
    if (w < 0)
        DIE("open fifo for writing");
    int wdup = dup(w);
    pid_t b = fork();
    if (b == 0) {
        close(sync[0]);
        close(w);
        close(wdup);
        int bw = open(path, O_WRONLY);
        if (bw < 0)
            DIE("B: open fifo");
        put(bw, 2, 0, PRE_B);
        CHECK(write(sync[1], "b", 1) == 1, "B: sync");
        close(sync[1]);
        wait_go();
        CHECK((fcntl(bw, F_GETFL) & O_ACCMODE) == O_WRONLY, "B: access mode changed");
        put(bw, 2, PRE_B, ALL_B);
        close(bw);
        _exit(g_failed ? 1 : 0);
    }
    close(sync[1]);
    put(w, 1, 0, PRE_P);
    char s[2];
    read_exact(sync[0], s, sizeof s);
    close(sync[0]);
    int rw = open(path2, O_RDWR | O_NONBLOCK);
    if (rw < 0)
        DIE("open fifo2");
    char msg[100];
    for (int i = 0; i < 100; i++)
        msg[i] = (char)('a' + i % 26);
    if (write(rw, msg, 100) != 100)
        DIE("fill fifo2");
    info("a", "%d", (int)a);
    info("b", "%d", (int)b);
    ready();
    wait_go();
    CHECK((fcntl(w, F_GETFL) & O_ACCMODE) == O_WRONLY, "parent: access mode changed");
    put(wdup, 1, PRE_P, ALL_P);
    close(w);
    close(wdup);
    char got[128];
    int fl = fcntl(rw, F_GETFL);
    CHECK((fl & O_ACCMODE) == O_RDWR && (fl & O_NONBLOCK), "fifo2: flags %#x", fl);
    CHECK(read(rw, got, sizeof got) == 100 && !memcmp(got, msg, 100), "fifo2: its 100 bytes are gone");
    CHECK(read(rw, got, sizeof got) < 0 && errno == EAGAIN, "fifo2: more bytes than written");
    int st = 0;
    CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "B: status %#x", st);
    CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 0, "A: status %#x", st);
    return finish();
}
