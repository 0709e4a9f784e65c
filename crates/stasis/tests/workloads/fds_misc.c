/*
 * fds_misc: one less common kind of fd per run (MODE), each with state that
 * must survive.  Used by "supported or cleanly refused" tests and by the
 * strict round trips in files.rs.
 *   eventfd    counter 5 + 2 written, nonblocking, cloexec  -> read gives 7;
 *              a dup shares the counter (no cloexec); a blocking
 *              EFD_SEMAPHORE eventfd at 3 reads 1, 1, 1; a counter above
 *              32 bits; an empty blocking one is not readable
 *   signalfd   for SIGUSR1 + SIGRTMIN+1 (blocked, pending: USR1 raised,
 *              RTMIN+1 queued with values 42 and 43), nonblocking
 *                                                        -> fdinfo mask, reads
 *              USR1 then 42 then 43 then EAGAIN; a second, blocking cloexec
 *              signalfd for SIGUSR2 reads the pending USR2 only; a signal
 *              sent after restore is read too
 *   timerfd    A: CLOCK_MONOTONIC, 300 ms interval, armed -> expirations > 0,
 *                 interval kept
 *              B: one-shot 10 ms, expired and unread       -> 1 tick readable
 *              C: CLOCK_BOOTTIME one-shot 1 h, cloexec     -> remaining time
 *                 counts only the time the process ran
 *              D: 20 ms then every 2 s, first expiry unread -> readable at once
 *              E: CLOCK_REALTIME absolute deadline now+1h, CANCEL_ON_SET
 *                                                        -> same deadline, flags
 *              F: disarmed with a 5 s interval             -> value 0, interval 5 s
 *   epoll      items on a pipe (level), its dup (EPOLLET), an eventfd, a fired
 *              EPOLLONESHOT eventfd, an EPOLLEXCLUSIVE eventfd and a nested
 *              nonblocking epoll watching an eventfd    -> fdinfo items identical,
 *              epoll_wait delivers exactly the expected data words
 *   epoll_closed  two eventfds registered under fd numbers that were closed
 *              afterwards (dups keep them alive), one number reused by
 *              /dev/null                                 -> both still delivered,
 *              fdinfo names the old numbers, one number still closed, the
 *              other still /dev/null (FD_CLOEXEC kept)
 *   inotify    watch WORKDIR for IN_CREATE (wd 2 after a removed wd 1) and a
 *              file for IN_MODIFY|IN_ONESHOT             -> sees "go" and the
 *              write with the same wds, fdinfo watches identical
 *   memfd      8 KiB pattern, sealed F_SEAL_SHRINK, mmap'ed shared
 *                                                        -> content, seals,
 *                                                           mapping shares it
 *   flock      LOCK_EX on WORKDIR/lockfile               -> a new open file
 *                                                           description cannot
 *                                                           take it
 *   posixlock  F_SETLK write lock on bytes 10..19        -> F_OFD_GETLK from a
 *                                                           new description
 *                                                           sees it, our pid
 *   fifo       WORKDIR/fifo opened O_RDWR, 5 bytes queued -> read gives them
 * Prints "INFO fd=N" for the fd of interest.
 */
#include "common.h"
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>

#include <poll.h>
#include <sys/epoll.h>

static int fl(int fd)
{
    return fcntl(fd, F_GETFL);
}

static int cloexec(int fd)
{
    return fcntl(fd, F_GETFD) & FD_CLOEXEC;
}

static int readable(int fd)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    return poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN);
}

/* The value of the "key:" line of /proc/self/fdinfo/FD (strtoll base 0, or
 * base 16 with hex != 0); -1 if missing. */
static long long fdinfo_num(int fd, const char *key, int hex)
{
    char path[64], buf[16384];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    if (read_file(path, buf, sizeof buf) < 0)
        return -1;
    size_t k = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, key, k) && l[k] == ':')
            return strtoll(l + k + 1, NULL, hex ? 16 : 0);
    return -1;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The fdinfo lines of FD starting with prefix, sorted, joined with ';'.
 * epoll items ("tfd:") are reduced to "tfd events data" (pos/ino vary). */
