/*
 * leader_exit: the main thread exits alone while three threads run on (the process shows
 * state Z but lives). By default it exits with SYS_exit(42); with "pthread", with
 * pthread_exit (code 0). With "child", it first forks a child that, once the main thread
 * has exited (it is then a child of another thread of the process), sets a parent-death
 * signal (SIGTERM), waits for go and exits with 7 if its parent is still this process
 * and the signal is still set (the signal killing it fails the check).
 *
 * Thread 0 says READY once the main thread is a zombie, waits for go, then checks from
 * inside: the pid and every thread's tid (each worker reports its gettid() from a
 * SIGUSR1 sent to it with tgkill), a heap pattern, the main thread is a zombie in
 * /proc/self/task/PID/stat and /proc/PID/status, the tasks are the main thread and the
 * three threads, the main thread's exit code in /proc/self/task/PID/stat (42 << 8, or 0),
 * a SIGUSR2 sent to the process (kill) reaches thread 0 (the only thread not blocking
 * it), the child's exit status, a POSIX timer the main thread armed (same id, still
 * armed for about 1000 s). Then every thread ends with SYS_exit, thread 0 last with
 * code 9, which (Linux 6.x) is the status its parent's wait reports; a failed check ends
 * the process with exit(1).
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define NT 3
#define HEAP (64 * 1024)

static pid_t g_pid, g_child = -1;
static int g_code = 42;
static volatile pid_t tids[NT], got[NT];
static volatile pid_t usr2_tid;
static volatile int done;
static __thread int my_idx;
static uint64_t *heap;
static timer_t timer;

static void on_usr1(int sig)
{
    (void)sig;
    got[my_idx] = wl_gettid();
}

static void on_usr2(int sig)
{
    (void)sig;
    usr2_tid = wl_gettid();
}

/* Field `n` (1-based, as in proc(5), n >= 3) of /proc/PID/task/TID/stat of this process
 * (g_pid), in `out`; 0 if it could not be read. */
static int task_stat(pid_t tid, int n, char *out, size_t len)
{
    char p[64], b[1024];
    snprintf(p, sizeof p, "/proc/%d/task/%d/stat", g_pid, tid);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t r = read(fd, b, sizeof b - 1);
    close(fd);
    if (r <= 0)
        return 0;
    b[r] = 0;
    char *s = strrchr(b, ')'), *save = NULL;
    if (!s)
        return 0;
    int k = 3;
    for (char *f = strtok_r(s + 1, " \n", &save); f; f = strtok_r(NULL, " \n", &save), k++)
        if (k == n) {
            snprintf(out, len, "%s", f);
            return 1;
        }
    return 0;
}

static char task_state(pid_t tid)
{
    char s[8];
    return task_stat(tid, 3, s, sizeof s) ? s[0] : '?';
}

/* The tasks of this process, sorted, in `out` (at most `max`); their number. */
static int tasks(pid_t *out, int max)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < max)
            out[n++] = atoi(e->d_name);
    if (d)
        closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (out[j] < out[i]) {
                pid_t t = out[i];
                out[i] = out[j];
                out[j] = t;
            }
    return n;
}

