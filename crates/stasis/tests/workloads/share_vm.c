/*
 * share_vm: a parent sharing its address space with a child that is not its thread.
 *   vfork: the parent waits in vfork() until the child exits (after `go`): stasis must
 *          refuse it (the parent cannot be stopped); the workload then finishes.
 *   vm:    clone(CLONE_VM | CLONE_SIGHAND) child waiting for `go`: after restore the
 *          child writes a global and a heap buffer and installs a SIGUSR2 handler; the
 *          parent must see all three (one address space, one handler table), then
 *          signals itself and the child's handler runs in the parent.
 *   vfork_exec: READY, then vfork(); the child sleeps 500 ms (the dump starts meanwhile
 *          and must wait for the vfork to end) and execs this program as `execd`, which
 *          waits for `go` and exits 7; the parent checks it reaps 7 from that pid.
 * args: WORKDIR vfork|vm|vfork_exec|execd
 */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack[1 << 16];
static volatile int shared_word;
static volatile char *heap;
static volatile sig_atomic_t handled;
static int cpipe[2];

static void on_usr2(int s) { (void)s; handled = 1; }

static int vm_child(void *arg)
{
    (void)arg;
    char c;
    /* the parent says go (after restore) through a pipe */
    if (read(cpipe[0], &c, 1) != 1)
        return 2;
    shared_word = 42;
    memset((char *)heap, 'h', 4096);
    signal(SIGUSR2, on_usr2);
    return 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        DIE("mode");
    pid_t c;
    if (!strcmp(argv[2], "execd")) {
        wait_go();
        return 7;
    }
    if (!strcmp(argv[2], "vfork_exec")) {
        ready();
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            DIE("readlink");
        self[n] = 0;
        char *args[] = { self, argv[1], "execd", NULL };
        c = vfork();
        if (c == 0) {
            struct timespec ts = { 0, 500 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            execv(self, args);
            _exit(99);
        }
        wait_go();
        int st;
        CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 7, "exec'd child %d ended with %#x", (int)c, st);
        return finish();
    }
    if (!strcmp(argv[2], "vfork")) {
        c = vfork();
        if (c == 0) {
            /* the parent is blocked until we exit: announce ourselves with write(2) */
            char b[64];
            int n = snprintf(b, sizeof b, "INFO child=%d\nREADY\n", (int)getpid());
            (void)!write(1, b, n);
            shared_word = 42;
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            char go[4096];
            snprintf(go, sizeof go, "%s/go", g_dir);
            while (access(go, F_OK))
                nanosleep(&ts, NULL);
            _exit(0);
        }
    } else {
        heap = malloc(4096);
        if (!heap || pipe(cpipe))
            DIE("setup");
        memset((char *)heap, 'p', 4096);
        c = clone(vm_child, stack + sizeof stack, CLONE_VM | CLONE_SIGHAND | SIGCHLD, NULL);
        if (c < 0)
            DIE("clone");
        info("child", "%d", (int)c);
        ready();
        wait_go();
        CHECK(write(cpipe[1], "g", 1) == 1, "telling the child");
    }
    int st;
    CHECK(waitpid(c, &st, __WALL) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    CHECK(shared_word == 42, "child's write not seen (%d)", shared_word);
    if (!strcmp(argv[2], "vm")) {
        int same = 1;
        for (int i = 0; i < 4096; i++)
            same &= heap[i] == 'h';
        CHECK(same, "child's heap writes not seen (address space no longer shared)");
        struct sigaction sa;
        CHECK(sigaction(SIGUSR2, NULL, &sa) == 0 && sa.sa_handler == on_usr2, "child's handler not in the parent's table (CLONE_SIGHAND lost)");
        raise(SIGUSR2);
        CHECK(handled, "SIGUSR2 not handled");
    }
    return finish();
}