static void fdinfo_set(int fd, const char *prefix, char *out, size_t cap)
{
    static char buf[16384], tmp[64][96];
    char path[64], *lines[64];
    int n = 0;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    out[0] = 0;
    if (read_file(path, buf, sizeof buf) < 0)
        return;
    for (char *l = strtok(buf, "\n"); l && n < 64; l = strtok(NULL, "\n")) {
        int tfd;
        unsigned ev;
        unsigned long long data;
        if (strncmp(l, prefix, strlen(prefix)))
            continue;
        if (!strcmp(prefix, "tfd:") && sscanf(l, "tfd: %d events: %x data: %llx", &tfd, &ev, &data) == 3) {
            snprintf(tmp[n], sizeof tmp[n], "%d %x %llx", tfd, ev, data);
            lines[n] = tmp[n];
        } else {
            lines[n] = l;
        }
        n++;
    }
    qsort(lines, n, sizeof *lines, cmpstr);
    for (int i = 0; i < n; i++) {
        strncat(out, lines[i], cap - strlen(out) - 1);
        strncat(out, ";", cap - strlen(out) - 1);
    }
}

static int cmpu64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* epoll_wait(ep, timeout 0): the data words delivered, sorted, as "a,b,". */
static const char *waited(int ep)
{
    static char out[256];
    struct epoll_event ev[16];
    uint64_t d[16];
    int n = epoll_wait(ep, ev, 16, 0);
    if (n < 0) {
        snprintf(out, sizeof out, "error: %s", strerror(errno));
        return out;
    }
    for (int i = 0; i < n; i++)
        d[i] = ev[i].data.u64;
    qsort(d, n, sizeof *d, cmpu64);
    out[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%llx,", (unsigned long long)d[i]);
    return out;
}

static int add(int ep, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static int bump(int efd, uint64_t v)
{
    return write(efd, &v, 8) == 8;
}

static uint64_t take(int efd)
{
    uint64_t v = 0;
    return read(efd, &v, 8) == 8 ? v : (uint64_t)-1;
}

/* ---- eventfd ---- */
static int ev_dup, ev_sem, ev_big, ev_zero;
static const uint64_t BIG = 0x123456789aULL;

static int eventfd_setup(void)
{
    int fd = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
    ev_dup = dup(fd);
    ev_sem = eventfd(3, EFD_SEMAPHORE);
    ev_big = eventfd(0, EFD_NONBLOCK);
    ev_zero = eventfd(0, 0);
    if (fd < 0 || ev_dup < 0 || ev_sem < 0 || ev_big < 0 || ev_zero < 0 || !bump(fd, 2) || !bump(ev_big, BIG))
        DIE("eventfd");
    return fd;
}

static void eventfd_check(int fd)
{
    CHECK((fl(fd) & O_NONBLOCK) && cloexec(fd), "eventfd flags %#o cloexec %d", fl(fd), cloexec(fd));
    CHECK((fl(ev_dup) & O_NONBLOCK) && !cloexec(ev_dup), "dup'ed eventfd flags %#o cloexec %d", fl(ev_dup), cloexec(ev_dup));
    CHECK(!(fl(ev_sem) & O_NONBLOCK) && !(fl(ev_zero) & O_NONBLOCK), "blocking eventfds became nonblocking");
    uint64_t v = take(fd);
    CHECK(v == 7, "eventfd counter %llu, want 7", (unsigned long long)v);
    CHECK(take(ev_dup) == (uint64_t)-1 && errno == EAGAIN, "dup'ed eventfd not empty after reading the original");
    bump(ev_dup, 1);
    CHECK(take(fd) == 1, "eventfd and its dup do not share the counter");
    for (int i = 0; i < 3; i++)
        CHECK(readable(ev_sem) && take(ev_sem) == 1, "EFD_SEMAPHORE read %d did not give 1", i);
    CHECK(!readable(ev_sem), "EFD_SEMAPHORE eventfd still readable after 3 reads");
    long long sem = fdinfo_num(ev_sem, "eventfd-semaphore", 0);
    CHECK(sem == 1 || sem == -1, "fdinfo eventfd-semaphore %lld", sem);
    v = take(ev_big);
    CHECK(v == BIG, "64-bit eventfd counter %#llx, want %#llx", (unsigned long long)v, (unsigned long long)BIG);
    CHECK(!readable(ev_zero), "empty eventfd is readable");
}

/* ---- signalfd ---- */
static int sf_usr2;

static int signalfd_setup(void)
{
    sigset_t s, one;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGUSR2);
    sigaddset(&s, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &s, NULL);
    sigdelset(&s, SIGUSR2);
    int fd = signalfd(-1, &s, SFD_NONBLOCK);
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    sf_usr2 = signalfd(-1, &one, SFD_CLOEXEC);
    union sigval v42 = { .sival_int = 42 }, v43 = { .sival_int = 43 };
    if (fd < 0 || sf_usr2 < 0 || raise(SIGUSR1) || sigqueue(getpid(), SIGRTMIN + 1, v42) ||
        sigqueue(getpid(), SIGRTMIN + 1, v43) || raise(SIGUSR2))
        DIE("signalfd");
    return fd;
}

static int sfd_read(int fd, struct signalfd_siginfo *si)
{
    memset(si, 0, sizeof *si);
    return read(fd, si, sizeof *si) == sizeof *si;
}

static void signalfd_check(int fd)
{
    unsigned long long want = (1ULL << (SIGUSR1 - 1)) | (1ULL << (SIGRTMIN + 1 - 1));
    long long mask = fdinfo_num(fd, "sigmask", 1);
    CHECK((unsigned long long)mask == want, "signalfd mask %#llx, want %#llx", mask, want);
    CHECK((fl(fd) & O_NONBLOCK) && !cloexec(fd), "signalfd flags %#o cloexec %d", fl(fd), cloexec(fd));
    CHECK(!(fl(sf_usr2) & O_NONBLOCK) && cloexec(sf_usr2), "second signalfd flags %#o cloexec %d", fl(sf_usr2),
          cloexec(sf_usr2));
    struct signalfd_siginfo si;
    CHECK(sfd_read(fd, &si) && si.ssi_signo == SIGUSR1 && si.ssi_code == SI_TKILL && si.ssi_pid == (uint32_t)getpid(),
          "signalfd read signo %u code %d pid %u (%s)", si.ssi_signo, si.ssi_code, si.ssi_pid, strerror(errno));
    for (int v = 42; v <= 43; v++)
        CHECK(sfd_read(fd, &si) && si.ssi_signo == (uint32_t)SIGRTMIN + 1 && si.ssi_code == SI_QUEUE && si.ssi_int == v,
              "signalfd read signo %u code %d value %d, want SIGRTMIN+1 value %d", si.ssi_signo, si.ssi_code,
              si.ssi_int, v);
    CHECK(!sfd_read(fd, &si) && errno == EAGAIN, "signalfd read more: signo %u", si.ssi_signo);
    CHECK(readable(sf_usr2) && sfd_read(sf_usr2, &si) && si.ssi_signo == SIGUSR2, "SIGUSR2 signalfd read signo %u",
          si.ssi_signo);
    kill(getpid(), SIGUSR1);
    CHECK(sfd_read(fd, &si) && si.ssi_signo == SIGUSR1 && si.ssi_code == SI_USER, "signal sent after restore: signo %u code %d",
          si.ssi_signo, si.ssi_code);
    sigset_t pend;
    sigpending(&pend);
    CHECK(!sigismember(&pend, SIGUSR1) && !sigismember(&pend, SIGUSR2) && !sigismember(&pend, SIGRTMIN + 1),
          "signals still pending after reading them through signalfd");
}

/* ---- timerfd ---- */
#define MS 1000000L
static int tB, tC, tD, tE, tF;
static double tC_set;
static struct timespec tE_deadline;

static double secs(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int arm(int fd, int flags, long vsec, long vns, long isec, long ins)
{
    struct itimerspec its = { { isec, ins }, { vsec, vns } };
    return timerfd_settime(fd, flags, &its, NULL);
}

static int timerfd_setup(void)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    tB = timerfd_create(CLOCK_MONOTONIC, 0);
    tC = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    tD = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    tE = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    tF = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (fd < 0 || tB < 0 || tC < 0 || tD < 0 || tE < 0 || tF < 0)
        DIE("timerfd_create");
    clock_gettime(CLOCK_REALTIME, &tE_deadline);
    tE_deadline.tv_sec += 3600;
    tC_set = now_mono();
    if (arm(fd, 0, 0, 300 * MS, 0, 300 * MS) || arm(tB, 0, 0, 10 * MS, 0, 0) || arm(tC, 0, 3600, 0, 0, 0) ||
        arm(tD, 0, 0, 20 * MS, 2, 0) ||
        arm(tE, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, tE_deadline.tv_sec, tE_deadline.tv_nsec, 0, 0) ||
        arm(tF, 0, 0, 0, 5, 0))
        DIE("timerfd_settime");
    sleep_ms(60); /* B and D expire, unread */
    return fd;
}

static void timerfd_check(int fd)
{
    struct itimerspec g;
    uint64_t n = 0;
    /* B: one expiration, unread at dump */
    CHECK(readable(tB) && read(tB, &n, 8) == 8 && n == 1, "expired one-shot timerfd: readable %d, %llu ticks",
          readable(tB), (unsigned long long)n);
    CHECK(timerfd_gettime(tB, &g) == 0 && g.it_value.tv_sec == 0 && g.it_value.tv_nsec == 0 && g.it_interval.tv_sec == 0 &&
          g.it_interval.tv_nsec == 0, "expired one-shot timerfd is armed again");
    /* D: first expiry unread, next one ~2 s of running time later */
    n = 0;
    CHECK(readable(tD) && read(tD, &n, 8) == 8 && n >= 1, "periodic timerfd lost its unread expiration (readable %d, %llu)",
          readable(tD), (unsigned long long)n);
    CHECK(timerfd_gettime(tD, &g) == 0 && g.it_interval.tv_sec == 2 && g.it_interval.tv_nsec == 0 && secs(g.it_value) > 0 &&
          secs(g.it_value) <= 2, "periodic timerfd: value %.3f interval %.3f", secs(g.it_value), secs(g.it_interval));
    /* C: remaining time counts only time the process ran */
    double el = now_mono() - tC_set;
    CHECK(timerfd_gettime(tC, &g) == 0 && secs(g.it_value) <= 3600 && secs(g.it_value) >= 3600 - el - 0.5 &&
          secs(g.it_interval) == 0, "1 h timerfd: remaining %.3f s after %.3f s", secs(g.it_value), el);
    CHECK(fdinfo_num(tC, "clockid", 0) == CLOCK_BOOTTIME && cloexec(tC) && (fl(tC) & O_NONBLOCK),
          "CLOCK_BOOTTIME timerfd: clockid %lld cloexec %d flags %#o", fdinfo_num(tC, "clockid", 0), cloexec(tC), fl(tC));
    /* E: absolute deadline and settime flags kept */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double left = secs(tE_deadline) - secs(now);
    CHECK(timerfd_gettime(tE, &g) == 0 && secs(g.it_value) > left - 0.5 && secs(g.it_value) < left + 0.5,
          "absolute timerfd: %.3f s left, deadline is %.3f s away", secs(g.it_value), left);
    CHECK(fdinfo_num(tE, "settime flags", 0) == (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) &&
          fdinfo_num(tE, "clockid", 0) == CLOCK_REALTIME, "absolute timerfd: settime flags %lld clockid %lld",
          fdinfo_num(tE, "settime flags", 0), fdinfo_num(tE, "clockid", 0));
    /* F: disarmed, interval kept */
    CHECK(timerfd_gettime(tF, &g) == 0 && secs(g.it_value) == 0 && g.it_interval.tv_sec == 5 && !readable(tF),
          "disarmed timerfd: value %.3f interval %.3f", secs(g.it_value), secs(g.it_interval));
    /* A: periodic 300 ms, nonblocking */
    CHECK(fl(fd) & O_NONBLOCK, "timerfd lost O_NONBLOCK");
    CHECK(timerfd_gettime(fd, &g) == 0 && g.it_interval.tv_nsec == 300000000 && g.it_interval.tv_sec == 0,
          "timerfd interval lost");
    n = 0;
    for (int i = 0; i < 200; i++) {
        if (read(fd, &n, 8) == 8)
            break;
        sleep_ms(10);
    }
    CHECK(n > 0, "timerfd never expired after restore");
}

/* ---- epoll ---- */
static int ep2, ep_pipe[2], e_lvl, e_once, e_excl, e_nested;
static char ep_items[4096], ep2_items[4096];

static int epoll_setup(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    ep2 = epoll_create1(0);
    if (ep < 0 || ep2 < 0 || pipe(ep_pipe) || fcntl(ep2, F_SETFL, O_NONBLOCK))
        DIE("epoll_create1");
    int pdup = dup(ep_pipe[0]);
    e_lvl = eventfd(0, EFD_NONBLOCK);
    e_once = eventfd(1, EFD_NONBLOCK);
    e_excl = eventfd(0, EFD_NONBLOCK);
    e_nested = eventfd(0, EFD_NONBLOCK);
    if (add(ep, ep_pipe[0], EPOLLIN, 0x1111) || add(ep, pdup, EPOLLIN | EPOLLET, 0x2222) ||
        add(ep, e_lvl, EPOLLIN, 0x3333) || add(ep, e_once, EPOLLIN | EPOLLONESHOT, 0x4444) ||
        add(ep, e_excl, EPOLLIN | EPOLLEXCLUSIVE, 0x7777) || add(ep2, e_nested, EPOLLIN, 0x5555) ||
        add(ep, ep2, EPOLLIN, 0x6666))
        DIE("epoll_ctl");
    const char *w = waited(ep); /* fires the one-shot item */
    if (strcmp(w, "4444,"))
        DIE(w);
    fdinfo_set(ep, "tfd:", ep_items, sizeof ep_items);
    fdinfo_set(ep2, "tfd:", ep2_items, sizeof ep2_items);
    return ep;
}

static void epoll_check(int ep)
{
    char now[4096];
    fdinfo_set(ep, "tfd:", now, sizeof now);
    CHECK(!strcmp(now, ep_items), "epoll items (tfd events data) %s, were %s", now, ep_items);
    fdinfo_set(ep2, "tfd:", now, sizeof now);
    CHECK(!strcmp(now, ep2_items), "nested epoll items %s, were %s", now, ep2_items);
    CHECK(cloexec(ep) && !cloexec(ep2) && (fl(ep2) & O_NONBLOCK) && !(fl(ep) & O_NONBLOCK),
          "epoll fd flags: cloexec %d/%d, flags %#o/%#o", cloexec(ep), cloexec(ep2), fl(ep), fl(ep2));
    const char *w = waited(ep);
    CHECK(!strcmp(w, ""), "epoll reports %s with nothing ready (fired one-shot must stay quiet)", w);
    CHECK(write(ep_pipe[1], "x", 1) == 1, "pipe write");
    w = waited(ep);
    CHECK(!strcmp(w, "1111,2222,"), "after a pipe write epoll reports %s, want 1111,2222,", w);
    w = waited(ep);
    CHECK(!strcmp(w, "1111,"), "level/edge: second wait reports %s, want 1111,", w);
    bump(e_nested, 1);
    w = waited(ep2);
    CHECK(!strcmp(w, "5555,"), "nested epoll reports %s, want 5555,", w);
    w = waited(ep);
    CHECK(!strcmp(w, "1111,6666,"), "epoll with a ready nested epoll reports %s, want 1111,6666,", w);
    bump(e_lvl, 1);
    w = waited(ep);
    CHECK(!strcmp(w, "1111,3333,6666,"), "after an eventfd write epoll reports %s, want 1111,3333,6666,", w);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x4444 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, e_once, &ev) == 0, "EPOLL_CTL_MOD of the one-shot item: %s", strerror(errno));
    w = waited(ep);
    CHECK(!strcmp(w, "1111,3333,4444,6666,"), "re-armed one-shot: epoll reports %s, want 1111,3333,4444,6666,", w);
    bump(e_excl, 1);
    w = waited(ep);
    CHECK(!strcmp(w, "1111,3333,6666,7777,"), "EPOLLEXCLUSIVE item: epoll reports %s, want 1111,3333,6666,7777,", w);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, e_lvl, NULL) == 0, "EPOLL_CTL_DEL by the fd number: %s", strerror(errno));
    w = waited(ep);
    CHECK(!strcmp(w, "1111,6666,7777,"), "after EPOLL_CTL_DEL epoll reports %s, want 1111,6666,7777,", w);
}

