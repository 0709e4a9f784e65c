/*
 * mem_vmflags: every VMA's smaps VmFlags survive. Before READY the workload records the
 * start, end, name and VmFlags of every VMA in /proc/self/smaps; after restore every VMA
 * must be there again with the same flags (and no other VMA may have appeared). The
 * regions made for it:
 *   growsdown  MAP_GROWSDOWN (gd), 64 KiB with data, 6 MiB free below; after restore a
 *              write just below it grows it by a page
 *   noreserve  MAP_NORESERVE (nr, and no ac), 1 MiB, half written
 *   locked     mlock (lo), all pages resident
 *   onfault    mlock2(MLOCK_ONFAULT) (lo), 256 KiB of which 64 KiB were touched: after
 *              restore the untouched pages are still not resident (mincore)
 *   sealed     mseal (sl, kernel 6.10+), 64 KiB with data: mprotect still fails (EPERM)
 *   low32      MAP_32BIT: below 2 GiB with its data
 *   rofile     a file opened O_RDONLY mapped shared read-only (no mw: it cannot be
 *              made writable)
 * The content of every region is checked too.
 */
#include "common.h"
#include <sys/mman.h>

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

#define MAXV 512
struct vma {
    unsigned long lo, hi;
    char name[128];
    char flags[160];
};

static int snapshot(struct vma *out)
{
    static char buf[4 << 20];
    if (read_file("/proc/self/smaps", buf, sizeof buf) < 0)
        return -1;
    int n = -1;
    char *line = buf;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        unsigned long lo, hi;
        char c;
        int off = 0;
        if (sscanf(line, "%lx-%lx%c%*s %*s %*s %*s%n", &lo, &hi, &c, &off) >= 3 && c == ' ' && n + 1 < MAXV) {
            n++;
            out[n].lo = lo, out[n].hi = hi, out[n].flags[0] = 0;
            const char *nm = line + off;
            while (*nm == ' ')
                nm++;
            snprintf(out[n].name, sizeof out[n].name, "%s", nm);
        } else if (n >= 0 && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out[n].flags, sizeof out[n].flags, "%s", line + 8);
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return n + 1;
}

static struct vma before[MAXV], after[MAXV];

static char *map_at_hole(size_t hole, size_t len, int flags)
{
    char *raw = mmap(NULL, hole, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        DIE("mmap hole");
    char *p = raw + hole - len - (1UL << 20);
    munmap(raw, hole);
    char *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | flags, -1, 0);
    if (q != p)
        DIE("mmap fixed");
    return p;
}

