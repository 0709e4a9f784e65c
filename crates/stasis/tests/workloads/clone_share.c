/*
 * clone_share: children created with clone() flags that share state without being
 * threads, and a child with a non-default exit signal.
 *   A: clone(CLONE_FILES | CLONE_FS): shares the fd table, cwd and umask with the parent;
 *   B: plain fork (its own table), holds a pipe end;
 *   C: clone() with exit signal SIGUSR1 instead of SIGCHLD.
 * After restore: an fd A opens appears in the parent (same table) but not in B; A's
 * chdir and umask are seen by the parent; B's table still lacks it; C's exit raises
 * SIGUSR1 in the parent (not SIGCHLD) and waitpid(__WALL) reaps it.
 */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack_a[1 << 16], stack_c[1 << 16];
static int ctl[2];       /* parent -> A: commands */
static int ack[2];       /* A -> parent: done */
static volatile sig_atomic_t got_usr1, got_chld;

static void on_usr1(int s) { (void)s; got_usr1 = 1; }
static void on_chld(int s) { (void)s; got_chld = 1; }

static int child_a(void *arg)
{
    (void)arg;
    char c;
    /* wait for the parent's order (after restore) */
    if (read(ctl[0], &c, 1) != 1)
        _exit(2);
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0)
        _exit(3);
    if (chdir("/tmp"))
        _exit(4);
    umask(027);
    int n = fd;
    if (write(ack[1], &n, sizeof n) != sizeof n)
        _exit(5);
    if (read(ctl[0], &c, 1) != 1)
        _exit(6);
    _exit(0);
}

static int cpipe[2]; /* parent -> C: exit now */

static int child_c(void *arg)
{
    (void)arg;
    char x;
    if (read(cpipe[0], &x, 1) != 1)
        _exit(2);
    _exit(9);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    signal(SIGUSR1, on_usr1);
    signal(SIGCHLD, on_chld);
    if (pipe(ctl) || pipe(ack) || pipe(cpipe))
        DIE("pipe");
    umask(022);
    if (chdir("/"))
        DIE("chdir");
    pid_t a = clone(child_a, stack_a + sizeof stack_a, CLONE_FILES | CLONE_FS | SIGCHLD, NULL);
    if (a < 0)
        DIE("clone A");
    int bp[2];
    if (pipe(bp))
        DIE("pipe B");
    pid_t b = fork();
    if (b == 0) {
        close(bp[1]);
        /* its own table: remember which fds are open, and after A opened one in the
         * shared table, this table must be unchanged */
        uint64_t before = 0, after = 0;
        for (int i = 0; i < 64; i++)
            if (fcntl(i, F_GETFD) != -1)
                before |= 1ull << i;
        int n;
        if (read(bp[0], &n, sizeof n) != sizeof n)
            _exit(2);
        for (int i = 0; i < 64; i++)
            if (fcntl(i, F_GETFD) != -1)
                after |= 1ull << i;
        _exit(before == after ? 0 : 3);
    }
    close(bp[0]);
    pid_t c = clone(child_c, stack_c + sizeof stack_c, SIGUSR1, NULL);
    if (c < 0)
        DIE("clone C");
    info("a", "%d", (int)a);
    info("b", "%d", (int)b);
    info("c", "%d", (int)c);
    ready();
    wait_go();
    /* A opens a file, moves the shared cwd, changes the shared umask */
    CHECK(write(ctl[1], "x", 1) == 1, "order A");
    int n = -1;
    CHECK(read(ack[0], &n, sizeof n) == sizeof n, "ack from A");
    CHECK(n >= 0 && fcntl(n, F_GETFD) != -1, "fd %d opened by A is not in the parent's table (CLONE_FILES lost)", n);
    char cwd[256] = { 0 };
    CHECK(getcwd(cwd, sizeof cwd) && !strcmp(cwd, "/tmp"), "cwd is '%s' after A's chdir (CLONE_FS lost)", cwd);
    mode_t old = umask(022);
    CHECK(old == 027, "umask %o after A's umask(027) (CLONE_FS lost)", old);
    CHECK(write(ctl[1], "y", 1) == 1, "release A");
    CHECK(write(bp[1], &n, sizeof n) == sizeof n, "send to B");
    int st;
    CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 0, "A ended with %#x", st);
    CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "B ended with %#x (it saw A's fd?)", st);
    got_usr1 = 0;
    got_chld = 0;
    CHECK(write(cpipe[1], "z", 1) == 1, "release C");
    CHECK(waitpid(c, &st, __WALL) == c && WIFEXITED(st) && WEXITSTATUS(st) == 9, "C ended with %#x", st);
    for (int i = 0; i < 100 && !got_usr1; i++)
        sleep_ms(5);
    CHECK(got_usr1, "C's exit did not send SIGUSR1 (exit signal lost)");
    CHECK(!got_chld, "C's exit sent SIGCHLD (exit signal lost)");
    return finish();
}
