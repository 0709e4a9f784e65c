/*
 * mem_hugetlb: hugetlb memory of every kind, in 2 MiB pages (the harness reserves the
 * pool), held by a parent and a child forked after setup:
 *   priv   MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, 4 huge pages: page 0 filled, page 2
 *          with two 4 KiB patterns, pages 1 and 3 never touched
 *   shan   MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB, 2 huge pages: page 0 filled
 *   sysv   shmget(SHM_HUGETLB|SHM_HUGE_2MB) of 2 MiB, 64 KiB written, IPC_RMID'ed
 *          while attached (so restore must recreate it)
 *   mfd    memfd_create(MFD_HUGETLB|MFD_HUGE_2MB) of 4 MiB, mapped shared, 8 KiB
 *          written at 2 MiB + 4 KiB; the fd stays open
 *   (arg "1g") big: MAP_PRIVATE|MAP_HUGETLB|MAP_HUGE_1GB, one 1 GiB page with 4 KiB
 *          written at its start and end (the parent's only: the child unmaps it)
 * After restore both processes check: contents, each region's KernelPageSize in
 * /proc/self/smaps, the never-touched private huge pages are still not there
 * (mincore), the memfd's size. Then the child writes a marker into each shared region
 * (untouched parts), the parent waits for all three and answers with its own, which
 * the child waits for: the three objects are still shared between the two.
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << 26)
#endif
#ifndef SHM_HUGE_2MB
#define SHM_HUGE_2MB (21 << 26)
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif

#define H (2UL << 20)
#define G (1UL << 30)
#define PAGE 4096UL
#define CHILD_MARK 0xc41dc41dc41dULL
#define PARENT_MARK 0x9a7e9a7e9a7eULL

static uint8_t *priv, *shan, *sysv, *mfdmap, *big;
static int mfd, with_big;

/* KernelPageSize (bytes) of the VMA holding addr, 0 if not found. */
static unsigned long page_size_of(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[512];
    int in = 0;
    unsigned long got = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)addr >= s && (uintptr_t)addr < e;
            continue;
        }
        unsigned long kb;
        if (in && sscanf(line, "KernelPageSize: %lu kB", &kb) == 1) {
            got = kb * 1024;
            break;
        }
    }
    fclose(f);
    return got;
}

static void check_size(const char *what, const void *addr, unsigned long want)
{
    unsigned long got = page_size_of(addr);
    CHECK(got == want, "pid %d: %s: KernelPageSize %lu, want %lu", (int)getpid(), what, got, want);
}

static int resident(const void *addr)
{
    unsigned char v = 0;
    if (mincore((void *)addr, PAGE, &v))
        return -1;
    return v & 1;
}

static void check_pat(const char *what, const uint8_t *p, size_t len, uint64_t seed)
{
    long bad = check_pattern(p, len, seed);
    CHECK(bad < 0, "pid %d: %s: content differs at byte %ld", (int)getpid(), what, bad);
}

static void check_all(void)
{
    check_pat("private page 0", priv, H, 1);
    check_pat("private page 2, first 4 KiB", priv + 2 * H, PAGE, 2);
    check_pat("private page 2, 4 KiB at 1 MiB", priv + 2 * H + (1 << 20), PAGE, 22);
    for (int k = 1; k < 3; k++)
        CHECK(*(volatile uint64_t *)(priv + 2 * H + k * PAGE) == 0, "private page 2: 4 KiB piece %d not zero", k);
    CHECK(resident(priv + H) == 0 && resident(priv + 3 * H) == 0, "pid %d: never-touched private huge pages are present (%d %d)",
          (int)getpid(), resident(priv + H), resident(priv + 3 * H));
    check_pat("shared anon page 0", shan, H, 3);
    check_pat("SysV segment", sysv, 64 << 10, 4);
    check_pat("memfd", mfdmap + H + PAGE, 2 * PAGE, 5);
    check_size("private", priv, H);
    check_size("shared anon", shan, H);
    check_size("SysV segment", sysv, H);
    check_size("memfd", mfdmap, H);
    struct stat st;
    CHECK(fstat(mfd, &st) == 0 && st.st_size == (off_t)(2 * H), "memfd size %lld", (long long)st.st_size);
    if (with_big) {
        check_pat("1 GiB page start", big, PAGE, 6);
        check_pat("1 GiB page end", big + G - PAGE, PAGE, 7);
        check_size("1 GiB private", big, G);
    }
}

