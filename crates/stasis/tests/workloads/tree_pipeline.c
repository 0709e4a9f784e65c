/*
 * tree_pipeline: `producer | filter | consumer`, three children of one parent joined
 * by two pipes.  Before READY the producer has written HEAD bytes into pipe 1, the
 * filter has read FHEAD of them and written their transform into pipe 2, and the
 * consumer has read nothing: both pipes hold data at dump time.
 * After `go` the producer writes the rest (TOTAL bytes in all) and closes; the filter
 * transforms (b -> b ^ 0x5a, +1) until EOF; the consumer checks every byte against the
 * expected stream, the byte count and a checksum.  The parent reaps all three (each
 * must exit 0) and checks that nothing else is its child.
 */
#include "common.h"
#include <sys/ioctl.h>
#include <sys/wait.h>

#define TOTAL (4u << 20)
#define HEAD 40000u
#define FHEAD 12000u

static unsigned char src_byte(uint64_t i) { return (unsigned char)(pat64(7, i / 8) >> (8 * (i % 8))); }
static unsigned char xform(unsigned char b) { return (unsigned char)((b ^ 0x5a) + 1); }

static int write_all(int fd, const unsigned char *b, size_t n)
{
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void produce(int out, uint64_t from, uint64_t to)
{
    static unsigned char buf[65536];
    while (from < to) {
        size_t n = 0;
        while (n < sizeof buf && from + n < to) {
            buf[n] = src_byte(from + n);
            n++;
        }
        if (write_all(out, buf, n) < 0) {
            CHECK(0, "producer: write at %llu: %s", (unsigned long long)from, strerror(errno));
            return;
        }
        from += n;
    }
}

/* Copies `limit` bytes (or until EOF when limit is 0) from in to out, transformed.
 * Returns the number of bytes moved. */
static uint64_t filter(int in, int out, uint64_t limit, uint64_t pos)
{
    static unsigned char buf[8192];
    uint64_t moved = 0;
    for (;;) {
        size_t want = sizeof buf;
        if (limit && limit - moved < want)
            want = (size_t)(limit - moved);
        if (limit && want == 0)
            break;
        ssize_t r = read(in, buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            CHECK(0, "filter: read: %s", strerror(errno));
            break;
        }
        if (r == 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] != src_byte(pos + moved + i)) {
                CHECK(0, "filter: input byte %llu is %#x, want %#x", (unsigned long long)(pos + moved + i), buf[i],
                      src_byte(pos + moved + i));
                return moved;
            }
            buf[i] = xform(buf[i]);
        }
        if (write_all(out, buf, (size_t)r) < 0) {
            CHECK(0, "filter: write: %s", strerror(errno));
            break;
        }
        moved += (uint64_t)r;
    }
    return moved;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int p1[2], p2[2], sync[2];
    if (pipe(p1) || pipe(p2) || pipe(sync))
        DIE("pipe");
    pid_t prod = fork();
    if (prod == 0) {
        close(p1[0]), close(p2[0]), close(p2[1]), close(sync[0]);
        produce(p1[1], 0, HEAD);
        CHECK(write(sync[1], "p", 1) == 1, "producer: sync");
        close(sync[1]);
        wait_go();
        produce(p1[1], HEAD, TOTAL);
        close(p1[1]);
        _exit(g_failed ? 1 : 0);
    }
    pid_t filt = fork();
    if (filt == 0) {
        close(p1[1]), close(p2[0]), close(sync[0]);
        uint64_t n = filter(p1[0], p2[1], FHEAD, 0);
        CHECK(n == FHEAD, "filter: moved %llu before READY", (unsigned long long)n);
        CHECK(write(sync[1], "f", 1) == 1, "filter: sync");
        close(sync[1]);
        wait_go();
        n += filter(p1[0], p2[1], 0, n);
        CHECK(n == TOTAL, "filter: moved %llu bytes in all, want %u", (unsigned long long)n, TOTAL);
        close(p2[1]);
        _exit(g_failed ? 1 : 0);
    }
    pid_t cons = fork();
    if (cons == 0) {
        close(p1[0]), close(p1[1]), close(p2[1]), close(sync[0]), close(sync[1]);
        wait_go();
        static unsigned char buf[65536];
        uint64_t got = 0, sum = 0, want_sum = 0;
        for (uint64_t i = 0; i < TOTAL; i++)
            want_sum = want_sum * 31 + xform(src_byte(i));
        int bad = 0;
        for (;;) {
            ssize_t r = read(p2[0], buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            for (ssize_t i = 0; i < r; i++) {
                if (!bad && buf[i] != xform(src_byte(got + i))) {
                    CHECK(0, "consumer: byte %llu is %#x, want %#x", (unsigned long long)(got + i), buf[i],
                          xform(src_byte(got + i)));
                    bad = 1;
                }
                sum = sum * 31 + buf[i];
            }
            got += (uint64_t)r;
        }
        CHECK(got == TOTAL, "consumer: got %llu bytes, want %u", (unsigned long long)got, TOTAL);
        CHECK(sum == want_sum, "consumer: checksum %#llx, want %#llx", (unsigned long long)sum,
              (unsigned long long)want_sum);
        printf("INFO consumer_bytes=%llu\n", (unsigned long long)got);
        fflush(stdout);
        _exit(g_failed ? 1 : 0);
    }
    close(p1[0]), close(p1[1]), close(p2[0]), close(p2[1]), close(sync[1]);
    char s[2];
    read_exact(sync[0], s, sizeof s);
    close(sync[0]);
    info("producer", "%d", (int)prod);
    info("filter", "%d", (int)filt);
    info("consumer", "%d", (int)cons);
    info("in_flight", "%u+%u", HEAD - FHEAD, FHEAD);
    ready();
    wait_go();
    pid_t who[3] = { prod, filt, cons };
    const char *name[3] = { "producer", "filter", "consumer" };
    for (int i = 0; i < 3; i++) {
        int st = 0;
        CHECK(waitpid(who[i], &st, 0) == who[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s (pid %d): status %#x",
              name[i], (int)who[i], st);
    }
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "an unexpected child is left");
    return finish();
}
