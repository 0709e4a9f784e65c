/*
 * sched_prctl: scheduling and per-thread flags only the process itself can read.
 *   main:   SCHED_BATCH with SCHED_RESET_ON_FORK (sched_setattr), nice 7; its own
 *           session (setsid) with autogroup nice 5; coredump_filter 0x7b;
 *   thread D: SCHED_DEADLINE, runtime 2 ms, deadline 50 ms, period 100 ms;
 *   thread F: rdtsc faults (PR_SET_TSC PR_TSC_SIGSEGV), machine-check kill early
 *           (PR_MCE_KILL), cpuid faults (ARCH_SET_CPUID 0) when the CPU can.
 * After restore each reads its own back; main checks it kept the defaults of thread F's
 * flags (they are per thread).
 */
#include "common.h"
#include <asm/prctl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>

struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t prio;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
};
#define SCHED_DL 6
#define FLAG_RESET_ON_FORK 1

static volatile int started, done, cpuid_ok;

static int getattr(struct attr *a)
{
    memset(a, 0, sizeof *a);
    return (int)syscall(SYS_sched_getattr, 0, a, sizeof *a, 0);
}

static void *thread_d(void *arg)
{
    (void)arg;
    struct attr a = { .size = sizeof a, .policy = SCHED_DL, .runtime = 2000000, .deadline = 50000000, .period = 100000000 };
    if (syscall(SYS_sched_setattr, 0, &a, 0))
        DIE("SCHED_DEADLINE");
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    wait_go();
    getattr(&a);
    CHECK(a.policy == SCHED_DL && a.runtime == 2000000 && a.deadline == 50000000 && a.period == 100000000,
          "thread D: policy %u runtime %llu deadline %llu period %llu", a.policy, (unsigned long long)a.runtime,
          (unsigned long long)a.deadline, (unsigned long long)a.period);
    __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
}

static void *thread_f(void *arg)
{
    (void)arg;
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) || prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
        DIE("PR_SET_TSC / PR_MCE_KILL");
    cpuid_ok = syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0;
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    wait_go(); /* nanosleep only: clock_gettime's vDSO would run rdtsc */
    int tsc = -1;
    prctl(PR_GET_TSC, &tsc, 0, 0, 0);
    CHECK(tsc == PR_TSC_SIGSEGV, "thread F: PR_GET_TSC %d", tsc);
    int mce = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
    CHECK(mce == PR_MCE_KILL_EARLY, "thread F: PR_MCE_KILL_GET %d", mce);
    if (cpuid_ok) {
        long c = syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0);
        CHECK(c == 0, "thread F: cpuid runs again (ARCH_GET_CPUID %ld)", c);
    }
    __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
}

static int read_int(const char *path, int base, const char *after)
{
    char b[256] = "";
    if (read_file(path, b, sizeof b) <= 0)
        return -1000;
    const char *p = after ? strstr(b, after) : b;
    return p ? (int)strtol(p + (after ? strlen(after) : 0), NULL, base) : -1000;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (setsid() < 0)
        DIE("setsid");
    int fd = open("/proc/self/autogroup", O_WRONLY);
    if (fd < 0 || write(fd, "5", 1) != 1)
        DIE("autogroup nice");
    close(fd);
    fd = open("/proc/self/coredump_filter", O_WRONLY);
    if (fd < 0 || write(fd, "0x7b", 4) != 4)
        DIE("coredump_filter");
    close(fd);
    struct attr a = { .size = sizeof a, .policy = SCHED_BATCH, .flags = FLAG_RESET_ON_FORK, .nice = 7 };
    if (syscall(SYS_sched_setattr, 0, &a, 0))
        DIE("sched_setattr");
    pthread_t d, f;
    pthread_create(&d, NULL, thread_d, NULL);
    pthread_create(&f, NULL, thread_f, NULL);
    while (started < 2)
        sleep_ms(1);
    info("cpuid_faulting", "%d", cpuid_ok);
    ready();
    wait_go();
    while (done < 2)
        sleep_ms(1);
    getattr(&a);
    CHECK(a.policy == SCHED_BATCH && a.flags & FLAG_RESET_ON_FORK && a.nice == 7, "main: policy %u flags %#llx nice %d",
          a.policy, (unsigned long long)a.flags, a.nice);
    CHECK(getpriority(PRIO_PROCESS, 0) == 7, "main: getpriority %d", getpriority(PRIO_PROCESS, 0));
    CHECK(sched_getscheduler(0) == (SCHED_BATCH | SCHED_RESET_ON_FORK), "main: sched_getscheduler %#x", sched_getscheduler(0));
    int cf = read_int("/proc/self/coredump_filter", 16, NULL);
    CHECK(cf == 0x7b, "coredump_filter %#x", cf);
    int ag = read_int("/proc/self/autogroup", 10, " nice ");
    CHECK(ag == 5, "autogroup nice %d", ag);
    int tsc = -1;
    prctl(PR_GET_TSC, &tsc, 0, 0, 0);
    CHECK(tsc == PR_TSC_ENABLE, "main: PR_GET_TSC %d (thread F's?)", tsc);
    CHECK(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0) == PR_MCE_KILL_DEFAULT, "main: PR_MCE_KILL_GET %d", prctl(PR_MCE_KILL_GET, 0, 0, 0, 0));
    CHECK(syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0) == 1, "main: cpuid faults");
    return finish();
}
