/*
 * aio: two native aio contexts (io_setup) with completions the program has not reaped.
 *
 * Context A: io_setup(8) (a one-page ring, 127 slots). 120 reads submitted and reaped in
 * two rounds, then 10 reads of the data file left unreaped: the ring's tail wrapped past
 * the end (head 120, tail 3).
 * Context B: io_setup(300) (a 5-page ring, 639 slots). 600 reads submitted and reaped,
 * then 4 writes to out.bin and 3 reads of the data file; 2 of these completions reaped:
 * head 602, tail 607, 5 unreaped.
 * Every request's aio_data is a distinct tag, its completion's obj the iocb's address.
 *
 * After go: both context ids still name their contexts (the ring header at the id has
 * the aio magic, head and tail are as at READY); io_getevents returns exactly the
 * unreaped completions (data, obj, res, res2) in order, the read buffers hold the file's
 * bytes; 5 rounds of 100 new reads on A and 200 reads + a write on B complete with the
 * right bytes and results; io_destroy works on both (then io_getevents says EINVAL).
 * Prints INFO ctx_a / ctx_b. args: WORKDIR [result] [full]: the verdict to
 * WORKDIR/result; A left with 120 unreaped completions instead of 10 (head 120, tail 113).
 * WORKDIR tree: a child forked first does the same with its own files (data-kid.bin,
 * out-kid.bin), its ring A mprotected read-only and B PROT_NONE (still so after restore),
 * and reports by its exit status. INFO kid.
 * WORKDIR fork: one context and a forked child, which keeps the ring's mapping but has no
 * context (io_getevents says EINVAL there); the dump refuses the child. INFO kid, ring.
 */
#define _GNU_SOURCE
#include "common.h"
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/wait.h>

struct ring {
    unsigned id, nr, head, tail, magic, compat, incompat, header_length;
};
#define AIO_MAGIC 0xa10a10a1u
#define PAGES 8
#define PG 4096

static long io_setup_(unsigned n, aio_context_t *c) { return syscall(SYS_io_setup, n, c); }
static long io_submit_(aio_context_t c, long n, struct iocb **p) { return syscall(SYS_io_submit, c, n, p); }
static long io_getevents_(aio_context_t c, long min, long max, struct io_event *e)
{
    return syscall(SYS_io_getevents, c, min, max, e, NULL);
}
static long io_destroy_(aio_context_t c) { return syscall(SYS_io_destroy, c); }

static int data_fd, out_fd;
static unsigned char bufs[600][64];
static struct iocb cbs[600];
static struct iocb *ptrs[600];

/* A read of 64 bytes at page (i % PAGES), offset i % 100, into bufs[i]. */
static struct iocb *rd(int i, uint64_t tag)
{
    struct iocb *cb = &cbs[i];
    memset(cb, 0, sizeof *cb);
    cb->aio_fildes = data_fd;
    cb->aio_lio_opcode = IOCB_CMD_PREAD;
    cb->aio_buf = (uintptr_t)bufs[i];
    cb->aio_nbytes = 64;
    cb->aio_offset = (i % PAGES) * PG + i % 100;
    cb->aio_data = tag;
    return cb;
}

static int rd_ok(int i)
{
    for (int k = 0; k < 64; k++)
        if (bufs[i][k] != (unsigned char)('a' + i % PAGES))
            return 0;
    return 1;
}

/* Submits requests cbs[from .. from+n) one io_submit. */
static long submit(aio_context_t c, int from, int n)
{
    for (int k = 0; k < n; k++)
        ptrs[k] = &cbs[from + k];
    return io_submit_(c, n, ptrs);
}

/* The permissions of the mapping at `addr` as /proc/self/maps shows them ("rw-s"). */
static const char *perms_of(aio_context_t addr)
{
    static char perms[5];
    char want[64], line[512];
    snprintf(perms, sizeof perms, "?");
    snprintf(want, sizeof want, "%llx-", (unsigned long long)addr);
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
        if (strncmp(line, want, strlen(want)) == 0 && strchr(line, ' '))
            snprintf(perms, sizeof perms, "%.4s", strchr(line, ' ') + 1);
    if (maps)
        fclose(maps);
    return perms;
}

