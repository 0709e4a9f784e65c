/*
 * fdkinds: fds that are not open files (MODE picks one set), each checked by value
 * after restore.
 *   opath   O_PATH fds of a regular file (a dup shares it, cloexec on one), of
 *           WORKDIR (O_DIRECTORY) and of a symlink (O_PATH|O_NOFOLLOW)
 *             -> F_GETFL has O_PATH; fstat says symlink / regular / directory, same
 *                inodes as the paths; readlinkat(fd, "") gives the link's target;
 *                openat(dirfd, "reg") and /proc/self/fd reopen read the content
 *   pidfd   A: pidfd_open of a running child, watched by an epoll (data 77)
 *           B: pidfd_getfd copy of A (same description)
 *           C: PIDFD_THREAD|PIDFD_NONBLOCK pidfd of ourselves, not cloexec
 *           D: pidfd of a child that exited with 7 and was not reaped (zombie)
 *           E: pidfd of a helper that exited and was reaped
 *             -> fdinfo Pid: child / self / zombie / -1; flags; A not readable until
 *                pidfd_send_signal(A, SIGTERM), then epoll_wait gives 77 and
 *                waitid(P_PIDFD, B) says killed by SIGTERM; waitid(P_PIDFD, D) gives
 *                exit 7; E readable, pidfd_send_signal(E) fails with ESRCH
 *   nsfd    fds of our own net, uts, ipc, mnt, pid, cgroup namespaces and of the UTS
 *           namespace of a child that unshared it ("fdk-child")
 *             -> same inodes as /proc/self/ns/TYPE; NS_GET_NSTYPE; a process that
 *                setns()es with the child's fd sees hostname "fdk-child"
 *   lease   a read lease (F_SETSIG SIGRTMIN+2) on WORKDIR/rlease and a write lease on
 *           WORKDIR/wlease
 *             -> F_GETLEASE, F_GETSIG kept; a child opening rlease for writing breaks
 *                it: SIGRTMIN+2 arrives with si_fd = the fd; after F_UNLCK the
 *                child's open completes
 *   fanotify  a group (FAN_CLASS_NOTIF, nonblocking, event fds O_RDONLY) marking
 *           WORKDIR/fan (FAN_MODIFY|FAN_CLOSE_WRITE), WORKDIR (FAN_OPEN on children),
 *           WORKDIR/ign (ignored FAN_OPEN surviving modification), WORKDIR's mount
 *           and filesystem (FAN_OPEN_EXEC)
 *             -> fdinfo flags and mark lines identical; a write to WORKDIR/fan after
 *                restore is reported with an event fd of that file
 *   inotify_removed  an inotify watch on WORKDIR/gone, removed while an fd keeps it
 *           (refused at dump); a watch on a removed file nothing holds is dropped by
 *           the kernel (only IN_IGNORED remains)
 *   aio     an aio context (io_setup; its ring is mapped at the context id) whose ring
 *           header the program overwrote (magic 0): refused at dump, naming the context
 *   iouring an io_uring instance (refused at dump)
 *   uffd    a userfaultfd (refused at dump)
 *   pidfd_outside  a pidfd of our parent, outside the tree (refused)
 *   nsfd_foreign   the UTS namespace fd of a child that exited (refused)
 * Prints "INFO fd=N" for the fd of interest.
 */
#include "common.h"
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <linux/nsfs.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int cloexec(int fd) { return fcntl(fd, F_GETFD) & FD_CLOEXEC; }

static int readable(int fd)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    return poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN);
}

static long fdinfo_pid(int fd)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    if (read_file(path, buf, sizeof buf) < 0)
        return -100;
    char *p = strstr(buf, "\nPid:");
    return p ? strtol(p + 5, NULL, 10) : -100;
}

static ino_t ino_of(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : st.st_ino;
}

static ino_t fd_ino(int fd)
{
    struct stat st;
    return fstat(fd, &st) ? 0 : st.st_ino;
}

