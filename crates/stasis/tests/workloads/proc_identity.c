/*
 * proc_identity: what /proc and the kernel say about who the process is.
 * After restore: pid and tid unchanged, /proc/self/cmdline and
 * /proc/self/environ unchanged (mm arg/env ranges), /proc/self/exe still
 * this binary, /proc/self/stat start-of-data fields sane, process group and
 * session unchanged, argv/environ in memory unchanged; the restored
 * process can still fork (child exits 42, reaped by us) and posix_spawn
 * /bin/true.
 * args: WORKDIR some extra "args with spaces" (any)
 */
#include "common.h"
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static char cmd_before[8192], cmd_after[8192], env_before[65536], env_after[65536];

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    setenv("STASIS_TEST_MARKER", "identity-42", 1); /* heap copy of environ */
    long cl = read_file("/proc/self/cmdline", cmd_before, sizeof cmd_before);
    long el = read_file("/proc/self/environ", env_before, sizeof env_before);
    char exe[4096] = { 0 }, exe2[4096] = { 0 };
    if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0)
        DIE("readlink exe");
    pid_t pid = getpid(), pgid = getpgrp(), sid = getsid(0);
    info("pgid", "%d", (int)pgid);
    info("sid", "%d", (int)sid);
    ready();
    wait_go();

    CHECK(getpid() == pid && wl_gettid() == pid, "pid/tid changed: %d -> %d/%d", (int)pid, (int)getpid(),
          (int)wl_gettid());
    CHECK((pid_t)syscall(SYS_getpid) == pid, "raw getpid differs from the cached one");
    long cl2 = read_file("/proc/self/cmdline", cmd_after, sizeof cmd_after);
    CHECK(cl > 0 && cl2 == cl && memcmp(cmd_before, cmd_after, cl) == 0,
          "/proc/self/cmdline changed (%ld -> %ld bytes): now '%s'", cl, cl2, cmd_after);
    long el2 = read_file("/proc/self/environ", env_after, sizeof env_after);
    CHECK(el > 0 && el2 == el && memcmp(env_before, env_after, el) == 0, "/proc/self/environ changed (%ld -> %ld bytes)",
          el, el2);
    CHECK(readlink("/proc/self/exe", exe2, sizeof exe2 - 1) > 0 && strcmp(exe, exe2) == 0,
          "/proc/self/exe changed: '%s' -> '%s'", exe, exe2);
    const char *m = getenv("STASIS_TEST_MARKER");
    CHECK(m && strcmp(m, "identity-42") == 0, "environment variable lost");
    CHECK(strcmp(argv[1], g_dir) == 0 && argv[argc] == NULL, "argv changed");
    CHECK(getpgrp() == pgid, "process group changed: %d -> %d", (int)pgid, (int)getpgrp());
    CHECK(getsid(0) == sid, "session changed: %d -> %d", (int)sid, (int)getsid(0));

    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(getppid() == pid ? 42 : 43);
    int st = 0;
    CHECK(c > 0 && waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 42,
          "fork after restore: child %d status %#x", (int)c, st);
    pid_t sp;
    char *av[] = { "true", NULL };
    int e = posix_spawn(&sp, "/bin/true", NULL, NULL, av, environ);
    CHECK(e == 0 && waitpid(sp, &st, 0) == sp && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "posix_spawn /bin/true after restore: %s, status %#x", strerror(e), st);
    return finish();
}
