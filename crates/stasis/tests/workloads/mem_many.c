/*
 * mem_many: 3000 separate small mappings (1-3 pages each, alternating
 * rw-p / r--p / rw-s, separated by unmapped gaps so they cannot merge),
 * each with its own pattern.  Catches fixed-size tables and per-VMA
 * overheads in the engine.  After restore: every mapping is at its
 * address with its perms and content.
 */
#include "common.h"
#include <sys/mman.h>

#define N 3000
#define PG 4096UL

static char *addr[N];
static int npages[N];

static int kind(int i)
{
    return i % 3; /* 0 rw-p, 1 r--p, 2 rw-s */
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    /* reserve one region and carve it, so gaps are guaranteed */
    size_t total = (size_t)N * 4 * PG;
    char *base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        DIE("reserve");
    munmap(base, total);
    for (int i = 0; i < N; i++) {
        npages[i] = 1 + i % 3;
        char *want = base + (size_t)i * 4 * PG;
        int flags = (kind(i) == 2 ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
        addr[i] = mmap(want, npages[i] * PG, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (addr[i] != want)
            DIE("mmap");
        fill_pattern(addr[i], npages[i] * PG, 7000 + i);
        if (kind(i) == 1 && mprotect(addr[i], npages[i] * PG, PROT_READ))
            DIE("mprotect");
    }
    info("mappings", "%d", N);
    ready();
    wait_go();
    int bad_content = 0, bad_perms = 0;
    static const char *want_perms[3] = { "rw-p", "r--p", "rw-s" };
    for (int i = 0; i < N; i++) {
        if (check_pattern(addr[i], npages[i] * PG, 7000 + i) >= 0 && bad_content++ < 5)
            CHECK(0, "mapping %d at %p: content differs", i, (void *)addr[i]);
        if (i % 50 == 0 || i == N - 1) { /* maps lookups are slow: sample */
            const char *p = vma_perms(addr[i]);
            if (strcmp(p, want_perms[kind(i)]) != 0 && bad_perms++ < 5)
                CHECK(0, "mapping %d at %p: perms %s, want %s", i, (void *)addr[i], p, want_perms[kind(i)]);
        }
    }
    CHECK(bad_content == 0, "%d mappings with wrong content", bad_content);
    CHECK(bad_perms == 0, "%d sampled mappings with wrong perms", bad_perms);
    return finish();
}