static void put(const char *name, const char *s)
{
    int f = open(wl_path(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f < 0 || write(f, s, strlen(s)) != (ssize_t)strlen(s))
        DIE("write file");
    close(f);
}

static int opath(void)
{
    put("reg", "hello");
    unlink(wl_path("lnk"));
    if (symlink("target-of-link", wl_path("lnk")))
        DIE("symlink");
    int reg = open(wl_path("reg"), O_PATH | O_CLOEXEC);
    int reg2 = fcntl(reg, F_DUPFD, 20);
    int dir = open(g_dir, O_PATH | O_DIRECTORY);
    int lnk = open(wl_path("lnk"), O_PATH | O_NOFOLLOW);
    if (reg < 0 || reg2 < 0 || dir < 0 || lnk < 0)
        DIE("O_PATH open");
    info("fd", "%d", lnk);
    ready();
    wait_go();
    struct stat st;
    CHECK(fcntl(lnk, F_GETFL) & O_PATH, "symlink fd lost O_PATH (flags %o)", fcntl(lnk, F_GETFL));
    CHECK(fcntl(reg, F_GETFL) & O_PATH, "file fd lost O_PATH");
    CHECK(fcntl(dir, F_GETFL) & O_PATH, "dir fd lost O_PATH");
    CHECK(fstatat(lnk, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode), "symlink fd is not a symlink (mode %o)", st.st_mode);
    struct stat lst;
    CHECK(lstat(wl_path("lnk"), &lst) == 0 && lst.st_ino == st.st_ino, "symlink fd is of another inode");
    char t[256] = { 0 };
    ssize_t n = readlinkat(lnk, "", t, sizeof t - 1);
    CHECK(n == 14 && !strcmp(t, "target-of-link"), "readlinkat(fd, \"\") gave %zd \"%s\"", n, t);
    CHECK(fd_ino(reg) == ino_of(wl_path("reg")) && fstat(reg, &st) == 0 && S_ISREG(st.st_mode), "file O_PATH fd is of another inode");
    CHECK(fd_ino(dir) == ino_of(g_dir), "dir O_PATH fd is of another inode");
    CHECK(cloexec(reg) && cloexec(reg2) == 0 && cloexec(lnk) == 0, "FD_CLOEXEC %d %d %d", cloexec(reg), cloexec(reg2), cloexec(lnk));
    CHECK(syscall(SYS_kcmp, getpid(), getpid(), 0, reg, reg2) == 0, "dup of the O_PATH fd is another description");
    char buf[16] = { 0 };
    int r = openat(dir, "reg", O_RDONLY);
    CHECK(r >= 0 && read(r, buf, sizeof buf) == 5 && !memcmp(buf, "hello", 5), "openat(dirfd) does not read the file");
    close(r);
    char via[64];
    snprintf(via, sizeof via, "/proc/self/fd/%d", reg);
    memset(buf, 0, sizeof buf);
    r = open(via, O_RDONLY);
    CHECK(r >= 0 && read(r, buf, sizeof buf) == 5 && !memcmp(buf, "hello", 5), "reopening the O_PATH fd does not read the file");
    close(r);
    CHECK(read(reg, buf, 1) < 0 && errno == EBADF, "read through an O_PATH fd did not fail with EBADF");
    return finish();
}

static int pidfd(void)
{
    pid_t kid = fork();
    if (kid == 0) {
        for (;;)
            pause();
    }
    pid_t zomb = fork();
    if (zomb == 0)
        _exit(7);
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    int e = syscall(SYS_pidfd_open, gone, 0);
    if (waitpid(gone, NULL, 0) != gone)
        DIE("waitpid");
    int a = syscall(SYS_pidfd_open, kid, 0);
    int self = syscall(SYS_pidfd_open, getpid(), 0);
    int b = syscall(SYS_pidfd_getfd, self, a, 0);
    close(self);
    int c = syscall(SYS_pidfd_open, getpid(), PIDFD_THREAD | O_NONBLOCK);
    if (c >= 0)
        fcntl(c, F_SETFD, 0);
    int d = syscall(SYS_pidfd_open, zomb, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 77 };
    if (a < 0 || b < 0 || c < 0 || d < 0 || e < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev))
        DIE("pidfd setup");
    /* the zombie must be one before the dump */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, zomb, &si, WEXITED | WNOWAIT) || si.si_pid != zomb)
        DIE("waitid WNOWAIT");
    info("fd", "%d", a);
    info("kid", "%d", kid);
    ready();
    wait_go();
    CHECK(fdinfo_pid(a) == kid, "pidfd A: Pid %ld, want %d", fdinfo_pid(a), kid);
    CHECK(fdinfo_pid(b) == kid, "pidfd B: Pid %ld, want %d", fdinfo_pid(b), kid);
    CHECK(fdinfo_pid(c) == getpid(), "pidfd C: Pid %ld, want %d", fdinfo_pid(c), getpid());
    CHECK(fdinfo_pid(d) == zomb, "pidfd D: Pid %ld, want %d", fdinfo_pid(d), zomb);
    CHECK(fdinfo_pid(e) == -1, "pidfd E: Pid %ld, want -1", fdinfo_pid(e));
    int fl = fcntl(c, F_GETFL);
    CHECK((fl & O_NONBLOCK) && (fl & PIDFD_THREAD), "pidfd C flags %o (want O_NONBLOCK and PIDFD_THREAD)", fl);
    CHECK(!(fcntl(a, F_GETFL) & (O_NONBLOCK | PIDFD_THREAD)), "pidfd A flags %o", fcntl(a, F_GETFL));
    CHECK(cloexec(a) && !cloexec(c), "FD_CLOEXEC of A %d, C %d", cloexec(a), cloexec(c));
    CHECK(syscall(SYS_kcmp, getpid(), getpid(), 0, a, b) == 0, "pidfds A and B are not one description");
    CHECK(syscall(SYS_pidfd_send_signal, c, 0, NULL, 0) == 0, "pidfd_send_signal(C, 0): %s", strerror(errno));
    CHECK(!readable(a), "pidfd A readable while its child runs");
    CHECK(readable(e), "pidfd E of a reaped process not readable");
    CHECK(syscall(SYS_pidfd_send_signal, e, SIGTERM, NULL, 0) < 0 && errno == ESRCH, "pidfd_send_signal(E) did not fail with ESRCH");
    CHECK(readable(d), "pidfd D of a zombie not readable");
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PIDFD, d, &si, WEXITED) == 0 && si.si_pid == zomb && si.si_code == CLD_EXITED && si.si_status == 7,
          "waitid(P_PIDFD, D): pid %d code %d status %d", si.si_pid, si.si_code, si.si_status);
    CHECK(syscall(SYS_pidfd_send_signal, a, SIGTERM, NULL, 0) == 0, "pidfd_send_signal(A, SIGTERM): %s", strerror(errno));
    struct epoll_event got = { 0 };
    int n = epoll_wait(ep, &got, 1, 5000);
    CHECK(n == 1 && got.data.u64 == 77, "epoll on pidfd A: %d events, data %llu", n, (unsigned long long)got.data.u64);
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PIDFD, b, &si, WEXITED) == 0 && si.si_pid == kid && si.si_code == CLD_KILLED && si.si_status == SIGTERM,
          "waitid(P_PIDFD, B): pid %d code %d status %d", si.si_pid, si.si_code, si.si_status);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, WNOHANG);
    return finish();
}

