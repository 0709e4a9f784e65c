/*
 * sessions: process groups and sessions whose leaders have exited, inside a tree whose
 * root is a child subreaper.
 *   daemon: D1 calls setsid() and forks D2, then exits: D2 is re-parented to the root
 *           (a subreaper) and stays in session D1 and group D1, whose leader is gone;
 *   group:  G1 leads a process group, G2 joins it, G1 exits: G2 stays in group G1.
 * After restore: D2's session and group are D1, its parent the root; G2's group is G1
 * (and signalling group G1 reaches it); the root is still a subreaper; no SIGCHLD and no
 * child other than D2 and G2 appeared (helpers that recreate the groups are invisible);
 * the root reaps D2 and G2 and then has no child left.
 */
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static volatile sig_atomic_t chld_count;
static void on_chld(int s) { (void)s; chld_count++; }
static volatile sig_atomic_t got_usr2, got_usr1;
static void on_usr1(int s) { (void)s; got_usr1 = 1; }
static void on_usr2(int s) { (void)s; got_usr2 = 1; }

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    signal(SIGCHLD, on_chld);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1))
        DIE("subreaper");
    pid_t root = getpid(), root_sid = getsid(0);
    int dp[2];
    if (pipe(dp))
        DIE("pipe");
    pid_t d1 = fork();
    if (d1 == 0) {
        setsid();
        pid_t d2 = fork();
        if (d2 == 0) {
            pid_t leader = getsid(0);
            close(dp[0]);
            close(dp[1]);
            signal(SIGUSR2, on_usr2);
            signal(SIGUSR1, on_usr1);
            /* once re-parented to the root: a parent-death signal, which must neither
             * fire nor be lost when the helper that recreates the session goes away */
            while (getppid() != root)
                sleep_ms(1);
            prctl(PR_SET_PDEATHSIG, SIGUSR1);
            wait_go();
            /* the root signals us once it checked that nothing exited */
            for (int i = 0; i < 400 && !got_usr2; i++)
                sleep_ms(5);
            int bad = 0;
            bad |= getsid(0) != leader;
            bad |= (getpgid(0) != leader) << 1;
            bad |= (getppid() != root) << 2;
            int pd = 0;
            bad |= (prctl(PR_GET_PDEATHSIG, &pd) != 0 || pd != SIGUSR1) << 3;
            bad |= (got_usr1 != 0) << 4;
            _exit(bad);
        }
        (void)!write(dp[1], &d2, sizeof d2);
        _exit(0);
    }
    pid_t d2;
    if (read(dp[0], &d2, sizeof d2) != sizeof d2)
        DIE("read d2");
    int st;
    if (waitpid(d1, &st, 0) != d1)
        DIE("reap d1");
    pid_t g1 = fork();
    if (g1 == 0) {
        pause();
        _exit(0);
    }
    setpgid(g1, g1);
    pid_t g2 = fork();
    if (g2 == 0) {
        signal(SIGUSR2, on_usr2);
        wait_go();
        /* the root signals group g1 after restore */
        for (int i = 0; i < 400 && !got_usr2; i++)
            sleep_ms(5);
        int bad = 0;
        bad |= getpgid(0) != g1;
        bad |= (getsid(0) != root_sid) << 1;
        bad |= (!got_usr2) << 2;
        _exit(bad);
    }
    if (setpgid(g2, g1))
        DIE("setpgid g2");
    kill(g1, SIGKILL);
    if (waitpid(g1, &st, 0) != g1)
        DIE("reap g1");
    /* wait until D2 is ours */
    for (int i = 0; i < 400; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)d2);
        if (read_file(path, buf, sizeof buf) > 0) {
            char *p = strrchr(buf, ')');
            int ppid = 0;
            if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == root)
                break;
        }
        sleep_ms(5);
    }
    sleep_ms(100); /* D2 arms its parent-death signal once it sees the root as parent */
    int before = chld_count;
    info("d1", "%d", (int)d1);
    info("d2", "%d", (int)d2);
    info("g1", "%d", (int)g1);
    info("g2", "%d", (int)g2);
    ready();
    wait_go();
    CHECK(chld_count == before, "SIGCHLD arrived %d times after restore (helpers visible?)", chld_count - before);
    int sr = -1;
    CHECK(prctl(PR_GET_CHILD_SUBREAPER, &sr) == 0 && sr == 1, "no longer a child subreaper (%d)", sr);
    CHECK(getpgid(d2) == d1 && getsid(d2) == d1, "D2: group %d session %d, want %d", (int)getpgid(d2), (int)getsid(d2), (int)d1);
    CHECK(getpgid(g2) == g1, "G2: group %d, want %d", (int)getpgid(g2), (int)g1);
    CHECK(kill(d2, SIGUSR2) == 0, "signalling D2");
    CHECK(kill(-g1, SIGUSR2) == 0, "signalling group %d: %s", (int)g1, strerror(errno));
    CHECK(waitpid(d2, &st, 0) == d2 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "D2 ended with %#x", st);
    CHECK(waitpid(g2, &st, 0) == g2 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "G2 ended with %#x", st);
    errno = 0;
    CHECK(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD, "another child is left");
    return finish();
}
