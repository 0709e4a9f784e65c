/*
 * mem_layout: PROT_NONE guard pages between read-write pages, a 1 GiB
 * PROT_NONE reservation with a committed read-write window in the middle
 * (JVM/Go style), and the whole address-space layout.  After restore: the
 * guard pages are still PROT_NONE (in /proc/self/maps AND touching them
 * still faults), the rw pages keep content, and /proc/self/maps is the same
 * as before the dump (adjacent compatible anonymous VMAs merged before
 * comparing; only the low end of [stack] may differ).
 */
#include "common.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#define PG 4096UL

static sigjmp_buf g_jb;
static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(g_jb, 1);
}

/* 1 if reading *p faults */
static int faults(volatile char *p)
{
    if (sigsetjmp(g_jb, 1))
        return 1;
    (void)*p;
    return 0;
}

struct ent {
    unsigned long lo, hi, off, inode;
    char perms[5];
    char path[256];
};
#define MAXE 2048
static struct ent before[MAXE], after[MAXE];
static char mapsbuf[1 << 20];

static int snapshot(struct ent *e)
{
    if (read_file("/proc/self/maps", mapsbuf, sizeof mapsbuf) < 0)
        return -1;
    int n = 0;
    char *line = mapsbuf;
    while (*line && n < MAXE) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        struct ent c;
        memset(&c, 0, sizeof c);
        char dev[32];
        int pos = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %31s %lu %n", &c.lo, &c.hi, c.perms, &c.off, dev, &c.inode, &pos) >= 6) {
            const char *p = line + pos;
            while (*p == ' ')
                p++;
            snprintf(c.path, sizeof c.path, "%s", p);
            if (c.inode == 0)
                c.off = 0; /* anonymous: pgoff is an artefact of mmap history */
            if (n > 0) {
                struct ent *pr = &e[n - 1];
                int anon = c.inode == 0 && pr->inode == 0;
                if (pr->hi == c.lo && strcmp(pr->perms, c.perms) == 0 && strcmp(pr->path, c.path) == 0 &&
                    pr->inode == c.inode &&
                    (anon || pr->off + (pr->hi - pr->lo) == c.off)) {
                    pr->hi = c.hi;
                    goto next;
                }
            }
            e[n++] = c;
        }
    next:
        if (!nl)
            break;
        line = nl + 1;
    }
    return n;
}

static void fmt(const struct ent *e, char *out, size_t cap)
{
    snprintf(out, cap, "%lx-%lx %s %lx %lu %s", e->lo, e->hi, e->perms, e->off, e->inode, e->path);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);

    /* [rw 4 pages][none 1][rw 4][none 2][rw 1] */
    char *g = mmap(NULL, 12 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g == MAP_FAILED)
        DIE("mmap guard");
    fill_pattern(g, 12 * PG, 21);
    if (mprotect(g + 4 * PG, PG, PROT_NONE) || mprotect(g + 9 * PG, 2 * PG, PROT_NONE))
        DIE("mprotect guard");

    /* 1 GiB reservation, 1 MiB committed in the middle */
    size_t rlen = 1UL << 30;
    char *res = mmap(NULL, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        DIE("mmap reservation");
    char *win = res + (rlen / 2);
    if (mprotect(win, 1 << 20, PROT_READ | PROT_WRITE))
        DIE("mprotect window");
    fill_pattern(win, 1 << 20, 22);

    /* warm up everything the comparison uses (stdio buffer, [heap]),
     * then take the snapshot */
    info("guard", "%p", (void *)(g + 4 * PG));
    int nb = snapshot(before);
    nb = snapshot(before);
    if (nb <= 0)
        DIE("read maps");
    info("vmas", "%d", nb);
    ready();
    wait_go();

    int na = snapshot(after);
    CHECK(na > 0, "cannot read /proc/self/maps after restore");

    CHECK(strcmp(vma_perms(g + 4 * PG), "---p") == 0, "guard page 1 perms %s, want ---p", vma_perms(g + 4 * PG));
    CHECK(strcmp(vma_perms(g + 9 * PG), "---p") == 0, "guard page 2 perms %s, want ---p", vma_perms(g + 9 * PG));
    CHECK(strcmp(vma_perms(g + 10 * PG), "---p") == 0, "guard page 3 perms %s, want ---p", vma_perms(g + 10 * PG));
    CHECK(strcmp(vma_perms(res), "---p") == 0, "reservation perms %s, want ---p", vma_perms(res));
    CHECK(strcmp(vma_perms(res + rlen - 1), "---p") == 0, "reservation tail perms %s", vma_perms(res + rlen - 1));
    CHECK(strcmp(vma_perms(win), "rw-p") == 0, "window perms %s, want rw-p", vma_perms(win));
    CHECK(faults(g + 4 * PG), "reading guard page 1 did not fault");
    CHECK(faults(g + 10 * PG), "reading guard page 3 did not fault");
    CHECK(faults(res + 4096), "reading the PROT_NONE reservation did not fault");
    CHECK(!faults(g), "reading rw page faulted");
    long bad;
    CHECK((bad = check_pattern(g, 4 * PG, 21)) < 0, "rw pages before guard differ at word %ld", bad);
    {
        const uint64_t *q = (const uint64_t *)(g + 5 * PG);
        for (size_t i = 0; i < 4 * PG / 8; i++)
            if (q[i] != pat64(21, 5 * PG / 8 + i)) {
                CHECK(0, "rw pages between guards differ at word %zu", i);
                break;
            }
        q = (const uint64_t *)(g + 11 * PG);
        for (size_t i = 0; i < PG / 8; i++)
            if (q[i] != pat64(21, 11 * PG / 8 + i)) {
                CHECK(0, "last rw page differs at word %zu", i);
                break;
            }
    }
    CHECK((bad = check_pattern(win, 1 << 20, 22)) < 0, "committed window differs at word %ld", bad);

    /* whole layout */
    if (na > 0) {
        char b1[512], b2[512];
        int shown = 0;
        int i = 0, j = 0;
        while ((i < nb || j < na) && shown < 8) {
            const struct ent *x = i < nb ? &before[i] : NULL, *y = j < na ? &after[j] : NULL;
            if (x && y) {
                int same = strcmp(x->perms, y->perms) == 0 && strcmp(x->path, y->path) == 0 &&
                           x->hi == y->hi && x->off == y->off && x->inode == y->inode &&
                           (x->lo == y->lo || strcmp(x->path, "[stack]") == 0);
                if (same) {
                    i++, j++;
                    continue;
                }
                fmt(x, b1, sizeof b1);
                fmt(y, b2, sizeof b2);
                CHECK(0, "maps differ: before '%s' after '%s'", b1, b2);
                shown++;
                if (x->lo < y->lo)
                    i++;
                else if (y->lo < x->lo)
                    j++;
                else
                    i++, j++;
            } else if (x) {
                fmt(x, b1, sizeof b1);
                CHECK(0, "VMA missing after restore: %s", b1);
                shown++;
                i++;
            } else {
                fmt(y, b2, sizeof b2);
                CHECK(0, "extra VMA after restore: %s", b2);
                shown++;
                j++;
            }
        }
    }
    return finish();
}
