/*
 * tree_zombies: a parent with NZ zombie children, each exited with its own status
 * (exit codes 11, 22, ...; the last one killed by SIGTERM, another by SIGUSR1), and one
 * live child that waits for `go`.  After restore the parent reaps each zombie by pid
 * with WNOHANG (it must already be a zombie: no wait), checks its status, then reaps
 * the live child, and checks that no other child is left.  The zombies' pids are
 * printed so the harness can check they exist (as zombies) after the restore.
 */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

#define NZ 6

static int want_status(int i, int *sig)
{
    *sig = 0;
    if (i == NZ - 1)
        *sig = SIGTERM;
    else if (i == 2)
        *sig = SIGUSR1;
    return 11 * (i + 1);
}

static int is_zombie(pid_t p)
{
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    return read_file(path, st, sizeof st) > 0 && strstr(st, ") Z ");
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pid_t z[NZ];
    for (int i = 0; i < NZ; i++) {
        int sig, code = want_status(i, &sig);
        z[i] = fork();
        if (z[i] < 0)
            DIE("fork");
        if (z[i] == 0) {
            if (sig) {
                signal(sig, SIG_DFL);
                kill(getpid(), sig);
            }
            _exit(code);
        }
    }
    pid_t live = fork();
    if (live == 0) {
        wait_go();
        CHECK(getppid() != 1, "live child lost its parent");
        _exit(g_failed ? 1 : 5);
    }
    for (int i = 0; i < NZ; i++)
        for (int k = 0; k < 500 && !is_zombie(z[i]); k++)
            sleep_ms(10);
    for (int i = 0; i < NZ; i++) {
        char k[16];
        snprintf(k, sizeof k, "z%d", i);
        info(k, "%d", (int)z[i]);
    }
    info("live", "%d", (int)live);
    ready();
    wait_go();
    /* reap in an order different from creation */
    for (int n = 0; n < NZ; n++) {
        int i = (n * 5 + 3) % NZ;
        int sig, code = want_status(i, &sig), st = 0;
        pid_t r = waitpid(z[i], &st, WNOHANG);
        if (sig)
            CHECK(r == z[i] && WIFSIGNALED(st) && WTERMSIG(st) == sig, "zombie %d (pid %d): waitpid %d, status %#x, want signal %d",
                  i, (int)z[i], (int)r, st, sig);
        else
            CHECK(r == z[i] && WIFEXITED(st) && WEXITSTATUS(st) == code,
                  "zombie %d (pid %d): waitpid %d, status %#x, want exit %d", i, (int)z[i], (int)r, st, code);
    }
    int st = 0;
    CHECK(waitpid(live, &st, 0) == live && WIFEXITED(st) && WEXITSTATUS(st) == 5, "live child: status %#x", st);
    CHECK(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "an unexpected child is left");
    return finish();
}
