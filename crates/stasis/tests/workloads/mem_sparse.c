/*
 * mem_sparse: a 64 MiB anonymous mapping of which only a few pages were
 * ever written, plus a 2 MiB block that was written and then dropped with
 * MADV_DONTNEED.  After restore (checked with mincore before reading
 * anything): every page of a 2 MiB block that had no written page is still
 * non-resident (the image must not materialise untouched memory), the
 * written pages are resident and keep their content, the DONTNEED block
 * reads as zeros.  Whole 2 MiB blocks are used so a transparent huge page
 * around a written page cannot cause a false failure.
 */
#include "common.h"
#include <sys/mman.h>

#define PG 4096UL
#define BLK (2UL << 20)
#define NBLK 32
#define PPB (BLK / PG)

static const int touched_blocks[] = { 1, 5, 6, 20 };
static const int touched_pages[] = { 0, 17, 511 };
#define DROPPED_BLOCK 10

static int block_touched(int b)
{
    for (unsigned i = 0; i < sizeof touched_blocks / sizeof touched_blocks[0]; i++)
        if (touched_blocks[i] == b)
            return 1;
    return 0;
}

static unsigned char vec[NBLK * PPB];

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char *raw = mmap(NULL, (NBLK + 1) * BLK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        DIE("mmap");
    char *r = (char *)(((uintptr_t)raw + BLK - 1) & ~(BLK - 1));
    for (unsigned i = 0; i < sizeof touched_blocks / sizeof touched_blocks[0]; i++)
        for (unsigned j = 0; j < sizeof touched_pages / sizeof touched_pages[0]; j++) {
            char *p = r + touched_blocks[i] * BLK + touched_pages[j] * PG;
            fill_pattern(p, PG, 100 + touched_blocks[i] * 1000 + touched_pages[j]);
        }
    memset(r + DROPPED_BLOCK * BLK, 0x77, BLK);
    if (madvise(r + DROPPED_BLOCK * BLK, BLK, MADV_DONTNEED))
        DIE("madvise DONTNEED");

    if (mincore(r, NBLK * BLK, vec))
        DIE("mincore");
    long resident = 0;
    for (unsigned long i = 0; i < NBLK * PPB; i++)
        resident += vec[i] & 1;
    info("resident_pages_before", "%ld", resident);
    ready();
    wait_go();

    memset(vec, 0, sizeof vec);
    CHECK(mincore(r, NBLK * BLK, vec) == 0, "mincore after restore: %s", strerror(errno));
    long untouched_resident = 0, first_bad = -1;
    for (int b = 0; b < NBLK; b++) {
        if (block_touched(b))
            continue;
        for (unsigned long i = 0; i < PPB; i++)
            if (vec[b * PPB + i] & 1) {
                untouched_resident++;
                if (first_bad < 0)
                    first_bad = b * PPB + i;
            }
    }
    CHECK(untouched_resident == 0,
          "%ld never-written pages are resident after restore (first: page %ld of the region)",
          untouched_resident, first_bad);
    for (unsigned i = 0; i < sizeof touched_blocks / sizeof touched_blocks[0]; i++)
        for (unsigned j = 0; j < sizeof touched_pages / sizeof touched_pages[0]; j++) {
            unsigned long pg = touched_blocks[i] * PPB + touched_pages[j];
            CHECK(vec[pg] & 1, "written page %lu is not resident after restore", pg);
            long bad = check_pattern(r + pg * PG, PG, 100 + touched_blocks[i] * 1000 + touched_pages[j]);
            CHECK(bad < 0, "written page %lu differs at word %ld", pg, bad);
        }
    const char *d = r + DROPPED_BLOCK * BLK;
    for (unsigned long i = 0; i < BLK; i++)
        if (d[i] != 0) {
            CHECK(0, "MADV_DONTNEED'ed block is not zero at byte %lu (0x%02x)", i, (unsigned char)d[i]);
            break;
        }
    return finish();
}