static int nsfd(void)
{
    int p[2];
    if (pipe(p))
        DIE("pipe");
    pid_t kid = fork();
    if (kid == 0) {
        if (unshare(CLONE_NEWUTS) || sethostname("fdk-child", 9))
            _exit(1);
        if (write(p[1], "k", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char k;
    if (read(p[0], &k, 1) != 1)
        DIE("child did not unshare");
    static const char *types[] = { "net", "uts", "ipc", "mnt", "pid", "cgroup" };
    static const int nstypes[] = { CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWCGROUP };
    int fds[6];
    char path[64];
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "/proc/self/ns/%s", types[i]);
        fds[i] = open(path, O_RDONLY | (i % 2 ? O_CLOEXEC : 0));
        if (fds[i] < 0)
            DIE("open ns");
    }
    snprintf(path, sizeof path, "/proc/%d/ns/uts", kid);
    int kfd = open(path, O_RDONLY);
    if (kfd < 0)
        DIE("open child uts ns");
    info("fd", "%d", kfd);
    info("kid", "%d", kid);
    ready();
    wait_go();
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "/proc/self/ns/%s", types[i]);
        CHECK(fd_ino(fds[i]) == ino_of(path), "%s namespace fd is of another namespace", types[i]);
        CHECK(ioctl(fds[i], NS_GET_NSTYPE) == nstypes[i], "%s namespace fd: NS_GET_NSTYPE %d", types[i], ioctl(fds[i], NS_GET_NSTYPE));
        CHECK(!!cloexec(fds[i]) == (i % 2), "%s namespace fd: FD_CLOEXEC %d", types[i], cloexec(fds[i]));
    }
    snprintf(path, sizeof path, "/proc/%d/ns/uts", kid);
    CHECK(fd_ino(kfd) == ino_of(path), "the child's UTS namespace fd is not of the child's namespace");
    CHECK(fd_ino(kfd) != ino_of("/proc/self/ns/uts"), "the child's UTS namespace fd is ours");
    CHECK(ioctl(kfd, NS_GET_NSTYPE) == CLONE_NEWUTS, "child's namespace fd: NS_GET_NSTYPE");
    pid_t j = fork();
    if (j == 0) {
        char h[64] = { 0 };
        if (setns(kfd, CLONE_NEWUTS) || gethostname(h, sizeof h) || strcmp(h, "fdk-child"))
            _exit(1);
        _exit(0);
    }
    int st = -1;
    waitpid(j, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "setns with the child's UTS namespace fd did not give hostname fdk-child");
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    return finish();
}

