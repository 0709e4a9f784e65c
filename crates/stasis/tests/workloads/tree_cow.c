/*
 * tree_cow: private memory shared copy-on-write after fork.
 * The parent mallocs 64 MiB and fills every page with a pattern of its page number,
 * then forks 4 children. Each child rewrites a few pages of its copy: page 3 (every
 * child, each with its own content) and 8 pages of its own (2000*k + 3*i); the parent
 * rewrites page 5 and 4 pages of its own after the fork. Everything else is still one
 * physical page per page, shared by the 5 processes (the image should store it once).
 * After restore every process checks all of its 64 MiB: its own rewritten pages, and
 * the original pattern everywhere else (including the pages the others rewrote); then
 * each child rewrites page 7 (shared by all five until then) and the parent, once the
 * children exited, checks all of its memory again: copy-on-write still separates them.
 */
#include "common.h"
#include <sys/wait.h>

#define SIZE (64UL << 20)
#define PAGE 4096UL
#define NPAGES (SIZE / PAGE)
#define WORDS (PAGE / 8)
#define KIDS 4

static uint64_t *mem;

static uint64_t base_word(uint64_t p, uint64_t w) { return (p * 0x9e3779b97f4a7c15ULL) ^ (w << 3) ^ 0x5a5a0000; }
static uint64_t mod_word(uint64_t p, uint64_t w, int who) { return ~base_word(p, w) ^ ((uint64_t)(who + 1) << 56); }

/* Whether process `who` (0 = parent, 1..KIDS = children) rewrote page p. */
static int rewrote(int who, uint64_t p)
{
    if (who == 0)
        return p == 5 || (p >= 9000 && p < 9004);
    if (p == 3)
        return 1;
    return p >= 2000UL * who && p < 2000UL * who + 24 && (p - 2000UL * who) % 3 == 0;
}

static void rewrite(int who)
{
    for (uint64_t p = 0; p < NPAGES; p++)
        if (rewrote(who, p))
            for (uint64_t w = 0; w < WORDS; w++)
                mem[p * WORDS + w] = mod_word(p, w, who);
}

static void verify(int who)
{
    uint64_t bad = 0, first = 0;
    for (uint64_t p = 0; p < NPAGES; p++) {
        int mine = rewrote(who, p);
        for (uint64_t w = 0; w < WORDS; w++) {
            uint64_t want = mine ? mod_word(p, w, who) : base_word(p, w);
            if (mem[p * WORDS + w] != want) {
                if (!bad++)
                    first = p;
                break;
            }
        }
    }
    CHECK(bad == 0, "process %d (pid %d): %llu of %lu pages differ, first page %llu", who, (int)getpid(),
          (unsigned long long)bad, NPAGES, (unsigned long long)first);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    mem = malloc(SIZE);
    if (!mem)
        DIE("malloc");
    for (uint64_t p = 0; p < NPAGES; p++)
        for (uint64_t w = 0; w < WORDS; w++)
            mem[p * WORDS + w] = base_word(p, w);
    int sync[2];
    if (pipe(sync))
        DIE("pipe");
    pid_t kids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork();
        if (kids[k] < 0)
            DIE("fork");
        if (kids[k] == 0) {
            close(sync[0]);
            rewrite(k + 1);
            if (write(sync[1], "k", 1) != 1)
                _exit(2);
            close(sync[1]);
            wait_go();
            verify(k + 1);
            /* copy-on-write still works: these writes stay in this child */
            for (uint64_t w = 0; w < WORDS; w++)
                mem[7 * WORDS + w] = mod_word(7, w, k + 1 + KIDS);
            for (uint64_t w = 0; w < WORDS; w++)
                CHECK(mem[7 * WORDS + w] == mod_word(7, w, k + 1 + KIDS), "child %d: page 7 not written", k + 1);
            _exit(g_failed ? 1 : 0);
        }
    }
    close(sync[1]);
    rewrite(0);
    char c;
    for (int k = 0; k < KIDS; k++)
        if (read(sync[0], &c, 1) != 1)
            DIE("child did not rewrite its pages");
    close(sync[0]);
    for (int k = 0; k < KIDS; k++)
        info("child", "%d", (int)kids[k]);
    ready();
    wait_go();
    verify(0);
    for (int k = 0; k < KIDS; k++) {
        int st = 0;
        CHECK(waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child %d failed: status %#x", (int)kids[k], st);
    }
    /* the children's writes to page 7 (still shared before them) did not reach us */
    verify(0);
    return finish();
}