static volatile uint64_t *mark(uint8_t *base, int k)
{
    return (volatile uint64_t *)base + k;
}

/* The three shared places where markers go: parts nobody wrote before. */
static uint8_t *spot(int i)
{
    return i == 0 ? shan + H : i == 1 ? sysv + (1 << 20) : mfdmap;
}

static int wait_marks(int k, uint64_t want)
{
    double t0 = now_mono();
    for (;;) {
        int n = 0;
        for (int i = 0; i < 3; i++)
            n += *mark(spot(i), k) == want;
        if (n == 3)
            return 1;
        if (now_mono() - t0 > 10)
            return 0;
        sleep_ms(5);
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    with_big = argc > 2 && !strcmp(argv[2], "1g");
    priv = mmap(NULL, 4 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (priv == MAP_FAILED)
        DIE("mmap private hugetlb");
    fill_pattern(priv, H, 1);
    fill_pattern(priv + 2 * H, PAGE, 2);
    fill_pattern(priv + 2 * H + (1 << 20), PAGE, 22);
    shan = mmap(NULL, 2 * H, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (shan == MAP_FAILED)
        DIE("mmap shared hugetlb");
    fill_pattern(shan, H, 3);
    int id = shmget(IPC_PRIVATE, H, IPC_CREAT | SHM_HUGETLB | SHM_HUGE_2MB | 0600);
    if (id < 0)
        DIE("shmget SHM_HUGETLB");
    sysv = shmat(id, NULL, 0);
    if (sysv == (void *)-1)
        DIE("shmat");
    if (shmctl(id, IPC_RMID, NULL))
        DIE("IPC_RMID");
    fill_pattern(sysv, 64 << 10, 4);
    mfd = memfd_create("huge", MFD_HUGETLB | MFD_HUGE_2MB);
    if (mfd < 0)
        DIE("memfd_create MFD_HUGETLB");
    if (ftruncate(mfd, 2 * H))
        DIE("ftruncate memfd");
    mfdmap = mmap(NULL, 2 * H, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (mfdmap == MAP_FAILED)
        DIE("mmap memfd");
    fill_pattern(mfdmap + H + PAGE, 2 * PAGE, 5);
    if (with_big) {
        big = mmap(NULL, G, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_1GB, -1, 0);
        if (big == MAP_FAILED)
            DIE("mmap 1 GiB hugetlb");
        fill_pattern(big, PAGE, 6);
        fill_pattern(big + G - PAGE, PAGE, 7);
    }
    pid_t kid = fork();
    if (kid < 0)
        DIE("fork");
    if (kid == 0) {
        /* the 1 GiB page stays the parent's alone (a second one may not exist) */
        if (with_big && munmap(big, G))
            DIE("munmap 1 GiB page in the child");
        with_big = 0;
        wait_go();
        check_all();
        for (int i = 0; i < 3; i++)
            *mark(spot(i), 0) = CHILD_MARK;
        CHECK(wait_marks(1, PARENT_MARK), "child: the parent's markers never showed in the shared regions");
        _exit(g_failed ? 1 : 0);
    }
    info("child", "%d", (int)kid);
    info("priv", "%p", (void *)priv);
    ready();
    wait_go();
    check_all();
    CHECK(wait_marks(0, CHILD_MARK), "parent: the child's markers never showed in the shared regions (%llx %llx %llx)",
          (unsigned long long)*mark(spot(0), 0), (unsigned long long)*mark(spot(1), 0), (unsigned long long)*mark(spot(2), 0));
    for (int i = 0; i < 3; i++)
        *mark(spot(i), 1) = PARENT_MARK;
    int st = 0;
    CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed: status %#x", st);
    return finish();
}
