/*
 * fds_misc: one less common kind of fd per run (MODE), each with state that
 * must survive.  Used by "supported or cleanly refused" tests.
 *   eventfd    counter 5 + 2 written, nonblocking        -> read gives 7
 *   signalfd   for SIGUSR1 (blocked, pending)            -> read gives SIGUSR1
 *   timerfd    CLOCK_MONOTONIC, 300 ms interval, armed   -> expirations > 0,
 *                                                           interval kept
 *   inotify    watch WORKDIR for IN_CREATE               -> sees "go"
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
#include <sys/timerfd.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "eventfd";
    int fd = -1;
    char *map = NULL;
    if (!strcmp(mode, "eventfd")) {
        fd = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
        uint64_t v = 2;
        if (fd < 0 || write(fd, &v, 8) != 8)
            DIE("eventfd");
    } else if (!strcmp(mode, "signalfd")) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR1);
        sigprocmask(SIG_BLOCK, &s, NULL);
        fd = signalfd(-1, &s, SFD_NONBLOCK);
        if (fd < 0 || raise(SIGUSR1))
            DIE("signalfd");
    } else if (!strcmp(mode, "timerfd")) {
        fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        struct itimerspec its = { { 0, 300000000 }, { 0, 300000000 } };
        if (fd < 0 || timerfd_settime(fd, 0, &its, NULL))
            DIE("timerfd");
    } else if (!strcmp(mode, "inotify")) {
        fd = inotify_init1(IN_NONBLOCK);
        if (fd < 0 || inotify_add_watch(fd, g_dir, IN_CREATE) < 0)
            DIE("inotify");
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
        uint64_t v = 0;
        CHECK(read(fd, &v, 8) == 8 && v == 7, "eventfd counter %llu, want 7", (unsigned long long)v);
    } else if (!strcmp(mode, "signalfd")) {
        struct signalfd_siginfo si;
        memset(&si, 0, sizeof si);
        CHECK(read(fd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1, "signalfd read signo %u (%s)",
              si.ssi_signo, strerror(errno));
    } else if (!strcmp(mode, "timerfd")) {
        struct itimerspec g;
        CHECK(timerfd_gettime(fd, &g) == 0 && g.it_interval.tv_nsec == 300000000 && g.it_interval.tv_sec == 0,
              "timerfd interval lost");
        uint64_t n = 0;
        for (int i = 0; i < 200; i++) {
            if (read(fd, &n, 8) == 8)
                break;
            sleep_ms(10);
        }
        CHECK(n > 0, "timerfd never expired after restore");
    } else if (!strcmp(mode, "inotify")) {
        char buf[4096] __attribute__((aligned(8)));
        int seen = 0;
        for (int i = 0; i < 200 && !seen; i++) {
            ssize_t r = read(fd, buf, sizeof buf);
            for (char *p = buf; r > 0 && p < buf + r;) {
                struct inotify_event *e = (struct inotify_event *)p;
                if ((e->mask & IN_CREATE) && e->len && !strcmp(e->name, "go"))
                    seen = 1;
                p += sizeof *e + e->len;
            }
            if (!seen)
                sleep_ms(10);
        }
        CHECK(seen, "inotify watch did not report the creation of 'go'");
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
