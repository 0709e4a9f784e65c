/*
 * A shell job on a terminal (for `--shell-job`).
 *
 *   tty_job WORKDIR holder PTS CMD ARGS...
 *       a minimal job-control shell: setsid(), PTS becomes its controlling terminal
 *       (fds 0 and 2), CMD runs in a process group of its own as the terminal's
 *       foreground group; exits with CMD's exit code (128+signal if killed). Prints
 *       nothing: its stdout is the job's, which the job's image records.
 *   tty_job WORKDIR job
 *       the job: checks it is the foreground group of its controlling terminal (fd 0),
 *       prints READY; after go it checks that again (on whatever terminal it has now:
 *       the restorer's after restore --shell-job), says "reading" on fd 2, reads a line from fd 0 and answers
 *       "got:LINE" on fd 2.
 */
#include "common.h"
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

static void check_terminal(const char *when)
{
    struct stat s0, s2;
    CHECK(isatty(0) && isatty(2), "%s: fds 0 and 2 are not terminals", when);
    CHECK(fstat(0, &s0) == 0 && fstat(2, &s2) == 0 && s0.st_rdev == s2.st_rdev, "%s: fds 0 and 2 are different terminals", when);
    CHECK(getpgrp() == getpid(), "%s: process group %d, want its own", when, getpgrp());
    CHECK(tcgetpgrp(0) == getpgrp(), "%s: foreground group of its terminal %d, want its own %d", when, tcgetpgrp(0), getpgrp());
    CHECK(getsid(0) != getpid(), "%s: it leads its session (a job is in its shell's)", when);
    char st[1024];
    if (read_file("/proc/self/stat", st, sizeof st) > 0) {
        char *p = strrchr(st, ')');
        int tty_nr = 0;
        sscanf(p + 2, "%*c %*d %*d %*d %d", &tty_nr);
        unsigned long want = (minor(s0.st_rdev) & 0xff) | (major(s0.st_rdev) << 8) | ((minor(s0.st_rdev) & ~0xffUL) << 12);
        CHECK((unsigned long)tty_nr == want, "%s: controlling terminal %#x, want its fd 0's %#lx", when, tty_nr, want);
    }
}

static int job(void)
{
    check_terminal("before");
    info("job", "%d", getpid());
    ready();
    wait_go();
    check_terminal("after");
    /* on the terminal: it is about to read it */
    CHECK(write(2, "reading\n", 8) == 8, "write to the terminal: %s", strerror(errno));
    char buf[256];
    int n = read(0, buf, sizeof buf - 1);
    CHECK(n == 10 && memcmp(buf, "hello-new\n", 10) == 0, "read %d bytes '%.*s' from the terminal, want 'hello-new\\n'", n, n > 0 ? n : 0, buf);
    if (n > 0) {
        char out[300];
        int k = snprintf(out, sizeof out, "got:%.*s", n, buf);
        CHECK(write(2, out, k) == k, "write to the terminal: %s", strerror(errno));
    }
    return finish();
}

static int holder(const char *pts, char **cmd)
{
    if (setsid() < 0)
        DIE("setsid");
    int t = open(pts, O_RDWR); /* the first terminal a session leader opens is its own */
    if (t < 0)
        DIE("open pts");
    if (dup2(t, 0) < 0 || dup2(t, 2) < 0)
        DIE("dup2");
    if (t > 2)
        close(t);
    signal(SIGTTOU, SIG_IGN);
    pid_t c = fork();
    if (c < 0)
        DIE("fork");
    if (c == 0) {
        setpgid(0, 0);
        tcsetpgrp(0, getpid());
        signal(SIGTTOU, SIG_DFL);
        execv(cmd[0], cmd);
        DIE("execv");
    }
    setpgid(c, c);
    tcsetpgrp(0, c);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc >= 5 && strcmp(argv[2], "holder") == 0)
        return holder(argv[3], argv + 4);
    if (argc >= 3 && strcmp(argv[2], "job") == 0)
        return job();
    fprintf(stderr, "usage: %s WORKDIR holder PTS CMD... | job\n", argv[0]);
    return 2;
}
