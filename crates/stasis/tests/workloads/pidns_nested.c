/*
 * pidns_nested: two nested PID namespaces, each with its own mount namespace and /proc,
 * the shape of `unshare --fork --pid --mount-proc unshare --fork --pid --mount-proc`:
 *   root (host): unshare(CLONE_NEWPID | CLONE_NEWNS), forks I1;
 *   I1 (pid 1 of ns1): mounts /proc (in the root's mount namespace, which it shares),
 *      then unshare(CLONE_NEWPID | CLONE_NEWNS) and forks I2;
 *   I2 (pid 1 of ns2, pid 2 of ns1): mounts /proc in its own mount namespace, forks W
 *      (pid 2 of ns2), which waits for `go`.
 * After restore: the root's /proc still shows ns1 (pid 1 = I1 with NSpid "1", pid 2 =
 * I2 with NSpid "2 1"), W and I2 see ns2 in theirs (/proc/self = their inner pid), and
 * every process has its inner pid; exit codes carry failures up to the root.
 */
#include "common.h"
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>

static int proc_self(void)
{
    char b[64] = { 0 };
    if (readlink("/proc/self", b, sizeof b - 1) <= 0)
        return -1;
    return atoi(b);
}

/* the NSpid line of /proc/PID/status, tabs and all */
static int nspid_is(int pid, const char *want)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_file(path, buf, sizeof buf) <= 0)
        return 0;
    char *l = strstr(buf, "NSpid:\t");
    if (!l)
        return 0;
    l += 7;
    char *e = strchr(l, '\n');
    if (e)
        *e = 0;
    return !strcmp(l, want);
}

static int private_ns(void)
{
    return unshare(CLONE_NEWPID | CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

static int mount_proc(void)
{
    return mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static void w_main(void)
{
    wait_go();
    if (getpid() != 2 || proc_self() != 2)
        _exit(10);
    if (!nspid_is(1, "1"))
        _exit(11);
    _exit(0);
}

static void i2_main(int ready_w)
{
    if (mount_proc())
        _exit(20);
    pid_t w = fork();
    if (w == 0)
        w_main();
    if (w != 2 || write(ready_w, "r", 1) != 1)
        _exit(21);
    close(ready_w);
    wait_go();
    int code = 0;
    if (getpid() != 1 || proc_self() != 1)
        code = 22;
    int st;
    if (waitpid(2, &st, 0) != 2 || !WIFEXITED(st))
        code = 23;
    else if (WEXITSTATUS(st))
        code = WEXITSTATUS(st);
    /* stay until the root has looked at our /proc entry (it checks pid 2 of ns1) */
    for (int i = 0; i < 2000 && access(wl_path("checked"), F_OK) != 0; i++)
        sleep_ms(5);
    _exit(code);
}

static void i1_main(int ready_w)
{
    if (mount_proc() || private_ns())
        _exit(30);
    pid_t i2 = fork();
    if (i2 == 0)
        i2_main(ready_w);
    close(ready_w);
    wait_go();
    int code = getpid() != 1 || i2 != 2 ? 31 : 0;
    int st;
    if (waitpid(i2, &st, 0) != i2 || !WIFEXITED(st))
        code = 32;
    else if (WEXITSTATUS(st))
        code = WEXITSTATUS(st);
    _exit(code);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int rp[2];
    if (pipe(rp))
        DIE("pipe");
    if (private_ns())
        DIE("unshare");
    pid_t i1 = fork();
    if (i1 < 0)
        DIE("fork");
    if (i1 == 0) {
        close(rp[0]);
        i1_main(rp[1]);
    }
    close(rp[1]);
    char c;
    if (read(rp[0], &c, 1) != 1)
        DIE("the inner init did not get ready");
    close(rp[0]);
    info("i1", "%d", (int)i1);
    ready();
    wait_go();
    CHECK(nspid_is(1, "1"), "the root's /proc does not show I1 as pid 1 of ns1");
    CHECK(nspid_is(2, "2\t1"), "the root's /proc does not show I2 as pid 2 of ns1 and pid 1 of ns2");
    int fd = open(wl_path("checked"), O_CREAT | O_WRONLY, 0644);
    if (fd >= 0)
        close(fd);
    int st;
    CHECK(waitpid(i1, &st, 0) == i1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "I1 ended with %#x", st);
    return finish();
}
