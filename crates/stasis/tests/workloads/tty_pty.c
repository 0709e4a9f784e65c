/*
 * A pty pair inside the tree, with its terminal state and data queued both ways.
 *
 *   root (P)        holds the master (packet mode on, slave locked again), writes
 *                   "line one\npartial" into it before READY (the slave's input queue:
 *                   one complete line and a partial one, canonical mode)
 *   C (leader)      setsid(), the slave becomes its controlling terminal; sets a
 *                   termios (no echo, VERASE ^H, 9600 baud...), a window size and
 *                   exclusive mode; opens /dev/tty; writes "out1\n" (the master's read
 *                   queue: "out1\r\n" after ONLCR); makes G's group the foreground one
 *   G               its own process group, foreground
 *
 *   P also holds two slaves opened with TIOCGPTPEER|O_CLOEXEC (fdinfo shows O_CLOEXEC
 *   for good): one made inheritable again (F_SETFD 0, dup'ed onto fd 20), one not.
 *
 * After go: every value is checked from inside (the TIOCGPTPEER slaves' FD_CLOEXEC too); C reads "line one\n" as one line, then
 * "partialtail\n" once P typed "tail\n"; P reads "out1\r\n" (with its packet header) then
 * what C writes through /dev/tty.
 */
#include "common.h"
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

static int read_master(int m, char *buf, int want)
{
    /* packet mode: each read starts with a status byte, 0 (TIOCPKT_DATA) before data */
    int got = 0;
    while (got < want) {
        char tmp[256];
        int r = read(m, tmp, sizeof tmp);
        if (r <= 0)
            return -1;
        if (tmp[0] != 0) {
            printf("FAIL: master packet header %d, want 0 (TIOCPKT_DATA)\n", tmp[0]);
            continue;
        }
        memcpy(buf + got, tmp + 1, r - 1);
        got += r - 1;
    }
    return got;
}

static void check_termios(int fd, const char *who)
{
    struct termios t;
    CHECK(tcgetattr(fd, &t) == 0, "%s: tcgetattr: %s", who, strerror(errno));
    CHECK(!(t.c_lflag & ECHO), "%s: ECHO is on (lflag %#o)", who, t.c_lflag);
    CHECK(t.c_lflag & ICANON, "%s: ICANON is off (lflag %#o)", who, t.c_lflag);
    CHECK(t.c_lflag & ISIG, "%s: ISIG is off (lflag %#o)", who, t.c_lflag);
    CHECK(t.c_iflag & ICRNL, "%s: ICRNL is off (iflag %#o)", who, t.c_iflag);
    CHECK(t.c_oflag & ONLCR, "%s: ONLCR is off (oflag %#o)", who, t.c_oflag);
    CHECK(t.c_cc[VERASE] == 8, "%s: VERASE %d, want 8", who, t.c_cc[VERASE]);
    CHECK(t.c_cc[VKILL] == 21, "%s: VKILL %d, want 21", who, t.c_cc[VKILL]);
    CHECK(t.c_cc[VEOL] == '@', "%s: VEOL %d, want '@'", who, t.c_cc[VEOL]);
    CHECK(cfgetospeed(&t) == B9600, "%s: output speed %d, want B9600", who, (int)cfgetospeed(&t));
}

