/*
 * sig_handlers: signal dispositions, the signal mask and the alternate
 * signal stack.
 *   SIGUSR1  SA_SIGINFO|SA_RESTART, sa_mask {SIGUSR2, SIGTERM}
 *   SIGUSR2  SA_NODEFER|SA_RESETHAND
 *   SIGWINCH SA_ONSTACK (sigaltstack of 64 KiB installed)
 *   SIGCHLD  SA_NOCLDSTOP
 *   SIGHUP   SIG_IGN
 *   SIGTRAP  a handler (the dump's injected syscalls must not reset it: a single-step
 *            trap forced on a thread with SIGTRAP blocked resets it to SIG_DFL)
 *   SIGSYS   SIG_IGN
 *   mask     {SIGQUIT, SIGRTMIN+5}
 * After restore: the kernel's view of every signal's sigaction (handler,
 * flags, restorer, mask; read with the raw syscall) equals the one before
 * the dump; the mask and sigaltstack are unchanged; raising each signal runs
 * the right handler with the right mask/stack/siginfo; SIGUSR2's one-shot
 * reset to SIG_DFL works; SIGHUP is still ignored.
 */
#include "common.h"
#include <signal.h>

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

static struct ksigaction before[65];
static stack_t alt;
static volatile int usr1_hits, usr2_hits, winch_hits;
static volatile int usr1_code, usr1_pid, usr1_mask_ok, usr2_self_blocked, winch_on_alt;

static void h_usr1(int s, siginfo_t *si, void *uc)
{
    (void)s;
    (void)uc;
    usr1_hits++;
    usr1_code = si->si_code;
    usr1_pid = si->si_pid;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr1_mask_ok = sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGUSR2) && sigismember(&cur, SIGTERM) &&
                   sigismember(&cur, SIGQUIT);
}

static void h_usr2(int s)
{
    (void)s;
    usr2_hits++;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr2_self_blocked = sigismember(&cur, SIGUSR2);
}

static void h_winch(int s)
{
    (void)s;
    char here;
    winch_hits++;
    winch_on_alt = (char *)&here >= (char *)alt.ss_sp && (char *)&here < (char *)alt.ss_sp + alt.ss_size;
}

static void h_chld(int s)
{
    (void)s;
}

static volatile int trap_hits;
static void h_trap(int s)
{
    (void)s;
    trap_hits++;
}

static void snapshot(struct ksigaction *out)
{
    for (int s = 1; s <= 64; s++) {
        memset(&out[s], 0, sizeof out[s]);
        if (s == SIGKILL || s == SIGSTOP)
            continue;
        syscall(SYS_rt_sigaction, s, NULL, &out[s], 8);
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sigaddset(&sa.sa_mask, SIGTERM);
    if (sigaction(SIGUSR1, &sa, NULL))
        DIE("sigaction USR1");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_usr2;
    sa.sa_flags = SA_NODEFER | SA_RESETHAND;
    if (sigaction(SIGUSR2, &sa, NULL))
        DIE("sigaction USR2");

    alt.ss_size = 64 * 1024;
    alt.ss_sp = malloc(alt.ss_size);
    alt.ss_flags = 0;
    if (sigaltstack(&alt, NULL))
        DIE("sigaltstack");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_winch;
    sa.sa_flags = SA_ONSTACK;
    if (sigaction(SIGWINCH, &sa, NULL))
        DIE("sigaction WINCH");

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_chld;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL))
        DIE("sigaction CHLD");

    signal(SIGHUP, SIG_IGN);
    signal(SIGSYS, SIG_IGN);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_trap;
    if (sigaction(SIGTRAP, &sa, NULL))
        DIE("sigaction TRAP");

    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGQUIT);
    sigaddset(&m, SIGRTMIN + 5);
    sigprocmask(SIG_SETMASK, &m, NULL);

    snapshot(before);
    info("usr1_handler", "%p", before[SIGUSR1].handler);
    ready();
    wait_go();

    static struct ksigaction after[65];
    snapshot(after);
    for (int s = 1; s <= 64; s++) {
        CHECK(before[s].handler == after[s].handler, "signal %d: handler %p -> %p", s, before[s].handler,
              after[s].handler);
        CHECK(before[s].flags == after[s].flags, "signal %d: sa_flags %#lx -> %#lx", s, before[s].flags,
              after[s].flags);
        CHECK(before[s].restorer == after[s].restorer, "signal %d: sa_restorer %p -> %p", s, before[s].restorer,
              after[s].restorer);
        CHECK(before[s].mask == after[s].mask, "signal %d: sa_mask %#llx -> %#llx", s,
              (unsigned long long)before[s].mask, (unsigned long long)after[s].mask);
    }
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(sigismember(&cur, SIGQUIT) && sigismember(&cur, SIGRTMIN + 5) && !sigismember(&cur, SIGUSR1),
          "signal mask changed");
    stack_t now;
    CHECK(sigaltstack(NULL, &now) == 0 && now.ss_sp == alt.ss_sp && now.ss_size == alt.ss_size &&
              now.ss_flags == 0,
          "sigaltstack changed: sp %p size %zu flags %d", now.ss_sp, now.ss_size, now.ss_flags);

    raise(SIGUSR1);
    CHECK(usr1_hits == 1, "SIGUSR1 handler ran %d times", usr1_hits);
    CHECK(usr1_code == SI_TKILL && usr1_pid == getpid(), "SIGUSR1 siginfo: code %d pid %d", usr1_code, usr1_pid);
    CHECK(usr1_mask_ok, "mask inside the SIGUSR1 handler lacks sa_mask/current mask");
    raise(SIGUSR2);
    CHECK(usr2_hits == 1, "SIGUSR2 handler ran %d times", usr2_hits);
    CHECK(!usr2_self_blocked, "SA_NODEFER lost: SIGUSR2 blocked inside its handler");
    struct sigaction q;
    sigaction(SIGUSR2, NULL, &q);
    CHECK(q.sa_handler == SIG_DFL, "SA_RESETHAND lost: SIGUSR2 handler not reset after delivery");
    raise(SIGWINCH);
    CHECK(winch_hits == 1 && winch_on_alt, "SIGWINCH handler ran %d times, on the alternate stack: %d", winch_hits,
          winch_on_alt);
    raise(SIGHUP); /* ignored: we survive */
    raise(SIGSYS);
    raise(SIGTRAP);
    CHECK(trap_hits == 1, "SIGTRAP handler ran %d times", trap_hits);
    return finish();
}
