/*
 * pidholder (helper, not a workload): creates a child whose PID is exactly
 * argv[2] (clone3 with set_tid; needs root), named "pidholder", which
 * sleeps until killed.  The parent prints "INFO holder=PID", READY, and
 * exits when the child dies.  Used to occupy a TID the image needs.
 * args: WORKDIR PID
 */
#include "common.h"
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        return 2;
    pid_t want = atoi(argv[2]);
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    ca.set_tid = (uint64_t)(uintptr_t)&want;
    ca.set_tid_size = 1;
    fflush(stdout);
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r < 0)
        DIE("clone3 set_tid");
    if (r == 0) {
        prctl(PR_SET_NAME, "pidholder");
        for (;;)
            pause();
    }
    info("holder", "%ld", r);
    ready();
    int st;
    while (waitpid((pid_t)r, &st, 0) < 0 && errno == EINTR)
        ;
    return 0;
}