static int resident(char *p, size_t pages, int want)
{
    unsigned char v[256];
    if (pages > sizeof v || mincore(p, pages * 4096, v))
        return -1;
    int n = 0;
    for (size_t i = 0; i < pages; i++)
        n += (v[i] & 1) == want;
    return n;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char *gd = map_at_hole(8UL << 20, 64 << 10, MAP_GROWSDOWN);
    fill_pattern(gd, 64 << 10, 1);
    char *nr = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (nr == MAP_FAILED)
        DIE("mmap noreserve");
    fill_pattern(nr, 512 << 10, 2);
    char *lk = map_at_hole(4UL << 20, 64 << 10, 0);
    fill_pattern(lk, 64 << 10, 3);
    if (mlock(lk, 64 << 10))
        DIE("mlock");
    char *of = map_at_hole(4UL << 20, 256 << 10, 0);
    fill_pattern(of, 64 << 10, 4);
    if (syscall(SYS_mlock2, of, 256 << 10, MLOCK_ONFAULT))
        DIE("mlock2 onfault");
    char *sl = map_at_hole(4UL << 20, 64 << 10, 0);
    fill_pattern(sl, 64 << 10, 5);
    int sealed = syscall(SYS_mseal, sl, 64 << 10, 0) == 0;
    info("sealed", "%s", sealed ? "yes" : strerror(errno));
    char *lo32 = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (lo32 == MAP_FAILED)
        DIE("mmap 32bit");
    fill_pattern(lo32, 64 << 10, 6);
    int fd = open(wl_path("ro.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    static char page[8192];
    fill_pattern(page, sizeof page, 7);
    if (fd < 0 || write(fd, page, sizeof page) != sizeof page)
        DIE("ro.bin");
    close(fd);
    fd = open(wl_path("ro.bin"), O_RDONLY);
    char *ro = mmap(NULL, sizeof page, PROT_READ, MAP_SHARED, fd, 0);
    if (ro == MAP_FAILED)
        DIE("mmap ro");
    close(fd);
    int nb = snapshot(before);
    if (nb <= 0)
        DIE("smaps");
    CHECK(resident(of, 64, 1) == 16, "onfault region: %d pages resident before the dump, want 16", resident(of, 64, 1));
    info("vmas", "%d", nb);
    ready();
    wait_go();

    int na = snapshot(after);
    CHECK(na == nb, "%d VMAs after the restore, %d before", na, nb);
    for (int i = 0; i < nb; i++) {
        int found = 0;
        for (int j = 0; j < na; j++) {
            if (after[j].lo != before[i].lo || after[j].hi != before[i].hi)
                continue;
            found = 1;
            CHECK(strcmp(after[j].flags, before[i].flags) == 0, "VMA %lx-%lx %s: VmFlags%s before, VmFlags%s after",
                  before[i].lo, before[i].hi, before[i].name, before[i].flags, after[j].flags);
            CHECK(strcmp(after[j].name, before[i].name) == 0, "VMA %lx-%lx: named '%s' before, '%s' after", before[i].lo,
                  before[i].hi, before[i].name, after[j].name);
        }
        CHECK(found, "VMA %lx-%lx %s (VmFlags%s) is gone", before[i].lo, before[i].hi, before[i].name, before[i].flags);
    }
    for (int j = 0; j < na; j++) {
        int found = 0;
        for (int i = 0; i < nb; i++)
            found |= after[j].lo == before[i].lo && after[j].hi == before[i].hi;
        CHECK(found, "VMA %lx-%lx %s (VmFlags%s) is new", after[j].lo, after[j].hi, after[j].name, after[j].flags);
    }
    CHECK(check_pattern(gd, 64 << 10, 1) < 0, "growsdown region content");
    CHECK(check_pattern(nr, 512 << 10, 2) < 0, "noreserve region content");
    CHECK(check_pattern(lk, 64 << 10, 3) < 0, "locked region content");
    CHECK(check_pattern(of, 64 << 10, 4) < 0, "onfault region content");
    CHECK(check_pattern(sl, 64 << 10, 5) < 0, "sealed region content");
    CHECK(check_pattern(lo32, 64 << 10, 6) < 0, "MAP_32BIT region content");
    CHECK(check_pattern(ro, sizeof page, 7) < 0, "read-only file mapping content");
    CHECK((uintptr_t)lo32 < (1UL << 31), "MAP_32BIT region at %p", (void *)lo32);
    CHECK(resident(lk, 16, 1) == 16, "locked region: %d of 16 pages resident", resident(lk, 16, 1));
    CHECK(resident(of, 64, 1) == 16, "onfault region: %d of 64 pages resident after the restore, want the 16 touched",
          resident(of, 64, 1));
    if (sealed)
        CHECK(mprotect(sl, 4096, PROT_READ) != 0 && errno == EPERM, "sealed region: mprotect did not fail with EPERM");
    CHECK(mprotect(ro, sizeof page, PROT_READ | PROT_WRITE) != 0 && errno == EACCES,
          "read-only file mapping could be made writable");
    /* the growsdown region still grows */
    gd[-1] = 42;
    char line[512];
    CHECK(maps_line(gd - 1, line, sizeof line) && strtoul(line, NULL, 16) == (uintptr_t)gd - 4096,
          "growsdown region did not grow by a page: %s", line);
    return finish();
}
