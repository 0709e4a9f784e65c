/*
 * mem_lock_future: mlockall(MCL_CURRENT | MCL_FUTURE), with MCL_ONFAULT when argv
 * holds "onfault". MCL_FUTURE stays in the address space (mm->def_flags), which
 * nothing shows: after restore a mapping made only then must be locked too (VmFlags
 * "lo", plus "lf" with MCL_ONFAULT), as must the ones made before the dump. With
 * "result" the verdict goes to WORKDIR/result (for --leave-running).
 */
#include "common.h"
#include <sys/mman.h>

#define LEN (64 * 1024)

static char *locked_map(void)
{
    char *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        DIE("mmap");
    return p;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int onfault = 0, to_result = 0;
    for (int i = 2; i < argc; i++) {
        onfault |= strcmp(argv[i], "onfault") == 0;
        to_result |= strcmp(argv[i], "result") == 0;
    }
    if (mlockall(MCL_CURRENT | MCL_FUTURE | (onfault ? MCL_ONFAULT : 0)))
        DIE("mlockall");
    char *before = locked_map();
    fill_pattern(before, LEN, 7);
    CHECK(has_vmflag(vma_flags(before), "lo"), "before the dump a new mapping is not locked: %s", vma_flags(before));
    ready();
    wait_go();
    if (to_result && stdout_to_result())
        return 1;
    char *after = locked_map();
    const char *f = vma_flags(after);
    CHECK(has_vmflag(f, "lo"), "a mapping made after restore is not locked (MCL_FUTURE lost): %s", f);
    CHECK(has_vmflag(f, "lf") == onfault, "a mapping made after restore: 'lf' %s MCL_ONFAULT: %s",
          onfault ? "missing with" : "without", f);
    f = vma_flags(before);
    CHECK(has_vmflag(f, "lo"), "the mapping made before the dump is no longer locked: %s", f);
    CHECK(check_pattern(before, LEN, 7) < 0, "locked mapping content differs");
    munmap(after, LEN);
    return finish();
}
