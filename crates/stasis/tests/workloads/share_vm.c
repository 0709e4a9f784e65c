/*
 * share_vm: a parent sharing its address space with a child that is not its thread.
 *   vfork: the parent waits in vfork() until the child exits (after `go`);
 *   vm:    clone(CLONE_VM | CLONE_SIGHAND) child waiting for `go`.
 * stasis must refuse both (restoring them as copies would break the sharing); the
 * workload then finishes normally: the child writes a value the parent must see.
 * args: WORKDIR vfork|vm
 */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack[1 << 16];
static volatile int shared_word;

static int vm_child(void *arg)
{
    (void)arg;
    wait_go();
    shared_word = 42;
    return 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        DIE("mode");
    pid_t c;
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
        c = clone(vm_child, stack + sizeof stack, CLONE_VM | CLONE_SIGHAND | SIGCHLD, NULL);
        if (c < 0)
            DIE("clone");
        info("child", "%d", (int)c);
        ready();
    }
    int st;
    CHECK(waitpid(c, &st, __WALL) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
    CHECK(shared_word == 42, "child's write not seen (%d)", shared_word);
    return finish();
}
