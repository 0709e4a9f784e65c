/*
 * attrs_basic: per-process attributes that are not credentials.
 *   umask 027; cwd = WORKDIR/"cwd dir"; all 16 rlimits (NOFILE soft 512,
 *   CORE soft 0, MSGQUEUE soft 4096); comm "attrs-wl" (PR_SET_NAME);
 *   oom_score_adj 123; pdeathsig SIGWINCH (harmless, only read back);
 *   no_new_privs 1; personality |= ADDR_NO_RANDOMIZE; timerslack 123456 ns;
 *   THP disabled (PR_SET_THP_DISABLE); nice 5 with SCHED_BATCH; child
 *   subreaper 1; memory-deny-write-execute (PR_SET_MDWE, refuse exec gain).
 * After restore every value reads back the same.
 */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define PR_SET_MDWE_ 65
#define PR_GET_MDWE_ 66
#define PR_MDWE_REFUSE_EXEC_GAIN_ 1

static int read_int_file(const char *p)
{
    char b[64];
    if (read_file(p, b, sizeof b) <= 0)
        return -99999;
    return atoi(b);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    umask(027);
    const char *sub = wl_path("cwd dir");
    if (mkdir(sub, 0755) && errno != EEXIST)
        DIE("mkdir");
    if (chdir(sub))
        DIE("chdir");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 512;
    if (setrlimit(RLIMIT_NOFILE, &rl))
        DIE("setrlimit NOFILE");
    getrlimit(RLIMIT_CORE, &rl);
    rl.rlim_cur = 0;
    if (setrlimit(RLIMIT_CORE, &rl))
        DIE("setrlimit CORE");
    getrlimit(RLIMIT_MSGQUEUE, &rl);
    rl.rlim_cur = 4096;
    if (setrlimit(RLIMIT_MSGQUEUE, &rl))
        DIE("setrlimit MSGQUEUE");
    struct rlimit before[RLIM_NLIMITS];
    for (int i = 0; i < RLIM_NLIMITS; i++)
        getrlimit(i, &before[i]);
    if (prctl(PR_SET_NAME, "attrs-wl"))
        DIE("PR_SET_NAME");
    int fd = open("/proc/self/oom_score_adj", O_WRONLY);
    if (fd < 0 || write(fd, "123", 3) != 3)
        DIE("oom_score_adj");
    close(fd);
    if (prctl(PR_SET_PDEATHSIG, SIGWINCH))
        DIE("PR_SET_PDEATHSIG");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        DIE("PR_SET_NO_NEW_PRIVS");
    int pers = personality(0xffffffff);
    if (personality(pers | ADDR_NO_RANDOMIZE) < 0)
        DIE("personality");
    pers = personality(0xffffffff);
    if (prctl(PR_SET_TIMERSLACK, 123456))
        DIE("PR_SET_TIMERSLACK");
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
        DIE("PR_SET_THP_DISABLE");
    struct sched_param sp = { 0 };
    if (sched_setscheduler(0, SCHED_BATCH, &sp))
        DIE("SCHED_BATCH");
    if (setpriority(PRIO_PROCESS, 0, 5))
        DIE("setpriority");
    if (prctl(PR_SET_CHILD_SUBREAPER, 1))
        DIE("PR_SET_CHILD_SUBREAPER");
    char cwd_before[4096];
    if (!getcwd(cwd_before, sizeof cwd_before))
        DIE("getcwd");
    info("cwd", "%s", cwd_before);
    /* memory-deny-write-execute: no mapping may gain PROT_EXEC from now on */
    if (prctl(PR_SET_MDWE_, PR_MDWE_REFUSE_EXEC_GAIN_, 0, 0, 0))
        DIE("PR_SET_MDWE");
    ready();
    wait_go();

    mode_t um = umask(0);
    umask(um);
    CHECK(um == 027, "umask %03o, want 027", (unsigned)um);
    char cwd[4096] = "";
    CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, cwd_before) == 0, "cwd '%s', want '%s'", cwd, cwd_before);
    struct stat a, b;
    CHECK(stat(".", &a) == 0 && stat(sub, &b) == 0 && a.st_ino == b.st_ino, "'.' is not %s", sub);
    for (int i = 0; i < RLIM_NLIMITS; i++) {
        struct rlimit r;
        getrlimit(i, &r);
        CHECK(r.rlim_cur == before[i].rlim_cur && r.rlim_max == before[i].rlim_max,
              "rlimit %d: %llu/%llu, want %llu/%llu", i, (unsigned long long)r.rlim_cur,
              (unsigned long long)r.rlim_max, (unsigned long long)before[i].rlim_cur,
              (unsigned long long)before[i].rlim_max);
    }
    char comm[32] = { 0 };
    prctl(PR_GET_NAME, comm);
    CHECK(strcmp(comm, "attrs-wl") == 0, "comm '%s', want 'attrs-wl'", comm);
    int oom = read_int_file("/proc/self/oom_score_adj");
    CHECK(oom == 123, "oom_score_adj %d, want 123", oom);
    int pd = -1;
    prctl(PR_GET_PDEATHSIG, &pd);
    CHECK(pd == SIGWINCH, "pdeathsig %d, want %d", pd, SIGWINCH);
    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs lost");
    int p2 = personality(0xffffffff);
    CHECK(p2 == pers, "personality %#x, want %#x", p2, pers);
    int ts = prctl(PR_GET_TIMERSLACK);
    CHECK(ts == 123456, "timerslack %d, want 123456", ts);
    CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP disable flag lost");
    CHECK(sched_getscheduler(0) == SCHED_BATCH, "scheduler policy %d, want SCHED_BATCH", sched_getscheduler(0));
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    CHECK(nice == 5, "nice %d, want 5", nice);
    int sr = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &sr);
    CHECK(sr == 1, "child subreaper flag %d, want 1", sr);
    int mdwe = prctl(PR_GET_MDWE_, 0, 0, 0, 0);
    CHECK(mdwe == PR_MDWE_REFUSE_EXEC_GAIN_, "memory-deny-write-execute %d, want %d", mdwe, PR_MDWE_REFUSE_EXEC_GAIN_);
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED && mprotect(m, 4096, PROT_READ | PROT_EXEC) != 0 && errno == EACCES,
          "mprotect(PROT_EXEC) of a written mapping was allowed: MDWE lost");
    return finish();
}
