/*
 * tracer (helper, not a workload): attaches to PID with PTRACE_SEIZE (the
 * tracee keeps running), prints READY, then waits until killed.  Makes
 * "process already traced" reproducible.   args: WORKDIR PID
 */
#include "common.h"
#include <signal.h>
#include <sys/ptrace.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 3)
        return 2;
    pid_t pid = atoi(argv[2]);
    if (ptrace(PTRACE_SEIZE, pid, 0, 0))
        DIE("PTRACE_SEIZE");
    ready();
    for (;;)
        pause();
}
