/*
 * mem_heap: malloc'ed data (small chunks from brk, large ones mmap'ed by
 * malloc), holes from free(), an sbrk()-extended region, and the program
 * break itself. After restore: contents equal, sbrk(0) unchanged, the
 * [heap] VMA still labelled, and the allocator still works.
 */
#include "common.h"
#include <malloc.h>

#define NSMALL 2000
static void *small[NSMALL];
static size_t small_len[NSMALL];
static void *large[4];
static const size_t large_len[4] = { 200 << 10, 1 << 20, 3 << 20, 8 << 20 };

int main(int argc, char **argv)
{
    wl_init(argc, argv);

    for (int i = 0; i < NSMALL; i++) {
        small_len[i] = 8 + (pat64(7, i) % 4000) / 8 * 8;
        small[i] = malloc(small_len[i]);
        if (!small[i])
            DIE("malloc small");
        fill_pattern(small[i], small_len[i], 1000 + i);
    }
    /* punch holes */
    for (int i = 0; i < NSMALL; i += 3) {
        free(small[i]);
        small[i] = NULL;
    }
    for (int i = 0; i < 4; i++) {
        large[i] = malloc(large_len[i]);
        if (!large[i])
            DIE("malloc large");
        fill_pattern(large[i], large_len[i], 50 + i);
    }

    /* an explicitly sbrk'ed region after the malloc arena */
    size_t brk_len = 256 << 10;
    void *brk_region = sbrk((intptr_t)brk_len);
    if (brk_region == (void *)-1)
        DIE("sbrk");
    fill_pattern(brk_region, brk_len, 77);
    void *brk_before = sbrk(0);
    char heap_perms[8];
    snprintf(heap_perms, sizeof heap_perms, "%s", vma_perms(small[1]));
    char line[4096];
    int heap_labelled = maps_line(brk_region, line, sizeof line) && strstr(line, "[heap]") != NULL;
    info("brk", "%p", brk_before);
    info("heap_labelled", "%d", heap_labelled);

    ready();
    wait_go();

    void *brk_after = sbrk(0);
    CHECK(brk_after == brk_before, "sbrk(0) changed: %p -> %p", brk_before, brk_after);
    long bad;
    CHECK((bad = check_pattern(brk_region, brk_len, 77)) < 0, "sbrk region differs at word %ld", bad);
    for (int i = 0; i < NSMALL; i++) {
        if (!small[i])
            continue;
        if ((bad = check_pattern(small[i], small_len[i], 1000 + i)) >= 0) {
            CHECK(0, "small chunk %d (%zu bytes at %p) differs at word %ld", i, small_len[i], small[i], bad);
            break;
        }
    }
    for (int i = 0; i < 4; i++)
        CHECK((bad = check_pattern(large[i], large_len[i], 50 + i)) < 0,
              "large chunk %d (%zu bytes at %p) differs at word %ld", i, large_len[i], large[i], bad);
    CHECK(strcmp(vma_perms(small[1]), heap_perms) == 0, "heap perms %s -> %s", heap_perms, vma_perms(small[1]));
    if (heap_labelled) {
        CHECK(maps_line(brk_region, line, sizeof line) && strstr(line, "[heap]") != NULL,
              "brk area no longer labelled [heap] (mm start_brk/brk not restored): %s", line);
    }

    /* the allocator still works: more brk growth, reuse of holes, free all */
    void *more[500];
    for (int i = 0; i < 500; i++) {
        more[i] = malloc(64 + i * 8);
        CHECK(more[i] != NULL, "malloc after restore failed");
        if (more[i])
            memset(more[i], 0xab, 64 + i * 8);
    }
    void *cur = sbrk(0);
    void *grown = sbrk(1 << 20);
    CHECK(grown != (void *)-1, "sbrk growth after restore failed: %s", strerror(errno));
    if (grown != (void *)-1) {
        CHECK(grown == cur, "sbrk growth started at %p, expected %p", grown, cur);
        memset(grown, 0x5a, 1 << 20);
        sbrk(-(1 << 20));
    }
    for (int i = 0; i < 500; i++)
        free(more[i]);
    for (int i = 0; i < NSMALL; i++)
        free(small[i]);
    for (int i = 0; i < 4; i++)
        free(large[i]);
    return finish();
}
