/*
 * mem_anon: a 64 MiB private anonymous mapping full of a pattern, a shared
 * anonymous mapping, a read-only anonymous region, a mapping at a fixed
 * address and a region whose pages were all written.  After restore:
 * contents, addresses and permissions (incl. the 's' of shared) unchanged.
 */
#include "common.h"
#include <sys/mman.h>

#define BIG (64UL << 20)
#define SHR (1UL << 20)
#define RO (256UL << 10)
#define FIXED_ADDR ((void *)0x3a0000000000UL)
#define FIXED_LEN (2UL << 20)

int main(int argc, char **argv)
{
    wl_init(argc, argv);

    char *big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED)
        DIE("mmap big");
    fill_pattern(big, BIG, 11);

    char *shr = mmap(NULL, SHR, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shr == MAP_FAILED)
        DIE("mmap shared");
    fill_pattern(shr, SHR, 12);

    char *ro = mmap(NULL, RO, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ro == MAP_FAILED)
        DIE("mmap ro");
    fill_pattern(ro, RO, 13);
    if (mprotect(ro, RO, PROT_READ) != 0)
        DIE("mprotect ro");

    char *fixed = mmap(FIXED_ADDR, FIXED_LEN, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (fixed != FIXED_ADDR)
        DIE("mmap fixed");
    fill_pattern(fixed, FIXED_LEN, 14);

    /* a region with a hole in the middle (munmap), each side keeps content */
    char *split = mmap(NULL, 3 * 4096 * 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (split == MAP_FAILED)
        DIE("mmap split");
    fill_pattern(split, 3 * 4096 * 16, 15);
    if (munmap(split + 4096 * 16, 4096 * 16) != 0)
        DIE("munmap");

    info("big", "%p", (void *)big);
    ready();
    wait_go();

    long bad;
    CHECK((bad = check_pattern(big, BIG, 11)) < 0, "64 MiB anon region differs at word %ld", bad);
    CHECK((bad = check_pattern(shr, SHR, 12)) < 0, "shared anon region differs at word %ld", bad);
    CHECK((bad = check_pattern(ro, RO, 13)) < 0, "read-only region differs at word %ld", bad);
    CHECK((bad = check_pattern(fixed, FIXED_LEN, 14)) < 0, "fixed-address region differs at word %ld", bad);
    CHECK((bad = check_pattern(split, 4096 * 16, 15)) < 0, "split region (low part) differs at word %ld", bad);
    /* high part: words continue from the original numbering */
    {
        const uint64_t *q = (const uint64_t *)(split + 2 * 4096 * 16);
        size_t base = 2 * 4096 * 16 / 8;
        for (size_t i = 0; i < 4096 * 16 / 8; i++)
            if (q[i] != pat64(15, base + i)) {
                CHECK(0, "split region (high part) differs at word %zu", i);
                break;
            }
    }
    CHECK(strcmp(vma_perms(big), "rw-p") == 0, "big region perms %s, want rw-p", vma_perms(big));
    CHECK(strcmp(vma_perms(shr), "rw-s") == 0, "shared region perms %s, want rw-s", vma_perms(shr));
    CHECK(strcmp(vma_perms(ro), "r--p") == 0, "read-only region perms %s, want r--p", vma_perms(ro));
    CHECK(strcmp(vma_perms(fixed), "rw-p") == 0, "fixed region perms %s, want rw-p", vma_perms(fixed));
    CHECK(strcmp(vma_perms(split + 4096 * 16), "none") == 0, "the munmap'ed hole is mapped again (%s)",
          vma_perms(split + 4096 * 16));

    /* still writable / still private */
    big[0] ^= 1;
    shr[0] ^= 1;
    fixed[FIXED_LEN - 1] ^= 1;
    return finish();
}
