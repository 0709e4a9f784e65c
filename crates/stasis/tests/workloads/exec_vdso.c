/*
 * exec_vdso: a parent whose child exec'd a program (this one again, so each has its
 * own, independently placed vDSO) and calls clock_gettime through the vDSO in a loop.
 * Each process's vDSO must come back at its own address: with the parent's, the child
 * dies of SIGSEGV at its first clock_gettime after restore.
 * args: WORKDIR            (parent)
 *       WORKDIR child VDSO (the exec'd child; VDSO = the parent's AT_SYSINFO_EHDR)
 * The child re-execs itself until its vDSO differs from the parent's (ASLR makes that
 * the first try but for a 1-in-a-huge chance), prints INFO child_vdso, and spins on
 * clock_gettime; after go it checks the clock still advances and its vDSO address is
 * the one it had, then exits 0. The parent checks its own vDSO and reaps the child.
 */
#include "common.h"
#include <sys/auxv.h>
#include <sys/wait.h>

static int argc_tries(void);

static int child(char **argv)
{
    unsigned long parent_vdso = strtoul(argv[3], NULL, 16);
    unsigned long mine = getauxval(AT_SYSINFO_EHDR);
    int tries = argc_tries();
    if (mine == parent_vdso && tries < 20) {
        char n[16];
        snprintf(n, sizeof n, "%d", tries + 1);
        setenv("EXEC_VDSO_TRIES", n, 1);
        execv("/proc/self/exe", argv);
        DIE("re-exec");
    }
    info("child_vdso", "%#lx", mine);
    double t0 = now_mono(), last = t0;
    long spins = 0;
    while (access(wl_path("go"), F_OK) != 0) {
        double t = now_mono();
        CHECK(t >= last, "child: clock went back");
        last = t;
        spins++;
    }
    double t1 = now_mono();
    CHECK(t1 > t0, "child: clock did not advance");
    CHECK(getauxval(AT_SYSINFO_EHDR) == mine, "child: AT_SYSINFO_EHDR changed");
    CHECK(spins > 0, "child: never spun");
    return g_failed ? 1 : 0;
}

static int argc_tries(void)
{
    const char *t = getenv("EXEC_VDSO_TRIES");
    return t ? atoi(t) : 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc > 3 && !strcmp(argv[2], "child"))
        return child(argv);
    unsigned long mine = getauxval(AT_SYSINFO_EHDR);
    char v[32];
    snprintf(v, sizeof v, "%lx", mine);
    pid_t c = fork();
    if (c == 0) {
        char *args[] = { argv[0], argv[1], "child", v, NULL };
        execv("/proc/self/exe", args);
        DIE("exec");
    }
    info("parent_vdso", "%#lx", mine);
    info("child", "%d", (int)c);
    ready();
    wait_go();
    CHECK(getauxval(AT_SYSINFO_EHDR) == mine, "parent: AT_SYSINFO_EHDR changed");
    CHECK(now_mono() > 0, "parent: clock");
    int st = 0;
    CHECK(waitpid(c, &st, 0) == c, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with status %#x (signal %d)", st,
          WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return finish();
}
