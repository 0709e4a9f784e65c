/*
 * rlimit_below: resource limits set below what the process uses already (the kernel
 * allows it; only later growth fails): a 16 MiB heap, then RLIMIT_DATA 1 MiB and
 * RLIMIT_AS half of its address space (soft; the hard limit above: raising a hard limit
 * needs CAP_SYS_RESOURCE, which a restorer may lack). The dump must still find room
 * for its own work, the --leave-running original keeps its limits, and the restored
 * process has its memory and the same limits.
 */
#include "common.h"
#include <sys/resource.h>

#define HEAP (16 << 20)

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char *heap = malloc(HEAP);
    if (!heap)
        DIE("malloc");
    fill_pattern(heap, HEAP, 77);
    char st[8192] = "";
    read_file("/proc/self/status", st, sizeof st);
    const char *vm = strstr(st, "VmSize:");
    if (!vm)
        DIE("VmSize");
    rlim_t as = (rlim_t)strtoul(vm + 7, NULL, 10) * 1024 / 2;
    struct rlimit data = { 1 << 20, 1 << 20 }, asl = { as, as * 4 };
    if (setrlimit(RLIMIT_DATA, &data) || setrlimit(RLIMIT_AS, &asl))
        DIE("setrlimit");
    ready();
    wait_go();
    struct rlimit r;
    getrlimit(RLIMIT_DATA, &r);
    CHECK(r.rlim_cur == data.rlim_cur && r.rlim_max == data.rlim_max, "RLIMIT_DATA %lu/%lu", (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
    getrlimit(RLIMIT_AS, &r);
    CHECK(r.rlim_cur == as && r.rlim_max == as * 4, "RLIMIT_AS %lu/%lu, want %lu", (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max, (unsigned long)as);
    long bad = check_pattern(heap, HEAP, 77);
    CHECK(bad < 0, "heap differs at %ld", bad);
    return finish();
}
