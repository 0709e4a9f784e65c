/*
 * blocking: the main thread is blocked in a syscall at dump time; a helper
 * thread waits for WORKDIR/go and then makes it return.
 * args: WORKDIR MODE
 *   read        read() on an empty pipe (both ends in this process)
 *   poll        poll(-1) on the pipe
 *   select      select(NULL timeout) on the pipe
 *   epoll       epoll_wait(-1) on an epoll fd watching the pipe (data 0xfeed)
 *               and an empty eventfd (EPOLLET, data 0xbeef); the items
 *               (fdinfo) are the same after restore and the eventfd's is
 *               delivered when it is written
 *   sigsuspend  rt_sigsuspend(empty mask) with SIGUSR1/SIGUSR2 blocked
 *               outside; helper sends SIGUSR1 with tgkill
 * After restore the call returns exactly what it would have returned
 * without the checkpoint (data / revents / event data / EINTR + handler),
 * with no spurious EINTR, and the signal mask is the pre-sigsuspend one.
 */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>

static const char msg[] = "after-restore";
static int p[2];
static pid_t main_tid;
static const char *mode;
static volatile sig_atomic_t handled;

static void on_usr1(int s)
{
    (void)s;
    handled++;
}

static void *helper(void *a)
{
    (void)a;
    wait_go();
    sleep_ms(50);
    if (strcmp(mode, "sigsuspend") == 0)
        syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1);
    else if (write(p[1], msg, sizeof msg - 1) != (ssize_t)(sizeof msg - 1))
        printf("FAIL: helper write: %s\n", strerror(errno));
    return NULL;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* "tfd events data;" for each item of epoll fd ep, sorted (fdinfo lists
 * them in kernel-pointer order). */
static void epoll_items(int ep, char *out, size_t cap)
{
    static char buf[8192], it[16][64];
    char path[64];
    int n = 0;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    out[0] = 0;
    if (read_file(path, buf, sizeof buf) < 0)
        return;
    for (char *l = strtok(buf, "\n"); l && n < 16; l = strtok(NULL, "\n")) {
        int tfd;
        unsigned ev;
        unsigned long long data;
        if (sscanf(l, "tfd: %d events: %x data: %llx", &tfd, &ev, &data) == 3)
            snprintf(it[n++], sizeof it[0], "%d %x %llx;", tfd, ev, data);
    }
    qsort(it, n, sizeof it[0], cmpstr);
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s", it[i]);
}

static void read_msg(void)
{
    char buf[64] = { 0 };
    ssize_t r = read(p[0], buf, sizeof buf);
    CHECK(r == (ssize_t)(sizeof msg - 1) && memcmp(buf, msg, r) == 0, "read returned %zd '%.*s' (%s)", r,
          (int)(r > 0 ? r : 0), buf, r < 0 ? strerror(errno) : "");
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    mode = argc > 2 ? argv[2] : "read";
    main_tid = wl_gettid();
    if (pipe(p))
        DIE("pipe");
    int epfd = -1, efd = -1;
    static char items[1024], items_after[1024];
    if (strcmp(mode, "epoll") == 0) {
        epfd = epoll_create1(EPOLL_CLOEXEC);
        efd = eventfd(0, EFD_NONBLOCK);
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xfeed };
        struct epoll_event ev2 = { .events = EPOLLIN | EPOLLET, .data.u64 = 0xbeef };
        if (epfd < 0 || efd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, p[0], &ev) || epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev2))
            DIE("epoll");
        epoll_items(epfd, items, sizeof items);
    }
    sigset_t outside;
    if (strcmp(mode, "sigsuspend") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        sigemptyset(&outside);
        sigaddset(&outside, SIGUSR1);
        sigaddset(&outside, SIGUSR2);
        sigprocmask(SIG_SETMASK, &outside, NULL);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, helper, NULL))
        DIE("pthread_create");
    info("mode", "%s", mode);
    ready();

    if (strcmp(mode, "read") == 0) {
        read_msg();
    } else if (strcmp(mode, "poll") == 0) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        int r = poll(&pf, 1, -1);
        CHECK(r == 1 && (pf.revents & POLLIN), "poll returned %d revents %#x (%s)", r, pf.revents,
              r < 0 ? strerror(errno) : "");
        read_msg();
    } else if (strcmp(mode, "select") == 0) {
        fd_set rf;
        FD_ZERO(&rf);
        FD_SET(p[0], &rf);
        int r = select(p[0] + 1, &rf, NULL, NULL, NULL);
        CHECK(r == 1 && FD_ISSET(p[0], &rf), "select returned %d (%s)", r, r < 0 ? strerror(errno) : "");
        read_msg();
    } else if (strcmp(mode, "epoll") == 0) {
        struct epoll_event ev[4];
        memset(ev, 0, sizeof ev);
        int r = epoll_wait(epfd, ev, 4, -1);
        CHECK(r == 1 && ev[0].data.u64 == 0xfeed && (ev[0].events & EPOLLIN),
              "epoll_wait returned %d data %#llx events %#x (%s)", r, (unsigned long long)ev[0].data.u64,
              ev[0].events, r < 0 ? strerror(errno) : "");
        read_msg();
        epoll_items(epfd, items_after, sizeof items_after);
        CHECK(strlen(items) > 0 && !strcmp(items, items_after), "epoll items (tfd events data) %s, were %s", items_after,
              items);
        uint64_t one = 1;
        CHECK(write(efd, &one, 8) == 8, "eventfd write");
        memset(ev, 0, sizeof ev);
        r = epoll_wait(epfd, ev, 4, 1000);
        CHECK(r == 1 && ev[0].data.u64 == 0xbeef, "after an eventfd write epoll_wait returned %d data %#llx", r,
              (unsigned long long)ev[0].data.u64);
    } else if (strcmp(mode, "sigsuspend") == 0) {
        sigset_t none;
        sigemptyset(&none);
        int r = sigsuspend(&none);
        CHECK(r == -1 && errno == EINTR, "sigsuspend returned %d (%s)", r, strerror(errno));
        CHECK(handled == 1, "SIGUSR1 handler ran %d times", (int)handled);
        sigset_t cur;
        sigprocmask(SIG_BLOCK, NULL, &cur);
        CHECK(sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGUSR2),
              "signal mask after sigsuspend is not the one from before it (USR1 %d, USR2 %d)",
              sigismember(&cur, SIGUSR1), sigismember(&cur, SIGUSR2));
    } else {
        CHECK(0, "unknown mode %s", mode);
    }
    pthread_join(th, NULL);
    return finish();
}