static int leader(int s, int pfd)
{
    /* C: its own session with the slave as controlling terminal */
    if (setsid() < 0)
        DIE("setsid");
    if (ioctl(s, TIOCSCTTY, 0) < 0)
        DIE("TIOCSCTTY");
    struct termios t;
    if (tcgetattr(s, &t) < 0)
        DIE("tcgetattr");
    t.c_lflag &= ~(ECHO | ECHOE | ECHOK);
    t.c_lflag |= ICANON | ISIG;
    t.c_iflag |= ICRNL;
    t.c_oflag |= OPOST | ONLCR;
    t.c_cc[VERASE] = 8;
    t.c_cc[VKILL] = 21;
    t.c_cc[VEOL] = '@';
    cfsetspeed(&t, B9600);
    if (tcsetattr(s, TCSANOW, &t) < 0)
        DIE("tcsetattr");
    struct winsize ws = { .ws_row = 33, .ws_col = 101, .ws_xpixel = 7, .ws_ypixel = 9 };
    if (ioctl(s, TIOCSWINSZ, &ws) < 0)
        DIE("TIOCSWINSZ");
    if (ioctl(s, TIOCEXCL) < 0)
        DIE("TIOCEXCL");
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0)
        DIE("open /dev/tty");
    pid_t g = fork();
    if (g < 0)
        DIE("fork");
    if (g == 0) {
        setpgid(0, 0);
        wait_go();
        pid_t me = getpid();
        CHECK(getpgrp() == me, "G: process group %d, want its own %d", getpgrp(), me);
        CHECK(getsid(0) == getppid(), "G: session %d, want its parent's %d", getsid(0), getppid());
        CHECK(tcgetpgrp(s) == me, "G: foreground group of its terminal %d, want its own %d", tcgetpgrp(s), me);
        /* the input queue (G is the foreground group): one complete line, then the
         * partial one completed by P */
        char buf[256];
        int n = read(s, buf, sizeof buf);
        CHECK(n == 9 && memcmp(buf, "line one\n", 9) == 0, "G: first read %d bytes '%.*s', want the line 'line one\\n'", n, n > 0 ? n : 0, buf);
        if (write(pfd, "t", 1) != 1) /* P may type the tail now */
            CHECK(0, "G: report: %s", strerror(errno));
        n = read(s, buf, sizeof buf);
        CHECK(n == 12 && memcmp(buf, "partialtail\n", 12) == 0, "G: second read %d bytes '%.*s', want 'partialtail\\n'", n, n > 0 ? n : 0, buf);
        CHECK(write(tty, "via-tty\n", 8) == 8, "G: write to /dev/tty: %s", strerror(errno));
        exit(g_failed ? 1 : 0);
    }
    setpgid(g, g);
    signal(SIGTTOU, SIG_IGN);
    if (tcsetpgrp(s, g) < 0)
        DIE("tcsetpgrp");
    info("g", "%d", g);
    if (write(tty, "out1\n", 5) != 5)
        DIE("write out1");
    /* setup done: tell P */
    if (write(pfd, "k", 1) != 1)
        DIE("report");
    wait_go();
    pid_t me = getpid();
    CHECK(getsid(0) == me, "C: session %d, want its own %d", getsid(0), me);
    struct stat ss, ts;
    CHECK(fstat(s, &ss) == 0 && fstat(tty, &ts) == 0, "C: fstat: %s", strerror(errno));
    CHECK(isatty(tty), "C: its /dev/tty fd is no terminal");
    char st[1024];
    if (read_file("/proc/self/stat", st, sizeof st) > 0) {
        char *p = strrchr(st, ')');
        int tty_nr = 0, tpgid = 0;
        sscanf(p + 2, "%*c %*d %*d %*d %d %d", &tty_nr, &tpgid);
        unsigned long want = (minor(ss.st_rdev) & 0xff) | (major(ss.st_rdev) << 8) | ((minor(ss.st_rdev) & ~0xffUL) << 12);
        CHECK((unsigned long)tty_nr == want, "C: controlling terminal (tty_nr) %#x, want its slave %#lx", tty_nr, want);
        CHECK(tpgid == g, "C: tpgid %d, want G %d", tpgid, g);
    }
    CHECK(tcgetpgrp(s) == g, "C: foreground group %d, want G %d", tcgetpgrp(s), g);
    check_termios(s, "C");
    struct winsize w2;
    CHECK(ioctl(s, TIOCGWINSZ, &w2) == 0, "TIOCGWINSZ: %s", strerror(errno));
    CHECK(w2.ws_row == 33 && w2.ws_col == 101 && w2.ws_xpixel == 7 && w2.ws_ypixel == 9, "C: window %dx%d (%dx%d px), want 33x101 (7x9)",
          w2.ws_row, w2.ws_col, w2.ws_xpixel, w2.ws_ypixel);
    int excl = -1;
    CHECK(ioctl(s, TIOCGEXCL, &excl) == 0 && excl == 1, "C: exclusive mode %d, want 1", excl);
    int stg;
    CHECK(waitpid(g, &stg, 0) == g && WIFEXITED(stg) && WEXITSTATUS(stg) == 0, "C: G failed (status %#x)", stg);
    exit(g_failed ? 1 : 0);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
        DIE("posix_openpt");
    const char *name = ptsname(m);
    info("pts", "%s", name);
    int s = open(name, O_RDWR | O_NOCTTY);
    if (s < 0)
        DIE("open slave");
    int pp[2], back[2];
    if (pipe(pp) < 0 || pipe(back) < 0)
        DIE("pipe");
    pid_t c = fork();
    if (c < 0)
        DIE("fork");
    if (c == 0) {
        close(m);
        close(pp[0]);
        return leader(s, pp[1]);
    }
    close(pp[1]);
    info("c", "%d", c);
    char k;
    if (read(pp[0], &k, 1) != 1)
        DIE("child setup");
    /* the slave's input: a line and a partial one (no echo: nothing comes back) */
    if (write(m, "line one\rpartial", 16) != 16)
        DIE("write to master");
    int n = 0;
    for (int i = 0; i < 500 && n < 9; i++) {
        ioctl(s, FIONREAD, &n);
        sleep_ms(2);
    }
    /* the master's queue holds "out1\r\n" */
    for (int i = 0; i < 500; i++) {
        ioctl(m, FIONREAD, &n);
        if (n == 6)
            break;
        sleep_ms(2);
    }
    if (n != 6) {
        printf("FAIL: setup: master queue %d bytes, want 6\n", n);
        return 1;
    }
    /* slaves opened with TIOCGPTPEER and O_CLOEXEC (the flag stays in the file's flags:
     * fdinfo shows it for good): one made inheritable again, with a dup onto fd 20 (as a
     * program about to exec a shell on it), one left close-on-exec */
    int peer = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int peer_cx = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0 || peer_cx < 0 || fcntl(peer, F_SETFD, 0) < 0 || dup2(peer, 20) != 20)
        DIE("TIOCGPTPEER");
    int one = 1;
    if (ioctl(m, TIOCPKT, &one) < 0)
        DIE("TIOCPKT");
    if (ioctl(m, TIOCSPTLCK, &one) < 0)
        DIE("TIOCSPTLCK");
    close(s);
    ready();
    wait_go();
    CHECK(fcntl(peer, F_GETFD) == 0 && fcntl(20, F_GETFD) == 0, "P: inheritable slaves (TIOCGPTPEER) are close-on-exec: %d %d", fcntl(peer, F_GETFD), fcntl(20, F_GETFD));
    CHECK(fcntl(peer_cx, F_GETFD) == FD_CLOEXEC, "P: a close-on-exec slave is inheritable");
    int pk = -1, lk = -1;
    CHECK(ioctl(m, TIOCGPKT, &pk) == 0 && pk == 1, "P: packet mode %d, want 1", pk);
    CHECK(ioctl(m, TIOCGPTLCK, &lk) == 0 && lk == 1, "P: slave lock %d, want 1", lk);
    check_termios(m, "P (through the master)");
    char buf[64] = { 0 };
    n = read_master(m, buf, 6);
    CHECK(n == 6 && memcmp(buf, "out1\r\n", 6) == 0, "P: master queue '%.*s' (%d bytes), want 'out1\\r\\n'", n > 0 ? n : 0, buf, n);
    if (read(pp[0], &k, 1) != 1)
        CHECK(0, "P: C's report");
    CHECK(write(m, "tail\r", 5) == 5, "P: write tail: %s", strerror(errno));
    n = read_master(m, buf, 9);
    CHECK(n == 9 && memcmp(buf, "via-tty\r\n", 9) == 0, "P: from /dev/tty '%.*s' (%d), want 'via-tty\\r\\n'", n > 0 ? n : 0, buf, n);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "P: C failed (status %#x)", st);
    return finish();
}