static void checks(void)
{
    CHECK(getpid() == g_pid, "getpid() is %d, was %d", getpid(), g_pid);
    CHECK(wl_gettid() == tids[0], "thread 0's tid is %d, was %d", wl_gettid(), tids[0]);
    for (int i = 1; i < NT; i++) {
        got[i] = 0;
        CHECK(syscall(SYS_tgkill, g_pid, tids[i], SIGUSR1) == 0, "tgkill(%d): %s", tids[i], strerror(errno));
        for (int k = 0; k < 2000 && !got[i]; k++)
            sleep_ms(1);
        CHECK(got[i] == tids[i], "thread %d: its SIGUSR1 handler ran in tid %d, not %d", i, got[i], tids[i]);
    }
    for (size_t i = 0; i < HEAP / 8; i++)
        if (heap[i] != pat64(7, i)) {
            CHECK(0, "heap word %zu is %#llx", i, (unsigned long long)heap[i]);
            break;
        }
    CHECK(task_state(g_pid) == 'Z', "main thread %d is in state %c, not a zombie", g_pid, task_state(g_pid));
    char p[64], b[4096];
    snprintf(p, sizeof p, "/proc/%d/status", g_pid);
    int fd = open(p, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, b, sizeof b - 1);
    if (fd >= 0)
        close(fd);
    b[n > 0 ? n : 0] = 0;
    CHECK(strstr(b, "State:\tZ") != NULL, "/proc/PID/status does not say zombie");
    char code[32] = "?";
    task_stat(g_pid, 52, code, sizeof code);
    CHECK(atoi(code) == g_code << 8, "main thread's exit code is %s, not %d", code, g_code << 8);
    pid_t t[16], want[NT + 1] = { g_pid, tids[0], tids[1], tids[2] };
    for (int i = 1; i <= NT; i++)
        for (int j = i + 1; j <= NT; j++)
            if (want[j] < want[i]) {
                pid_t x = want[i];
                want[i] = want[j];
                want[j] = x;
            }
    int nt = tasks(t, 16);
    CHECK(nt == NT + 1 && memcmp(t, want, sizeof want) == 0, "%d tasks (%d %d %d %d), want %d %d %d %d", nt, t[0], t[1], t[2], t[3],
          want[0], want[1], want[2], want[3]);
    /* a signal to the process: only thread 0 takes it */
    usr2_tid = 0;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    CHECK(kill(g_pid, SIGUSR2) == 0, "kill: %s", strerror(errno));
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    for (int k = 0; k < 2000 && !usr2_tid; k++)
        sleep_ms(1);
    CHECK(usr2_tid == tids[0], "SIGUSR2 sent to the process ran in tid %d, not thread 0 (%d)", usr2_tid, tids[0]);
    struct itimerspec its;
    CHECK(timer_gettime(timer, &its) == 0 && its.it_value.tv_sec > 900 && its.it_value.tv_sec <= 1000,
          "POSIX timer: %s, %ld s left", strerror(errno), (long)its.it_value.tv_sec);
    if (g_child > 0) {
        int st = 0;
        pid_t r = waitpid(g_child, &st, 0);
        CHECK(r == g_child && WIFEXITED(st) && WEXITSTATUS(st) == 7, "child %d: waitpid %d status %#x", g_child, r, st);
    }
}

static void *worker(void *arg)
{
    my_idx = (int)(long)arg;
    tids[my_idx] = wl_gettid();
    if (my_idx != 0) {
        while (!done)
            pause();
        syscall(SYS_exit, 0);
    }
    for (int i = 1; i < NT; i++)
        while (!tids[i])
            sleep_ms(1);
    while (task_state(g_pid) != 'Z' || (g_child > 0 && access(wl_path("child_armed"), F_OK) != 0))
        sleep_ms(1);
    info("tids", "%d %d %d", tids[0], tids[1], tids[2]);
    ready();
    wait_go();
    checks();
    if (finish() != 0)
        exit(1);
    done = 1;
    for (int i = 1; i < NT; i++)
        syscall(SYS_tgkill, g_pid, tids[i], SIGUSR1);
    pid_t t[16];
    while (tasks(t, 16) > 2)
        sleep_ms(1);
    syscall(SYS_exit, 9);
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    g_pid = getpid();
    int pthread = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "pthread"))
            pthread = 1, g_code = 0;
        if (!strcmp(argv[i], "child")) {
            g_child = fork();
            if (g_child < 0)
                DIE("fork");
            if (g_child == 0) {
                while (task_state(g_pid) != 'Z')
                    sleep_ms(1);
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                close(open(wl_path("child_armed"), O_WRONLY | O_CREAT, 0644));
                wait_go();
                int sig = 0;
                prctl(PR_GET_PDEATHSIG, &sig);
                _exit(getppid() == g_pid && sig == SIGTERM ? 7 : 8);
            }
            info("child", "%d", g_child);
        }
    }
    heap = malloc(HEAP);
    if (!heap)
        DIE("malloc");
    for (size_t i = 0; i < HEAP / 8; i++)
        heap[i] = pat64(7, i);
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    /* every thread is born with SIGUSR2 blocked; thread 0 unblocks it when it checks */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN };
    struct itimerspec its = { .it_value = { 1000, 0 } };
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0 || timer_settime(timer, 0, &its, NULL) != 0)
        DIE("timer_create");
    pthread_t t[NT];
    for (long i = 0; i < NT; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            DIE("pthread_create");
    if (pthread)
        pthread_exit(NULL);
    syscall(SYS_exit, g_code);
    return 1;
}