/* ---- epoll_closed ---- */
static int ec_dup, ec_dup2, ec_num, ec_num2;

static int epoll_closed_setup(void)
{
    int ep = epoll_create1(0), e = eventfd(0, EFD_NONBLOCK), e2 = eventfd(0, EFD_NONBLOCK);
    if (ep < 0 || e < 0 || e2 < 0 || add(ep, e, EPOLLIN, 0xc105ed) || add(ep, e2, EPOLLIN, 0x2e05ed))
        DIE("epoll");
    ec_dup = dup(e);
    ec_dup2 = dup(e2);
    ec_num = e;
    ec_num2 = e2;
    close(e);
    close(e2);
    /* e's number now holds another file */
    if (open("/dev/null", O_RDONLY | O_CLOEXEC) != e)
        DIE("reusing the closed number");
    return ep;
}

static void epoll_closed_check(int ep)
{
    char path[64], line[128], want[32], want2[32];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    snprintf(want, sizeof want, "tfd: %8d", ec_num);
    snprintf(want2, sizeof want2, "tfd: %8d", ec_num2);
    int seen = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        seen |= (!strncmp(line, want, strlen(want)) ? 1 : 0) | (!strncmp(line, want2, strlen(want2)) ? 2 : 0);
    if (f)
        fclose(f);
    CHECK(seen == 3, "fdinfo of the epoll does not name items %d and %d (%d)", ec_num, ec_num2, seen);
    struct stat st;
    CHECK(fstat(ec_num, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3) && cloexec(ec_num),
          "fd %d is no longer /dev/null with FD_CLOEXEC", ec_num);
    CHECK(fcntl(ec_num2, F_GETFD) < 0 && errno == EBADF, "fd %d is open again", ec_num2);
    bump(ec_dup, 1);
    bump(ec_dup2, 1);
    const char *w = waited(ep);
    CHECK(!strcmp(w, "2e05ed,c105ed,"), "items of closed fd numbers: epoll reports %s", w);
}

