/*
 * vdso: glibc caches vDSO function pointers at startup, so the vDSO must be
 * at the same address after restore.  Checks: getauxval(AT_SYSINFO_EHDR)
 * unchanged and equal to the start of [vdso] in maps; the [vvar*]/[vdso]
 * maps lines unchanged; clock_gettime (vDSO) agrees with the raw syscall
 * for MONOTONIC, REALTIME and BOOTTIME; CLOCK_MONOTONIC did not go
 * backwards; gettimeofday/time work; other auxv entries (AT_PHDR, AT_ENTRY,
 * AT_BASE, AT_RANDOM bytes) unchanged; /proc/self/auxv (kernel's saved
 * copy, PR_SET_MM_AUXV) unchanged.
 */
#include "common.h"
#include <sys/auxv.h>
#include <sys/time.h>

static char vlines_before[4096], vlines_after[4096];

static void vdso_lines(char *out, size_t cap)
{
    static char buf[1 << 20];
    out[0] = 0;
    if (read_file("/proc/self/maps", buf, sizeof buf) < 0)
        return;
    char *line = buf;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        if (strstr(line, "[vdso]") || strstr(line, "[vvar")) {
            strncat(out, line, cap - strlen(out) - 2);
            strcat(out, "|");
        }
        if (!nl)
            break;
        line = nl + 1;
    }
}

static double ts2d(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void compare_clock(clockid_t id, const char *name)
{
    struct timespec a, b, c;
    int r1 = clock_gettime(id, &a);
    int r2 = (int)syscall(SYS_clock_gettime, id, &b);
    int r3 = clock_gettime(id, &c);
    CHECK(r1 == 0 && r2 == 0 && r3 == 0, "clock_gettime(%s) failed", name);
    CHECK(ts2d(a) <= ts2d(b) + 1e-6 && ts2d(b) <= ts2d(c) + 1e-6 && ts2d(c) - ts2d(a) < 0.5,
          "vDSO clock_gettime(%s) disagrees with the syscall: %.6f %.6f %.6f", name, ts2d(a), ts2d(b), ts2d(c));
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    unsigned long ehdr = getauxval(AT_SYSINFO_EHDR);
    unsigned long phdr = getauxval(AT_PHDR), entry = getauxval(AT_ENTRY), base = getauxval(AT_BASE);
    unsigned long rnd = getauxval(AT_RANDOM);
    unsigned char rnd_bytes[16];
    memcpy(rnd_bytes, (void *)rnd, 16);
    static char auxv_before[4096], auxv_after[4096];
    long auxv_len = read_file("/proc/self/auxv", auxv_before, sizeof auxv_before);
    /* use the vDSO before the dump so glibc has everything cached */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    info("vdso", "%#lx", ehdr);
    vdso_lines(vlines_before, sizeof vlines_before);
    if (!ehdr)
        DIE("no AT_SYSINFO_EHDR");
    ready();
    wait_go();

    CHECK(getauxval(AT_SYSINFO_EHDR) == ehdr, "AT_SYSINFO_EHDR changed: %#lx -> %#lx", ehdr,
          getauxval(AT_SYSINFO_EHDR));
    char line[4096];
    unsigned long lo = 0;
    CHECK(maps_line((void *)ehdr, line, sizeof line) && strstr(line, "[vdso]") && sscanf(line, "%lx", &lo) == 1 &&
              lo == ehdr,
          "[vdso] is not mapped at AT_SYSINFO_EHDR %#lx: '%s'", ehdr, line);
    vdso_lines(vlines_after, sizeof vlines_after);
    CHECK(strcmp(vlines_before, vlines_after) == 0, "vdso/vvar maps changed: '%s' -> '%s'", vlines_before,
          vlines_after);

    compare_clock(CLOCK_MONOTONIC, "MONOTONIC");
    compare_clock(CLOCK_REALTIME, "REALTIME");
    compare_clock(CLOCK_BOOTTIME, "BOOTTIME");
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(ts2d(t1) >= ts2d(t0), "CLOCK_MONOTONIC went backwards: %.6f -> %.6f", ts2d(t0), ts2d(t1));
    struct timeval tv2;
    CHECK(gettimeofday(&tv2, NULL) == 0 && tv2.tv_sec >= tv.tv_sec, "gettimeofday broken");
    time_t tt = time(NULL);
    CHECK(tt >= tv.tv_sec && tt - tv2.tv_sec <= 2, "time() = %ld, gettimeofday = %ld", (long)tt, (long)tv2.tv_sec);

    CHECK(getauxval(AT_PHDR) == phdr && getauxval(AT_ENTRY) == entry && getauxval(AT_BASE) == base,
          "auxv entries changed");
    CHECK(getauxval(AT_RANDOM) == rnd && memcmp((void *)rnd, rnd_bytes, 16) == 0, "AT_RANDOM changed");
    long auxv_len2 = read_file("/proc/self/auxv", auxv_after, sizeof auxv_after);
    CHECK(auxv_len > 0 && auxv_len2 == auxv_len && memcmp(auxv_before, auxv_after, auxv_len) == 0,
          "/proc/self/auxv changed (mm saved_auxv not restored): %ld -> %ld bytes", auxv_len, auxv_len2);
    return finish();
}
