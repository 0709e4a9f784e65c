/*
 * mem_madvise: per-VMA madvise/mlock state that shows in
 * /proc/self/smaps VmFlags: dc (MADV_DONTFORK), wf (MADV_WIPEONFORK),
 * hg (MADV_HUGEPAGE), nh (MADV_NOHUGEPAGE), dd (MADV_DONTDUMP),
 * sr (MADV_SEQUENTIAL), rr (MADV_RANDOM), lo (mlock).  After restore each
 * region has its flag again and keeps its content (a checkpoint is not a
 * fork nor a core dump: dc/wf/dd regions must keep their data).
 * A flag not visible before the dump (kernel without the feature) is skipped.
 */
#include "common.h"
#include <sys/mman.h>

#define LEN (4UL << 20)
#define ALIGN (2UL << 20)

struct region {
    const char *flag;
    int advice; /* -1: mlock */
    char *p;
    int supported;
};

static struct region regs[] = {
    { "dc", MADV_DONTFORK, 0, 0 },   { "wf", MADV_WIPEONFORK, 0, 0 }, { "hg", MADV_HUGEPAGE, 0, 0 },
    { "nh", MADV_NOHUGEPAGE, 0, 0 }, { "dd", MADV_DONTDUMP, 0, 0 },   { "sr", MADV_SEQUENTIAL, 0, 0 },
    { "rr", MADV_RANDOM, 0, 0 },     { "lo", -1, 0, 0 },
};
#define NREG (int)(sizeof regs / sizeof regs[0])

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    for (int i = 0; i < NREG; i++) {
        /* separate, 2 MiB aligned mappings with an unmapped gap around each */
        char *raw = mmap(NULL, LEN + 2 * ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            DIE("mmap");
        char *p = (char *)(((uintptr_t)raw + ALIGN - 1) & ~(ALIGN - 1));
        size_t len = regs[i].advice == -1 ? 64 * 1024 : LEN;
        if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p)
            DIE("mmap fixed");
        munmap(raw, p - raw);
        munmap(p + len, raw + LEN + 2 * ALIGN - (p + len));
        if (regs[i].advice == -1) {
            if (mlock(p, len))
                DIE("mlock");
        } else if (madvise(p, len, regs[i].advice)) {
            info("madvise_failed", "%s:%s", regs[i].flag, strerror(errno));
        }
        fill_pattern(p, len, 300 + i);
        regs[i].p = p;
        regs[i].supported = has_vmflag(vma_flags(p), regs[i].flag);
        info(regs[i].flag, "%s", regs[i].supported ? "yes" : "unsupported");
    }
    ready();
    wait_go();
    for (int i = 0; i < NREG; i++) {
        size_t len = regs[i].advice == -1 ? 64 * 1024 : LEN;
        long bad = check_pattern(regs[i].p, len, 300 + i);
        CHECK(bad < 0, "region with '%s' differs at word %ld", regs[i].flag, bad);
        if (regs[i].supported) {
            const char *f = vma_flags(regs[i].p);
            CHECK(has_vmflag(f, regs[i].flag), "VmFlags of the '%s' region lost '%s': %s", regs[i].flag,
                  regs[i].flag, f);
        }
    }
    return finish();
}