static volatile sig_atomic_t g_sig_fd = -1, g_sig_no;

static void on_lease(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    g_sig_no = sig;
    g_sig_fd = si->si_fd;
}

static int lease(void)
{
    put("rlease", "r");
    put("wlease", "w");
    int r = open(wl_path("rlease"), O_RDONLY);
    int w = open(wl_path("wlease"), O_RDWR);
    int sig = SIGRTMIN + 2;
    struct sigaction sa = { .sa_sigaction = on_lease, .sa_flags = SA_SIGINFO };
    sigaction(sig, &sa, NULL);
    if (r < 0 || w < 0 || fcntl(r, F_SETSIG, sig) || fcntl(r, F_SETLEASE, F_RDLCK) || fcntl(w, F_SETLEASE, F_WRLCK))
        DIE("lease setup");
    info("fd", "%d", r);
    ready();
    wait_go();
    CHECK(fcntl(r, F_GETLEASE) == F_RDLCK, "read lease: F_GETLEASE %d", fcntl(r, F_GETLEASE));
    CHECK(fcntl(w, F_GETLEASE) == F_WRLCK, "write lease: F_GETLEASE %d", fcntl(w, F_GETLEASE));
    CHECK(fcntl(r, F_GETSIG) == sig, "F_GETSIG %d, want %d", fcntl(r, F_GETSIG), sig);
    CHECK(fcntl(w, F_GETSIG) == 0, "F_GETSIG of the write lease %d", fcntl(w, F_GETSIG));
    pid_t opener = fork();
    if (opener == 0) {
        int f = open(wl_path("rlease"), O_WRONLY);
        _exit(f >= 0 ? 0 : 1);
    }
    for (int i = 0; i < 500 && g_sig_fd < 0; i++)
        sleep_ms(10);
    CHECK(g_sig_no == sig && g_sig_fd == r, "lease break: signal %d with si_fd %d (want %d, %d)", (int)g_sig_no, (int)g_sig_fd, sig, r);
    fcntl(r, F_SETLEASE, F_UNLCK);
    int st = -1;
    waitpid(opener, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the opener's open did not complete after F_UNLCK");
    return finish();
}

/* The "fanotify" lines of fd's fdinfo, sorted, joined. */
static void fan_lines(int fd, char *out, size_t cap)
{
    char path[64], buf[16384];
    char *lines[64];
    int n = 0;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    out[0] = 0;
    if (read_file(path, buf, sizeof buf) < 0)
        return;
    for (char *l = strtok(buf, "\n"); l && n < 64; l = strtok(NULL, "\n"))
        if (!strncmp(l, "fanotify ", 9))
            lines[n++] = l;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(lines[i], lines[j]) > 0) {
                char *t = lines[i];
                lines[i] = lines[j];
                lines[j] = t;
            }
    for (int i = 0; i < n; i++) {
        strncat(out, lines[i], cap - strlen(out) - 2);
        strcat(out, "\n");
    }
}