struct want {
    uint64_t data, obj;
    int64_t res, res2;
};

static void check_events(const char *name, aio_context_t c, const struct want *w, int n)
{
    struct io_event ev[128];
    long got = io_getevents_(c, n, 128, ev);
    CHECK(got == n, "%s: io_getevents gave %ld events, want %d (%s)", name, got, n, got < 0 ? strerror(errno) : "");
    for (long k = 0; k < got && k < n; k++)
        CHECK(ev[k].data == w[k].data && ev[k].obj == w[k].obj && ev[k].res == w[k].res && ev[k].res2 == w[k].res2,
              "%s: event %ld is data %llu obj %#llx res %lld res2 %lld, want data %llu obj %#llx res %lld res2 %lld", name, k,
              (unsigned long long)ev[k].data, (unsigned long long)ev[k].obj, (long long)ev[k].res, (long long)ev[k].res2,
              (unsigned long long)w[k].data, (unsigned long long)w[k].obj, (long long)w[k].res, (long long)w[k].res2);
}

/* "fork": a context, then a child that inherits its ring mapping (not the context). */
static int forked(void)
{
    aio_context_t c = 0;
    if (io_setup_(8, &c))
        DIE("io_setup");
    pid_t kid = fork();
    if (kid == 0) {
        wait_go();
        _exit(io_getevents_(c, 0, 1, NULL) == -1 && errno == EINVAL ? 0 : 1);
    }
    info("kid", "%d", kid);
    info("ring", "%#llx", (unsigned long long)c);
    ready();
    wait_go();
    int st = 0;
    CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: the ring was a context there (%#x)", st);
    CHECK(io_getevents_(c, 0, 1, NULL) == 0 && io_destroy_(c) == 0, "context: %s", strerror(errno));
    return finish();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc > 2 && strcmp(argv[2], "fork") == 0)
        return forked();
    int to_result = argc > 2 && strcmp(argv[2], "result") == 0;
    /* "tree": a child forked first runs the same (its own files and contexts) */
    int tree = argc > 2 && strcmp(argv[2], "tree") == 0, sync[2] = { -1, -1 };
    pid_t kid = -1;
    if (tree && (pipe(sync) || (kid = fork()) < 0))
        DIE("fork");
    data_fd = open(wl_path(kid == 0 ? "data-kid.bin" : "data.bin"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    out_fd = open(wl_path(kid == 0 ? "out-kid.bin" : "out.bin"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (data_fd < 0 || out_fd < 0)
        DIE("open");
    static unsigned char page[PG];
    for (int p = 0; p < PAGES; p++) {
        memset(page, 'a' + p, PG);
        if (write(data_fd, page, PG) != PG)
            DIE("write data.bin");
    }
    aio_context_t a = 0, b = 0;
    if (io_setup_(8, &a) || io_setup_(300, &b))
        DIE("io_setup");
    struct ring *ra = (struct ring *)a, *rb = (struct ring *)b;
    if (ra->nr != 127 || rb->nr != 639)
        DIE("unexpected ring sizes");
    /* A: 2 x 60 reads, reaped; then 10 left in the ring across its end */
    struct io_event ev[64];
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 60; k++)
            rd(k, 1 + k);
        if (submit(a, 0, 60) != 60 || io_getevents_(a, 60, 64, ev) != 60)
            DIE("A warm-up");
    }
    /* "full": 120 unreaped in A's 127 slots (its kernel-side request slots nearly all taken) */
    int full = argc > 2 && strcmp(argv[argc - 1], "full") == 0, na = full ? 120 : 10;
    struct want wa[120], wb[5];
    for (int k = 0; k < na; k++) {
        rd(100 + k, 5000 + k);
        wa[k] = (struct want){ 5000 + k, (uintptr_t)&cbs[100 + k], 64, 0 };
    }
    if (submit(a, 100, na) != na)
        DIE("A submit");
    /* B: 3 x 200 reads, reaped; then 4 writes and 3 reads, 2 reaped */
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 200; k++)
            rd(k, 1 + k);
        long got = 0, n;
        if (submit(b, 0, 200) != 200)
            DIE("B warm-up");
        while (got < 200 && (n = io_getevents_(b, 1, 64, ev)) > 0)
            got += n;
        if (got != 200)
            DIE("B warm-up reap");
    }
    for (int k = 0; k < 4; k++) {
        struct iocb *cb = &cbs[300 + k];
        memset(cb, 0, sizeof *cb);
        memset(bufs[300 + k], 'W' - k, 64);
        cb->aio_fildes = out_fd;
        cb->aio_lio_opcode = IOCB_CMD_PWRITE;
        cb->aio_buf = (uintptr_t)bufs[300 + k];
        cb->aio_nbytes = 16 * (k + 1);
        cb->aio_offset = 64 * k;
        cb->aio_data = 7000 + k;
    }
    for (int k = 0; k < 3; k++)
        rd(304 + k, 7004 + k);
    if (submit(b, 300, 7) != 7 || io_getevents_(b, 2, 2, ev) != 2)
        DIE("B submit");
    for (int k = 0; k < 5; k++) {
        int i = 302 + k;
        wb[k] = (struct want){ 7000 + 2 + k, (uintptr_t)&cbs[i], i < 304 ? 16 * (i - 300 + 1) : 64, 0 };
    }
    unsigned ha = ra->head, ta = ra->tail, hb = rb->head, tb = rb->tail;
    if (ha != 120 || ta != (120 + na) % 127 || hb != 602 || tb != 607)
        DIE("unexpected ring positions (the requests did not complete at submit)");
    /* the child's ring A is read-only for it, ring B not even readable (the kernel
     * writes both all the same) */
    if (kid == 0 && (mprotect((void *)a, PG, PROT_READ) || mprotect((void *)b, 5 * PG, PROT_NONE)))
        DIE("mprotect");
    char c = 'k';
    if (kid == 0) {
        if (write(sync[1], &c, 1) != 1)
            DIE("sync");
    } else {
        if (tree && read(sync[0], &c, 1) != 1)
            DIE("child setup");
        if (tree)
            info("kid", "%d", kid);
        info("ctx_a", "%#llx", (unsigned long long)a);
        info("ctx_b", "%#llx", (unsigned long long)b);
        ready();
    }
    wait_go();
    if (to_result && stdout_to_result())
        return 1;
    if (kid == 0) {
        CHECK(strcmp(perms_of(b), "---s") == 0, "ring B mapped %s", perms_of(b));
        if (mprotect((void *)b, 5 * PG, PROT_READ | PROT_WRITE))
            DIE("mprotect back");
    }

    CHECK(ra->magic == AIO_MAGIC && rb->magic == AIO_MAGIC, "ring magic %#x %#x", ra->magic, rb->magic);
    CHECK(strcmp(perms_of(a), kid == 0 ? "r--s" : "rw-s") == 0, "ring A mapped %s", perms_of(a));
    CHECK(ra->nr == 127 && rb->nr == 639, "ring slots %u %u, want 127 639", ra->nr, rb->nr);
    CHECK(ra->head == ha && ra->tail == ta, "A: head %u tail %u, want %u %u", ra->head, ra->tail, ha, ta);
    CHECK(rb->head == hb && rb->tail == tb, "B: head %u tail %u, want %u %u", rb->head, rb->tail, hb, tb);
    check_events("A", a, wa, na);
    check_events("B", b, wb, 5);
    for (int k = 0; k < na; k++)
        CHECK(rd_ok(100 + k), "A: read %d buffer has %c, want %c", k, bufs[100 + k][0], 'a' + (100 + k) % PAGES);
    for (int k = 0; k < 3; k++)
        CHECK(rd_ok(304 + k), "B: read %d buffer has %c", k, bufs[304 + k][0]);
    CHECK(ra->head == ra->tail && rb->head == rb->tail, "rings not empty after reaping: A %u/%u B %u/%u", ra->head, ra->tail, rb->head,
          rb->tail);

    /* new requests: A, 5 rounds of 100 (more than its 127 slots in all) */
    for (int round = 0; round < 5; round++) {
        memset(bufs, 0, sizeof bufs);
        for (int k = 0; k < 100; k++)
            rd(k, 10000 + round * 100 + k);
        long s = submit(a, 0, 100);
        CHECK(s == 100, "A round %d: io_submit took %ld of 100 (%s)", round, s, s < 0 ? strerror(errno) : "");
        long got = 0;
        while (s > 0 && got < s) {
            long n = io_getevents_(a, 1, 64, ev);
            if (n <= 0)
                break;
            for (long k = 0; k < n; k++) {
                int i = (int)(ev[k].data - 10000 - round * 100);
                CHECK(i >= 0 && i < 100 && ev[k].res == 64 && ev[k].obj == (uintptr_t)&cbs[i] && rd_ok(i),
                      "A round %d: event data %llu res %lld", round, (unsigned long long)ev[k].data, (long long)ev[k].res);
            }
            got += n;
        }
        CHECK(got == s, "A round %d: reaped %ld of %ld", round, got, s);
    }
    /* B: 200 reads at once and a write */
    memset(bufs, 0, sizeof bufs);
    for (int k = 0; k < 200; k++)
        rd(k, 20000 + k);
    long s = submit(b, 0, 200);
    CHECK(s == 200, "B: io_submit took %ld of 200 (%s)", s, s < 0 ? strerror(errno) : "");
    long got = 0, good = 0;
    while (s > 0 && got < s) {
        long n = io_getevents_(b, 1, 64, ev);
        if (n <= 0)
            break;
        for (long k = 0; k < n; k++) {
            int i = (int)(ev[k].data - 20000);
            good += i >= 0 && i < 200 && ev[k].res == 64 && rd_ok(i);
        }
        got += n;
    }
    CHECK(got == 200 && good == 200, "B: %ld events, %ld good, want 200", got, good);
    struct iocb *cb = &cbs[500];
    memset(cb, 0, sizeof *cb);
    memset(bufs[500], 'Z', 64);
    *cb = (struct iocb){ .aio_data = 9, .aio_lio_opcode = IOCB_CMD_PWRITE, .aio_fildes = out_fd, .aio_buf = (uintptr_t)bufs[500],
                         .aio_nbytes = 8, .aio_offset = 256 };
    long n = submit(b, 500, 1) == 1 ? io_getevents_(b, 1, 1, ev) : -1;
    CHECK(n == 1 && ev[0].data == 9 && ev[0].res == 8, "B: new write: %ld events, res %lld", n, (long long)ev[0].res);
    /* what the writes left in out.bin: before the dump 16/32/48/64 bytes of W/V/U/T */
    unsigned char o[264];
    CHECK(pread(out_fd, o, sizeof o, 0) == 264, "out.bin size");
    for (int k = 0; k < 4; k++)
        CHECK(o[64 * k] == 'W' - k && o[64 * k + 16 * (k + 1) - 1] == 'W' - k, "out.bin write %d: %c", k, o[64 * k]);
    CHECK(o[256] == 'Z' && o[263] == 'Z', "out.bin new write: %c", o[256]);

    CHECK(io_destroy_(a) == 0, "io_destroy A: %s", strerror(errno));
    CHECK(io_destroy_(b) == 0, "io_destroy B: %s", strerror(errno));
    CHECK(io_getevents_(a, 0, 1, ev) == -1 && errno == EINVAL, "A still answers after io_destroy");
    if (kid == 0)
        _exit(g_failed ? 1 : 0);
    int st = 0;
    if (tree)
        CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
    return finish();
}
