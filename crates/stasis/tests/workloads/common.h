/*
 * Shared helpers for the stasis integration-test workloads.
 *
 * Protocol (see tests/common/mod.rs):
 *   argv[1]       absolute path of the work dir (the harness creates it)
 *   stdout        a regular file (never a tty/pipe); every line is flushed
 *   "INFO k=v"    facts the harness may want (tids, fds, addresses)
 *   "READY"       printed exactly once, when setup is done; the harness
 *                 dumps after it (and after the workload sits in the
 *                 syscall under test, if the test waits for that)
 *   WORKDIR/go    created by the harness after restore; wait_go() polls it
 *   "FAIL: why"   one line per failed check after restore
 *   "PASS"        printed when every check held; exit status 0 (1 on FAIL)
 *
 * Every check is also satisfied when the workload runs without any
 * checkpoint/restore in between, which is how the workloads themselves are
 * validated (STASIS_TEST_DIRECT=1).
 */
#ifndef STASIS_WORKLOAD_COMMON_H
#define STASIS_WORKLOAD_COMMON_H
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

static const char *g_dir;
static int g_failed;

static void wl_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wl_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" (%s:%d)\n", file, line);
    fflush(stdout);
    __atomic_add_fetch(&g_failed, 1, __ATOMIC_SEQ_CST);
}

/* Record a failed check; execution continues so all failures are listed. */
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond))                                       \
            fail_at(__FILE__, __LINE__, __VA_ARGS__);      \
    } while (0)

/* Setup failure (before READY): the harness reports the output. */
#define DIE(what)                                                          \
    do {                                                                   \
        printf("FAIL: setup: %s: %s (%s:%d)\n", (what), strerror(errno),   \
               __FILE__, __LINE__);                                        \
        fflush(stdout);                                                    \
        exit(1);                                                           \
    } while (0)

static void info(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void info(const char *key, const char *fmt, ...)
{
    va_list ap;
    printf("INFO %s=", key);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void wl_init(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] != '/') {
        fprintf(stderr, "usage: %s /ABSOLUTE/WORKDIR [args]\n", argv[0]);
        exit(2);
    }
    g_dir = argv[1];
}

static void ready(void)
{
    printf("READY\n");
    fflush(stdout);
}

/* "WORKDIR/name" in a static rotating buffer (8 slots). */
static const char *wl_path(const char *name)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, 4096, "%s/%s", g_dir, name);
    return b;
}

/* From here on the verdict goes to WORKDIR/result instead of stdout (whose offset the
 * restore must keep as it was at dump time). -1 (with a FAIL line) if it cannot. */