static int fan(void)
{
    static char before[8192], after[8192];
    put("fan", "f");
    put("ign", "i");
    int f = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
    if (f < 0 || fanotify_mark(f, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, wl_path("fan")) ||
        fanotify_mark(f, FAN_MARK_ADD, FAN_OPEN | FAN_EVENT_ON_CHILD, AT_FDCWD, g_dir) ||
        fanotify_mark(f, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, AT_FDCWD, wl_path("ign")) ||
        fanotify_mark(f, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC, AT_FDCWD, g_dir) ||
        fanotify_mark(f, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC, AT_FDCWD, g_dir))
        DIE("fanotify setup");
    fan_lines(f, before, sizeof before);
    info("fd", "%d", f);
    ready();
    wait_go();
    fan_lines(f, after, sizeof after);
    CHECK(!strcmp(before, after), "fanotify fdinfo differs:\n%s---- was\n%s", after, before);
    CHECK(fcntl(f, F_GETFL) & O_NONBLOCK, "fanotify fd lost O_NONBLOCK");
    CHECK(cloexec(f), "fanotify fd lost FD_CLOEXEC");
    static char ev[65536];
    while (read(f, ev, sizeof ev) > 0)
        ; /* events of the harness's opens */
    int w = open(wl_path("fan"), O_WRONLY);
    if (w < 0 || write(w, "x", 1) != 1)
        DIE("write fan");
    close(w);
    int seen = 0;
    for (int tries = 0; tries < 100 && !seen; tries++) {
        ssize_t n = read(f, ev, sizeof ev);
        if (n <= 0) {
            sleep_ms(10);
            continue;
        }
        for (struct fanotify_event_metadata *m = (void *)ev; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->fd >= 0) {
                char p[64], t[4096] = { 0 };
                snprintf(p, sizeof p, "/proc/self/fd/%d", m->fd);
                if (readlink(p, t, sizeof t - 1) > 0 && !strcmp(t, wl_path("fan")) && (m->mask & FAN_MODIFY))
                    seen = 1;
                close(m->fd);
            }
        }
    }
    CHECK(seen, "no FAN_MODIFY event for %s after restore", wl_path("fan"));
    return finish();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "opath";
    int fd = -1;
    if (!strcmp(mode, "opath"))
        return opath();
    if (!strcmp(mode, "pidfd"))
        return pidfd();
    if (!strcmp(mode, "nsfd"))
        return nsfd();
    if (!strcmp(mode, "lease"))
        return lease();
    if (!strcmp(mode, "fanotify"))
        return fan();
    if (!strcmp(mode, "iouring")) {
        long params[30] = { 0 };
        fd = syscall(425 /* io_uring_setup */, 8, params);
    } else if (!strcmp(mode, "inotify_removed")) {
        put("gone", "g");
        put("gone2", "g");
        int keep = open(wl_path("gone"), O_RDONLY);
        fd = inotify_init1(IN_CLOEXEC);
        if (keep < 0 || fd < 0 || inotify_add_watch(fd, wl_path("gone"), IN_MODIFY) < 0 ||
            inotify_add_watch(fd, wl_path("gone2"), IN_MODIFY) < 0 || unlink(wl_path("gone")) || unlink(wl_path("gone2")))
            DIE("inotify_removed");
    } else if (!strcmp(mode, "aio")) {
        unsigned long ctx = 0;
        if (syscall(SYS_io_setup, 16, &ctx))
            DIE("io_setup");
        ((unsigned *)ctx)[4] = 0; /* the header's magic */
        fd = 0;
        info("ring", "%lx", ctx);
    } else if (!strcmp(mode, "uffd")) {
        fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    } else if (!strcmp(mode, "pidfd_outside")) {
        fd = syscall(SYS_pidfd_open, getppid(), 0);
    } else if (!strcmp(mode, "nsfd_foreign")) {
        pid_t kid = fork();
        if (kid == 0) {
            if (unshare(CLONE_NEWUTS))
                _exit(1);
            sleep_ms(5000);
            _exit(0);
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/uts", kid);
        for (int i = 0; i < 500; i++) {
            fd = open(path, O_RDONLY);
            if (fd >= 0 && fd_ino(fd) != ino_of("/proc/self/ns/uts"))
                break;
            if (fd >= 0)
                close(fd);
            fd = -1;
            sleep_ms(5);
        }
        kill(kid, SIGKILL);
        waitpid(kid, NULL, 0);
    }
    if (fd < 0)
        DIE(mode);
    info("fd", "%d", fd);
    ready();
    wait_go();
    return finish();
}
