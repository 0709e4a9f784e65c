/*
 * mem_shared_tree: one 64 MiB MAP_SHARED|MAP_ANONYMOUS region mapped by 4 processes
 * (the parent and 3 children forked after it filled the region). Before READY each
 * process writes a marker page of its own (page 10+k). After restore every process
 * checks all 64 MiB (pattern + the 4 markers), then writes a second marker (page 20+k)
 * and bumps a counter in the region; once the counter reaches 4 each checks that it sees
 * the other three's new markers: the region is still one object shared by the four.
 * The image should store its pages once (~64 MiB), not once per process.
 */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define SIZE (64UL << 20)
#define PAGE 4096UL
#define NPAGES (SIZE / PAGE)
#define PROCS 4

static uint8_t *mem;

static int marker_page(uint64_t p, int *who, int *round)
{
    if (p >= 10 && p < 10 + PROCS) {
        *who = (int)(p - 10), *round = 1;
        return 1;
    }
    if (p >= 20 && p < 20 + PROCS) {
        *who = (int)(p - 20), *round = 2;
        return 1;
    }
    return 0;
}

static uint64_t seed_of(uint64_t p, int who, int round)
{
    return round ? 0xabc000ULL + (uint64_t)who * 16 + (uint64_t)round : 0x1234ULL + p;
}

static void check_all(int me, int rounds)
{
    uint64_t bad = 0, first = 0;
    for (uint64_t p = 0; p < NPAGES; p++) {
        if (p == 0)
            continue; /* the counter page */
        int who = 0, round = 0;
        uint64_t seed = seed_of(p, 0, 0);
        if (marker_page(p, &who, &round) && round <= rounds)
            seed = seed_of(p, who, round);
        if (check_pattern(mem + p * PAGE, PAGE, seed) >= 0) {
            if (!bad++)
                first = p;
        }
    }
    CHECK(bad == 0, "process %d (pid %d): %llu pages differ (rounds %d), first %llu", me, (int)getpid(),
          (unsigned long long)bad, rounds, (unsigned long long)first);
}

static void run(int me)
{
    wait_go();
    check_all(me, 1);
    fill_pattern(mem + (20 + me) * PAGE, PAGE, seed_of(20 + me, me, 2));
    __atomic_add_fetch((int *)mem, 1, __ATOMIC_SEQ_CST);
    double t0 = now_mono();
    while (__atomic_load_n((int *)mem, __ATOMIC_SEQ_CST) < PROCS && now_mono() - t0 < 10)
        sleep_ms(5);
    CHECK(__atomic_load_n((int *)mem, __ATOMIC_SEQ_CST) == PROCS, "process %d: counter %d, want %d (not shared?)", me,
          *(int *)mem, PROCS);
    check_all(me, 2);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        DIE("mmap");
    for (uint64_t p = 1; p < NPAGES; p++)
        fill_pattern(mem + p * PAGE, PAGE, seed_of(p, 0, 0));
    *(int *)mem = 0;
    int sync[2];
    if (pipe(sync))
        DIE("pipe");
    pid_t kids[PROCS - 1];
    for (int k = 1; k < PROCS; k++) {
        kids[k - 1] = fork();
        if (kids[k - 1] < 0)
            DIE("fork");
        if (kids[k - 1] == 0) {
            close(sync[0]);
            fill_pattern(mem + (10 + k) * PAGE, PAGE, seed_of(10 + k, k, 1));
            if (write(sync[1], "k", 1) != 1)
                _exit(2);
            close(sync[1]);
            run(k);
            _exit(g_failed ? 1 : 0);
        }
    }
    close(sync[1]);
    fill_pattern(mem + 10 * PAGE, PAGE, seed_of(10, 0, 1));
    char c;
    for (int k = 1; k < PROCS; k++)
        if (read(sync[0], &c, 1) != 1)
            DIE("child did not write its marker");
    close(sync[0]);
    for (int k = 0; k < PROCS - 1; k++)
        info("child", "%d", (int)kids[k]);
    info("addr", "%p", (void *)mem);
    ready();
    run(0);
    for (int k = 0; k < PROCS - 1; k++) {
        int st = 0;
        CHECK(waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child %d failed: status %#x", (int)kids[k], st);
    }
    return finish();
}