/* ---- inotify ---- */
static int in_dir, in_file, in_2;
static char in_items[4096];

static int inotify_setup(void)
{
    int f = open(wl_path("watched"), O_WRONLY | O_CREAT, 0644);
    int fd = inotify_init1(IN_NONBLOCK);
    in_2 = inotify_init1(IN_CLOEXEC);
    if (f < 0 || fd < 0 || in_2 < 0)
        DIE("inotify");
    close(f);
    int w0 = inotify_add_watch(fd, g_dir, IN_OPEN);
    if (w0 < 0 || inotify_rm_watch(fd, w0))
        DIE("inotify stand-in watch");
    in_dir = inotify_add_watch(fd, g_dir, IN_CREATE | IN_EXCL_UNLINK);
    in_file = inotify_add_watch(fd, wl_path("watched"), IN_MODIFY | IN_ONESHOT);
    if (in_dir < 0 || in_file < 0 || in_dir == w0)
        DIE("inotify_add_watch");
    info("wd", "%d", in_dir);
    fdinfo_set(fd, "inotify ", in_items, sizeof in_items);
    return fd;
}

static void inotify_check(int fd)
{
    char now[4096];
    fdinfo_set(fd, "inotify ", now, sizeof now);
    CHECK(!strcmp(now, in_items), "inotify watches %s, were %s", now, in_items);
    CHECK((fl(fd) & O_NONBLOCK) && !cloexec(fd) && !(fl(in_2) & O_NONBLOCK) && cloexec(in_2),
          "inotify flags %#o/%#o cloexec %d/%d", fl(fd), fl(in_2), cloexec(fd), cloexec(in_2));
    int f = open(wl_path("watched"), O_WRONLY | O_APPEND);
    if (f < 0 || write(f, "x", 1) != 1)
        CHECK(0, "writing the watched file: %s", strerror(errno));
    close(f);
    char buf[4096] __attribute__((aligned(8)));
    int seen_go = 0, seen_mod = 0, seen_ign = 0;
    for (int i = 0; i < 200 && !(seen_go && seen_mod && seen_ign); i++) {
        ssize_t r = read(fd, buf, sizeof buf);
        for (char *p = buf; r > 0 && p < buf + r;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->wd == in_dir && (e->mask & IN_CREATE) && e->len && !strcmp(e->name, "go"))
                seen_go = 1;
            if (e->wd == in_file && (e->mask & IN_MODIFY))
                seen_mod = 1;
            if (e->wd == in_file && (e->mask & IN_IGNORED))
                seen_ign = 1;
            p += sizeof *e + e->len;
        }
        if (!(seen_go && seen_mod && seen_ign))
            sleep_ms(10);
    }
    CHECK(seen_go, "inotify watch %d did not report the creation of 'go'", in_dir);
    CHECK(seen_mod && seen_ign, "IN_ONESHOT watch %d: modify seen %d, ignored seen %d", in_file, seen_mod, seen_ign);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "eventfd";
    int fd = -1;
    char *map = NULL;
    if (!strcmp(mode, "eventfd")) {
        fd = eventfd_setup();
    } else if (!strcmp(mode, "signalfd")) {
        fd = signalfd_setup();
    } else if (!strcmp(mode, "timerfd")) {
        fd = timerfd_setup();
    } else if (!strcmp(mode, "epoll")) {
        fd = epoll_setup();
    } else if (!strcmp(mode, "epoll_closed")) {
        fd = epoll_closed_setup();
    } else if (!strcmp(mode, "inotify")) {
        fd = inotify_setup();
    } else if (!strcmp(mode, "memfd")) {
        fd = memfd_create("stasis-memfd", MFD_ALLOW_SEALING);
        static uint64_t buf[8192 / 8];
        fill_pattern(buf, sizeof buf, 808);
        if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK))
            DIE("memfd");
        map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            DIE("mmap memfd");
    } else if (!strcmp(mode, "flock")) {
        fd = open(wl_path("lockfile"), O_RDWR | O_CREAT, 0644);
        if (fd < 0 || flock(fd, LOCK_EX))
            DIE("flock");
    } else if (!strcmp(mode, "posixlock")) {
        fd = open(wl_path("lockfile"), O_RDWR | O_CREAT, 0644);
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10 };
        if (fd < 0 || fcntl(fd, F_SETLK, &fl))
            DIE("F_SETLK");
    } else if (!strcmp(mode, "fifo")) {
        if (mkfifo(wl_path("fifo"), 0600) && errno != EEXIST)
            DIE("mkfifo");
        fd = open(wl_path("fifo"), O_RDWR | O_NONBLOCK);
        if (fd < 0 || write(fd, "fifo!", 5) != 5)
            DIE("fifo");
    } else {
        DIE("unknown mode");
    }
    info("fd", "%d", fd);
    ready();
    wait_go();

    if (!strcmp(mode, "eventfd")) {
        eventfd_check(fd);
    } else if (!strcmp(mode, "signalfd")) {
        signalfd_check(fd);
    } else if (!strcmp(mode, "timerfd")) {
        timerfd_check(fd);
    } else if (!strcmp(mode, "epoll")) {
        epoll_check(fd);
    } else if (!strcmp(mode, "epoll_closed")) {
        epoll_closed_check(fd);
    } else if (!strcmp(mode, "inotify")) {
        inotify_check(fd);
    } else if (!strcmp(mode, "memfd")) {
        static uint64_t buf[8192 / 8];
        long bad = check_pattern(map, 8192, 808);
        CHECK(bad < 0, "memfd mapping differs at word %ld", bad);
        CHECK(pread(fd, buf, 8192, 0) == 8192 && memcmp(buf, map, 8192) == 0, "memfd content differs from mapping");
        CHECK(fcntl(fd, F_GET_SEALS) == F_SEAL_SHRINK, "memfd seals %#x, want F_SEAL_SHRINK", fcntl(fd, F_GET_SEALS));
        map[0] ^= 1;
        char c;
        CHECK(pread(fd, &c, 1, 0) == 1 && c == map[0], "memfd mapping no longer shared with the fd");
        char l[256] = { 0 }, p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        CHECK(readlink(p, l, sizeof l - 1) > 0 && strstr(l, "memfd:stasis-memfd"), "memfd name lost: %s", l);
    } else if (!strcmp(mode, "flock")) {
        int f2 = open(wl_path("lockfile"), O_RDWR);
        CHECK(f2 >= 0 && flock(f2, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK,
              "flock lock lost: another description could take it");
        close(f2);
    } else if (!strcmp(mode, "posixlock")) {
        int f2 = open(wl_path("lockfile"), O_RDWR);
        struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0 };
        CHECK(f2 >= 0 && fcntl(f2, F_OFD_GETLK, &q) == 0, "F_OFD_GETLK: %s", strerror(errno));
        CHECK(q.l_type == F_WRLCK && q.l_start == 10 && q.l_len == 10 && q.l_pid == getpid(),
              "POSIX lock lost: type %d start %ld len %ld pid %d", q.l_type, (long)q.l_start, (long)q.l_len,
              (int)q.l_pid);
        close(f2);
    } else if (!strcmp(mode, "fifo")) {
        char b[8] = { 0 };
        CHECK(read(fd, b, sizeof b) == 5 && !memcmp(b, "fifo!", 5), "fifo data '%s'", b);
    }
    return finish();
}