static int stdout_to_result(void)
{
    int fd = open(wl_path("result"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, 1) < 0) {
        printf("FAIL: open result: %s\n", strerror(errno));
        fflush(stdout);
        return -1;
    }
    close(fd);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Poll for WORKDIR/go every 10 ms. Gives up (FAIL, exit 3) after ~300 s so
 * that a workload orphaned by a crashed harness does not live forever. */
static void wait_go(void)
{
    const char *p = wl_path("go");
    for (long i = 0; i < 30000; i++) {
        if (access(p, F_OK) == 0)
            return;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    printf("FAIL: timed out waiting for %s\n", p);
    fflush(stdout);
    exit(3);
}

static int finish(void)
{
    if (!g_failed)
        printf("PASS\n");
    fflush(stdout);
    return g_failed ? 1 : 0;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static pid_t wl_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Deterministic pseudo-random pattern. */
static inline uint64_t pat64(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void fill_pattern(void *p, size_t len, uint64_t seed)
{
    uint64_t *q = p;
    for (size_t i = 0; i < len / 8; i++)
        q[i] = pat64(seed, i);
}

/* Returns the index of the first mismatching 8-byte word, or -1. */
static long check_pattern(const void *p, size_t len, uint64_t seed)
{
    const uint64_t *q = p;
    for (size_t i = 0; i < len / 8; i++)
        if (q[i] != pat64(seed, i))
            return (long)i;
    return -1;
}

/* Read a whole small file (e.g. from /proc) into a static buffer.
 * Returns length or -1. Uses no malloc. */
static long read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap)
            break;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    close(fd);
    return (long)n;
}

/* The /proc/self/maps line of the VMA containing addr, copied into out.
 * Returns 1 if found. */
static int maps_line(const void *addr, char *out, size_t cap)
{
    static char buf[1 << 20];
    if (read_file("/proc/self/maps", buf, sizeof buf) < 0)
        return 0;
    uintptr_t a = (uintptr_t)addr;
    char *line = buf;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) {
            snprintf(out, cap, "%s", line);
            return 1;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

/* Permission string ("rw-p") of the VMA containing addr, or "none". */
static const char *vma_perms(const void *addr)
{
    static char line[4096];
    static char perms[8];
    if (!maps_line(addr, line, sizeof line))
        return "none";
    char *sp = strchr(line, ' ');
    if (!sp)
        return "none";
    snprintf(perms, sizeof perms, "%.4s", sp + 1);
    return perms;
}

/* Start/end of the VMA containing addr. Returns 1 if found. */
static int vma_bounds(const void *addr, unsigned long *lo, unsigned long *hi)
{
    char line[4096];
    if (!maps_line(addr, line, sizeof line))
        return 0;
    return sscanf(line, "%lx-%lx", lo, hi) == 2;
}

/* "VmFlags:" value of the smaps entry of the VMA containing addr. */
static const char *vma_flags(const void *addr)
{
    static char buf[4 << 20];
    static char flags[512];
    if (read_file("/proc/self/smaps", buf, sizeof buf) < 0)
        return "";
    uintptr_t a = (uintptr_t)addr;
    int in = 0;
    char *line = buf;
    flags[0] = 0;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        unsigned long lo, hi;
        char c;
        if (sscanf(line, "%lx-%lx%c", &lo, &hi, &c) == 3 && c == ' ')
            in = (a >= lo && a < hi);
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, sizeof flags, "%s ", line + 8);
            return flags;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return flags;
}

/* Does the VmFlags string contain the two-letter flag f? */
static int has_vmflag(const char *flags, const char *f)
{
    char pat[8];
    snprintf(pat, sizeof pat, " %s ", f);
    char tmp[520];
    snprintf(tmp, sizeof tmp, " %s", flags);
    return strstr(tmp, pat) != NULL;
}

/* Number of entries in /proc/self/task; the tids go to out (if not NULL). */
static int task_list(pid_t *out, int cap)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        if (out && n < cap)
            out[n] = (pid_t)atoi(e->d_name);
        n++;
    }
    closedir(d);
    return n;
}


/* readlink of /proc/PID/ns/KIND into out ("?" if unreadable). */
static void ns_link(pid_t pid, const char *kind, char *out, size_t n)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/ns/%s", (int)pid, kind);
    memset(out, 0, n);
    if (readlink(p, out, n - 1) < 0)
        snprintf(out, n, "?");
}

/* Moves the calling process into cgroup directory `dir` (writes "0" to cgroup.procs). */
static int cg_join(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    int fd = open(p, O_WRONLY);
    if (fd < 0)
        return -1;
    int r = write(fd, "0", 1) == 1 ? 0 : -1;
    close(fd);
    return r;
}


/* Reads exactly n bytes from fd (a sync pipe); DIE on EOF or error. */
static void read_exact(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            DIE("sync");
        got += (size_t)r;
    }
}

#ifdef WL_SECCOMP /* for workloads that define WL_SECCOMP before including us */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/syscall.h>

/* Installs a seccomp filter (SECCOMP_SET_MODE_FILTER with `flags`) that makes syscall
 * `nr` fail with errno `err` and allows everything else. Returns what seccomp returned. */
static long seccomp_errno_filter(long nr, int err, unsigned flags)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = { .len = sizeof f / sizeof f[0], .filter = f };
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &p);
}
#endif

#ifdef WL_NET /* network helpers, for workloads that define WL_NET before including us */
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* Whether `lo` is up in the caller's network namespace (after bringing it up, with
 * `bring_up`): 1 up, 0 down, -1 on error. */
static int lo_is_up(int bring_up)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = { 0 };
    strcpy(ifr.ifr_name, "lo");
    int r = s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) ? -1 : 0;
    if (r == 0 && bring_up) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr) ? -1 : 0;
    }
    if (r == 0)
        r = (ifr.ifr_flags & IFF_UP) != 0;
    if (s >= 0)
        close(s);
    return r;
}
#endif

#endif
