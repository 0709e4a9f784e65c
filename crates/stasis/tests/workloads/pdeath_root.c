/*
 * pdeath_root: the root of the tree has a parent-death signal (SIGUSR2, caught and
 * counted). Its parent (the test) never dies, so after `restore -d` the signal must
 * not have come (the restorer, which exits, must not have been its parent when the
 * signal was armed), it is still armed, and the parent is the original one again (the
 * nearest subreaper, the test).
 */
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>

static volatile sig_atomic_t fired;

static void on_usr2(int sig)
{
    (void)sig;
    fired++;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    signal(SIGUSR2, on_usr2);
    if (prctl(PR_SET_PDEATHSIG, SIGUSR2))
        DIE("PR_SET_PDEATHSIG");
    pid_t parent = getppid();
    ready();
    wait_go();
    sleep_ms(100);
    int pd = 0;
    prctl(PR_GET_PDEATHSIG, &pd);
    CHECK(fired == 0, "the parent-death signal came %d times", (int)fired);
    CHECK(pd == SIGUSR2, "parent-death signal %d, want %d", pd, SIGUSR2);
    CHECK(getppid() == parent, "parent %d, was %d", getppid(), parent);
    return finish();
}
