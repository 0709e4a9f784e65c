/*
 * thread_state: per-thread state that a restored thread must have exactly as it was
 * dumped, "none" included, and that the restorer (a copy of stasis) must not leak into
 * it: alternate signal stack, robust futex list, timer slack, personality, signal
 * handlers with SA_ONSTACK.
 *   main thread: SA_ONSTACK handler for SIGUSR1, NO alternate stack (disabled), no
 *                robust list (set to NULL), timer slack 50000 ns, I/O priority
 *                best-effort 7;
 *   thread A:    alternate stack of 64 KiB, timer slack 70000 ns, I/O priority idle;
 *   thread B:    alternate stack with SS_AUTODISARM, glibc's robust list, no I/O
 *                priority set.
 * After restore every thread reads its state back (sigaltstack, get_robust_list,
 * PR_GET_TIMERSLACK) and compares; then SIGUSR1 is delivered to each thread: the
 * handler must run on the alternate stack exactly where one was set (on the main
 * thread's own stack otherwise: with the restorer's stack leaked it would SIGSEGV).
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define ALT_SIZE (64 * 1024)
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

struct tstate {
    stack_t ss;
    void *robust_head;
    size_t robust_len;
    long slack;
    long ioprio;
};

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_PRIO(class, data) (((class) << 13) | (data))
static int set_ioprio(int prio)
{
    return syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio);
}

static volatile int handled[3];
static volatile int on_alt[3];
static char *alt_mem[3];
static __thread int my_idx;

static void on_usr1(int sig)
{
    (void)sig;
    char here;
    int i = my_idx;
    handled[i]++;
    on_alt[i] = alt_mem[i] && &here >= alt_mem[i] && &here < alt_mem[i] + ALT_SIZE;
}

static void read_state(struct tstate *s)
{
    memset(s, 0, sizeof *s);
    if (sigaltstack(NULL, &s->ss))
        DIE("sigaltstack");
    if (syscall(SYS_get_robust_list, 0, &s->robust_head, &s->robust_len))
        DIE("get_robust_list");
    s->slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    s->ioprio = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
}

static int same(const char *who, const struct tstate *a, const struct tstate *b)
{
    int ok = 1;
    CHECK(a->ss.ss_sp == b->ss.ss_sp && a->ss.ss_size == b->ss.ss_size && a->ss.ss_flags == b->ss.ss_flags,
          "%s: sigaltstack %p/%zu/%#x, was %p/%zu/%#x", who, b->ss.ss_sp, b->ss.ss_size, b->ss.ss_flags,
          a->ss.ss_sp, a->ss.ss_size, a->ss.ss_flags);
    CHECK(a->robust_head == b->robust_head && a->robust_len == b->robust_len, "%s: robust list %p/%zu, was %p/%zu",
          who, b->robust_head, b->robust_len, a->robust_head, a->robust_len);
    CHECK(a->slack == b->slack, "%s: timer slack %ld, was %ld", who, b->slack, a->slack);
    CHECK(a->ioprio == b->ioprio, "%s: I/O priority %#lx, was %#lx", who, b->ioprio, a->ioprio);
    return ok;
}

static pthread_barrier_t bar;
static struct tstate before[3];

static void *worker(void *arg)
{
    int i = (int)(long)arg;
    my_idx = i;
    alt_mem[i] = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (alt_mem[i] == MAP_FAILED)
        DIE("mmap altstack");
    stack_t ss = { .ss_sp = alt_mem[i], .ss_size = ALT_SIZE, .ss_flags = i == 2 ? SS_AUTODISARM : 0 };
    if (sigaltstack(&ss, NULL))
        DIE("sigaltstack set");
    if (prctl(PR_SET_TIMERSLACK, 60000 + 10000 * i, 0, 0, 0))
        DIE("PR_SET_TIMERSLACK");
    if (i == 1 && set_ioprio(IOPRIO_PRIO(3, 0))) /* idle class; thread 2 keeps none */
        DIE("ioprio_set idle");
    read_state(&before[i]);
    pthread_barrier_wait(&bar); /* state recorded */
    pthread_barrier_wait(&bar); /* go: compare */
    struct tstate now;
    read_state(&now);
    char who[32];
    snprintf(who, sizeof who, "thread %d", i);
    same(who, &before[i], &now);
    pthread_barrier_wait(&bar); /* compared */
    pthread_barrier_wait(&bar); /* signals delivered */
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL))
        DIE("sigaction");
    stack_t off = { .ss_flags = SS_DISABLE };
    if (sigaltstack(&off, NULL))
        DIE("sigaltstack disable");
    if (syscall(SYS_set_robust_list, NULL, 24))
        DIE("set_robust_list NULL");
    if (prctl(PR_SET_TIMERSLACK, 50000, 0, 0, 0))
        DIE("PR_SET_TIMERSLACK");
    if (set_ioprio(IOPRIO_PRIO(2, 7))) /* best effort, lowest level */
        DIE("ioprio_set");
    int pers = personality(0xffffffff);
    if (personality(pers | UNAME26) < 0)
        DIE("personality");
    pers = personality(0xffffffff);
    read_state(&before[0]);
    pthread_barrier_init(&bar, NULL, 3);
    pthread_t t[2];
    for (long i = 1; i <= 2; i++)
        if (pthread_create(&t[i - 1], NULL, worker, (void *)i))
            DIE("pthread_create");
    pthread_barrier_wait(&bar);
    info("altstack_main_flags", "%#x", before[0].ss.ss_flags);
    ready();
    wait_go();
    struct tstate now;
    read_state(&now);
    same("main thread", &before[0], &now);
    CHECK(personality(0xffffffff) == pers, "personality %#x, was %#x", personality(0xffffffff), pers);
    pthread_barrier_wait(&bar); /* threads compare */
    pthread_barrier_wait(&bar);
    /* now deliver a signal on every thread */
    if (raise(SIGUSR1))
        DIE("raise");
    for (int i = 0; i < 2; i++)
        if (pthread_kill(t[i], SIGUSR1))
            DIE("pthread_kill");
    for (int w = 0; w < 200 && !(handled[0] && handled[1] && handled[2]); w++)
        sleep_ms(10);
    for (int i = 0; i < 3; i++) {
        CHECK(handled[i] == 1, "thread %d: SIGUSR1 handled %d times", i, handled[i]);
        CHECK(on_alt[i] == (i != 0), "thread %d: handler ran %s its alternate stack", i, on_alt[i] ? "on" : "off");
    }
    /* SS_AUTODISARM: armed again after the handler returned */
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return finish();
}
