/*
 * fown: signal-driven I/O (O_ASYNC, F_SETOWN_EX, F_SETSIG) on several kinds of fd.
 *   a[0],a[1]  unix stream pair; a[0] O_ASYNC|O_NONBLOCK, owner = this process,
 *              F_SETSIG = SIGRTMIN+2 (siginfo carries the fd).
 *   p[0],p[1]  pipe; p[0] O_ASYNC, owner = the worker THREAD (F_OWNER_TID), SIGIO.
 *   g[0],g[1]  unix datagram pair; g[0] O_ASYNC, owner = our process GROUP (we lead
 *              a group of our own), SIGIO.
 *   u[0],u[1]  unix stream pair; u[0] has an owner (this process) but no O_ASYNC, and
 *              F_SETSIG = SIGUSR2 (what a server sets to get SIGURG-style wakeups).
 * Optional argv[2] "leave": nothing differs in the workload; the harness dumps with
 * --leave-running first and the original runs the same checks.
 * After restore, read back from inside: O_ASYNC on exactly those fds, F_GETOWN_EX kind
 * and pid, F_GETSIG; then make each fd readable and require the right signal, on the
 * right thread, with si_fd naming the fd — and no signal from u[0].
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

static int a[2], p[2], g[2], u[2];
static volatile int rt_fd = -1, rt_count, io_tid, io_count, usr2_count;
static volatile int worker_tid;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    rt_fd = si->si_fd;
    rt_count++;
}

static void on_io(int sig)
{
    (void)sig;
    io_tid = (int)syscall(SYS_gettid);
    io_count++;
}

static void on_usr2(int sig)
{
    (void)sig;
    usr2_count++;
}

static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (int)syscall(SYS_gettid);
    for (;;)
        pause();
    return NULL;
}

static int wait_for(volatile int *counter, int want)
{
    for (int i = 0; i < 400 && *counter < want; i++) {
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return *counter >= want;
}

static void check_owner(int fd, int kind, int pid, int sig, int async, const char *name)
{
    struct f_owner_ex o = { 0 };
    CHECK(fcntl(fd, F_GETOWN_EX, &o) == 0, "%s: F_GETOWN_EX: %s", name, strerror(errno));
    CHECK((kind < 0 || o.type == kind) && o.pid == pid, "%s: owner kind %d pid %d, want kind %d pid %d", name, o.type, o.pid, kind, pid);
    int s = fcntl(fd, F_GETSIG);
    CHECK(s == sig, "%s: F_GETSIG %d, want %d", name, s, sig);
    int fl = fcntl(fd, F_GETFL);
    CHECK(!!(fl & O_ASYNC) == async, "%s: O_ASYNC is %s", name, (fl & O_ASYNC) ? "on" : "off");
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    /* a group of our own: the group's SIGIO must not reach the harness */
    if (setpgid(0, 0))
        DIE("setpgid");
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN + 2, &sa, NULL);
    signal(SIGIO, on_io);
    signal(SIGUSR2, on_usr2);

    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL))
        DIE("pthread_create");
    while (!worker_tid)
        usleep(1000);
    /* SIGIO for the pipe must land on the worker: the main thread blocks it */
    sigset_t io;
    sigemptyset(&io);
    sigaddset(&io, SIGIO);
    pthread_sigmask(SIG_BLOCK, &io, NULL);

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) || pipe(p) || socketpair(AF_UNIX, SOCK_DGRAM, 0, g) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, u))
        DIE("socketpair/pipe");
    struct f_owner_ex me = { F_OWNER_PID, getpid() }, thr = { F_OWNER_TID, worker_tid }, grp = { F_OWNER_PGRP, getpgrp() };
    if (fcntl(a[0], F_SETOWN_EX, &me) || fcntl(a[0], F_SETSIG, SIGRTMIN + 2) ||
        fcntl(a[0], F_SETFL, O_ASYNC | O_NONBLOCK))
        DIE("a[0]");
    if (fcntl(p[0], F_SETOWN_EX, &thr) || fcntl(p[0], F_SETFL, O_ASYNC))
        DIE("p[0]");
    if (fcntl(g[0], F_SETOWN_EX, &grp) || fcntl(g[0], F_SETFL, O_ASYNC))
        DIE("g[0]");
    if (fcntl(u[0], F_SETOWN_EX, &me) || fcntl(u[0], F_SETSIG, SIGUSR2))
        DIE("u[0]");
    wl_out("INFO worker=%d\n", worker_tid);
    ready();
    wait_go();

    check_owner(a[0], F_OWNER_PID, getpid(), SIGRTMIN + 2, 1, "a[0]");
    check_owner(p[0], F_OWNER_TID, worker_tid, 0, 1, "p[0]");
    check_owner(g[0], F_OWNER_PGRP, getpgrp(), 0, 1, "g[0]");
    check_owner(u[0], F_OWNER_PID, getpid(), SIGUSR2, 0, "u[0]");
    check_owner(a[1], -1, 0, 0, 0, "a[1]"); /* no owner: any kind */
    CHECK(fcntl(a[0], F_GETFL) & O_NONBLOCK, "a[0] lost O_NONBLOCK");

    CHECK(write(a[1], "x", 1) == 1, "write a[1]");
    CHECK(wait_for(&rt_count, 1), "no SIGRTMIN+2 after data reached a[0]");
    CHECK(rt_fd == a[0], "SIGRTMIN+2 si_fd %d, want %d", rt_fd, a[0]);
    CHECK(write(p[1], "y", 1) == 1, "write p[1]");
    CHECK(wait_for(&io_count, 1), "no SIGIO after data reached p[0]");
    CHECK(io_tid == worker_tid, "SIGIO of p[0] ran on thread %d, want the worker %d", io_tid, worker_tid);
    int before = io_count;
    /* the group's SIGIO: any thread that does not block it (the worker) */
    CHECK(write(g[1], "z", 1) == 1, "write g[1]");
    CHECK(wait_for(&io_count, before + 1), "no SIGIO after a datagram reached g[0]");
    CHECK(write(u[1], "w", 1) == 1, "write u[1]");
    struct timespec ts = { 0, 50 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    CHECK(usr2_count == 0, "u[0] has no O_ASYNC but signalled %d times", usr2_count);
    return finish();
}
