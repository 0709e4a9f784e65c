/*
 * threads: 4 pthreads, each blocked differently at dump time:
 *   t0: futex wait (FUTEX_WAIT_PRIVATE)       t1: nanosleep loop (10 ms)
 *   t2: read() on a pipe                      t3: pthread_cond_wait
 * plus EXTRA idle threads (argv[2], default 0) blocked in futex wait.
 * Each thread set its name (pthread_setname_np), its own signal mask
 * (SIGUSR1 + SIGRTMIN+i), a __thread value and a stack pattern; t1 pinned
 * itself to one CPU.  After restore every thread checks gettid() unchanged,
 * its name (/proc/self/task/TID/comm), its mask, its TLS and stack; t1
 * checks its affinity and that sched_getcpu() (rseq) and getcpu agree with
 * it; main checks /proc/self/task has exactly the original TIDs, its own
 * mask/name/affinity, and joins every thread (needs clear_child_tid).
 */
#include "common.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>

#define NDET 4
#define MAXT 256

static int nextra;
static pid_t tids[MAXT];
static int ready_count;
static int futex_word;
static int pipefd[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cond_flag;
static int released;
static int pinned_cpu = -1;
static __thread long tls_val;

static void futex_wait_while_zero(int *w)
{
    while (__atomic_load_n(w, __ATOMIC_SEQ_CST) == 0)
        syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void expected_mask(int i, sigset_t *s)
{
    sigemptyset(s);
    sigaddset(s, SIGUSR1);
    sigaddset(s, SIGRTMIN + (i % 16));
}

static void *thr(void *arg)
{
    int i = (int)(intptr_t)arg;
    char name[16];
    snprintf(name, sizeof name, "stw-%d", i);
    pthread_setname_np(pthread_self(), name);
    sigset_t m;
    expected_mask(i, &m);
    pthread_sigmask(SIG_SETMASK, &m, NULL);
    tls_val = 1000 + i;
    uint64_t stack_pat[512];
    fill_pattern(stack_pat, sizeof stack_pat, 600 + i);
    if (i == 1) {
        cpu_set_t cs;
        CPU_ZERO(&cs);
        CPU_SET(pinned_cpu, &cs);
        if (sched_setaffinity(0, sizeof cs, &cs))
            DIE("sched_setaffinity");
    }
    tids[i] = wl_gettid();
    __atomic_add_fetch(&ready_count, 1, __ATOMIC_SEQ_CST);

    char c;
    switch (i) {
    case 1:
        /* nanosleep loop until main releases us (after its checks) */
        while (!__atomic_load_n(&released, __ATOMIC_SEQ_CST)) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        break;
    case 2: {
        ssize_t r;
        while ((r = read(pipefd[0], &c, 1)) < 0 && errno == EINTR)
            ;
        CHECK(r == 1 && c == 'w', "t2: read on pipe returned %zd (%s), byte 0x%02x", r, strerror(errno), c);
        break;
    }
    case 3:
        pthread_mutex_lock(&mu);
        while (!cond_flag)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        break;
    default:
        futex_wait_while_zero(&futex_word);
    }

    CHECK(wl_gettid() == tids[i], "t%d: gettid %d, was %d", i, (int)wl_gettid(), (int)tids[i]);
    char got[16] = { 0 }, path[64], comm[64];
    pthread_getname_np(pthread_self(), got, sizeof got);
    CHECK(strcmp(got, name) == 0, "t%d: thread name '%s', want '%s'", i, got, name);
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tids[i]);
    CHECK(read_file(path, comm, sizeof comm) > 0 && strncmp(comm, name, strlen(name)) == 0,
          "t%d: %s is '%s', want '%s'", i, path, comm, name);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP || (s > 31 && s < SIGRTMIN))
            continue;
        CHECK(sigismember(&cur, s) == sigismember(&m, s), "t%d: signal %d %s blocked", i, s,
              sigismember(&cur, s) ? "is" : "is not");
    }
    CHECK(tls_val == 1000 + i, "t%d: __thread value %ld", i, tls_val);
    long bad = check_pattern(stack_pat, sizeof stack_pat, 600 + i);
    CHECK(bad < 0, "t%d: stack pattern differs at word %ld", i, bad);
    if (i == 1) {
        cpu_set_t cs;
        CPU_ZERO(&cs);
        CHECK(sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_COUNT(&cs) == 1 && CPU_ISSET(pinned_cpu, &cs),
              "t1: affinity lost (count %d, cpu %d set: %d)", CPU_COUNT(&cs), pinned_cpu, CPU_ISSET(pinned_cpu, &cs));
        unsigned cpu = 99;
        syscall(SYS_getcpu, &cpu, NULL, NULL);
        CHECK((int)cpu == pinned_cpu, "t1: getcpu says %u, pinned to %d", cpu, pinned_cpu);
        int sc = sched_getcpu();
        CHECK(sc == pinned_cpu, "t1: sched_getcpu() (rseq cpu_id) says %d, pinned to %d", sc, pinned_cpu);
    }
    return (void *)(intptr_t)(i + 100);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    nextra = argc > 2 ? atoi(argv[2]) : 0;
    if (nextra < 0 || NDET + nextra > MAXT)
        nextra = 0;
    int nthr = NDET + nextra;
    pinned_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
    if (pipe(pipefd))
        DIE("pipe");
    prctl(PR_SET_NAME, "stw-main");
    sigset_t mm;
    sigemptyset(&mm);
    sigaddset(&mm, SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &mm, NULL);
    cpu_set_t main_aff;
    sched_getaffinity(0, sizeof main_aff, &main_aff);

    pthread_t th[MAXT];
    for (int i = 0; i < nthr; i++)
        if (pthread_create(&th[i], NULL, thr, (void *)(intptr_t)i))
            DIE("pthread_create");
    while (__atomic_load_n(&ready_count, __ATOMIC_SEQ_CST) < nthr)
        sleep_ms(1);
    for (int i = 0; i < nthr; i++)
        info("tid", "%d", (int)tids[i]);
    info("threads", "%d", nthr + 1);
    ready();
    wait_go();

    pid_t now[MAXT + 8];
    int n = task_list(now, MAXT + 8);
    CHECK(n == nthr + 1, "/proc/self/task has %d entries, want %d", n, nthr + 1);
    for (int i = 0; i < nthr; i++) {
        int found = 0;
        for (int j = 0; j < n && j < MAXT + 8; j++)
            found |= now[j] == tids[i];
        CHECK(found, "tid %d of t%d not in /proc/self/task", (int)tids[i], i);
    }
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    CHECK(sigismember(&cur, SIGUSR2) && !sigismember(&cur, SIGUSR1), "main: signal mask changed");
    char comm[32] = { 0 };
    prctl(PR_GET_NAME, comm);
    CHECK(strcmp(comm, "stw-main") == 0, "main: comm '%s'", comm);
    cpu_set_t aff;
    sched_getaffinity(0, sizeof aff, &aff);
    CHECK(CPU_EQUAL(&aff, &main_aff), "main: affinity changed (%d cpus, was %d)", CPU_COUNT(&aff),
          CPU_COUNT(&main_aff));

    /* wake everyone */
    __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
    CHECK(write(pipefd[1], "w", 1) == 1, "write pipe");
    pthread_mutex_lock(&mu);
    cond_flag = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);

    for (int i = 0; i < nthr; i++) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 10;
        void *ret = NULL;
        int e = pthread_timedjoin_np(th[i], &ret, &dl);
        CHECK(e == 0, "t%d (tid %d) did not finish: pthread_join %s (stuck thread, or clear_child_tid lost)", i,
              (int)tids[i], strerror(e));
        if (e == 0)
            CHECK((intptr_t)ret == i + 100, "t%d returned %ld", i, (long)(intptr_t)ret);
    }
    n = task_list(NULL, 0);
    CHECK(n == 1, "%d tasks left after joining all threads", n);
    return finish();
}
