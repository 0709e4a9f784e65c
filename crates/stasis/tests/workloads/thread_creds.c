/*
 * thread_creds: per-thread credentials and fs state, set with raw syscalls so that only
 * the calling thread changes (glibc's setuid and friends change every thread).
 *   thread A: setgroups {3000}, setresgid(2000, 2001, 2002), setresuid(2000, 2000, 2000)
 *             (its capabilities go with root);
 *   thread B: stays uid 0, capabilities cut to CAP_KILL (effective, permitted) and
 *             CAP_SYS_BOOT dropped from its bounding set; unshare(CLONE_FS), chdir to
 *             WORKDIR/own, umask 077;
 *   main:     root with its capabilities, cwd WORKDIR, umask 022.
 * After restore every thread reads its own back and checks, main checks that nothing of
 * the threads' leaked into it. With the argument "files" a thread also unshares its fd
 * table (the dump refuses that).
 */
#include "common.h"
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>

static volatile int started, done, go;

/* Thread A (uid 2000) may not see WORKDIR: main waits for go and tells the threads. */
static void thread_wait_go(void)
{
    while (!go)
        sleep_ms(5);
}

static void caps(uint32_t *eff, uint32_t *prm)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    syscall(SYS_capget, &h, d);
    *eff = d[0].effective;
    *prm = d[0].permitted;
}

static void *thread_a(void *arg)
{
    (void)arg;
    gid_t g = 3000;
    if (syscall(SYS_setgroups, 1, &g) || syscall(SYS_setresgid, 2000, 2001, 2002) || syscall(SYS_setresuid, 2000, 2000, 2000))
        DIE("thread A credentials");
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    thread_wait_go();
    uid_t r, e, s;
    gid_t rg, eg, sg, groups[8];
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    int n = (int)syscall(SYS_getgroups, 8, groups);
    uint32_t eff, prm;
    caps(&eff, &prm);
    CHECK(r == 2000 && e == 2000 && s == 2000, "thread A uids %d %d %d", r, e, s);
    CHECK(rg == 2000 && eg == 2001 && sg == 2002, "thread A gids %d %d %d", rg, eg, sg);
    CHECK(n == 1 && groups[0] == 3000, "thread A has %d groups (first %d)", n, n > 0 ? (int)groups[0] : -1);
    CHECK(eff == 0 && prm == 0, "thread A capabilities %#x/%#x", eff, prm);
    __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
}

static void *thread_b(void *arg)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = { { 0 } };
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0))
        DIE("thread B bounding set");
    d[0].effective = d[0].permitted = 1u << CAP_KILL;
    if (syscall(SYS_capset, &h, d))
        DIE("thread B capset");
    if (unshare(CLONE_FS) || chdir(wl_path("own")))
        DIE("thread B own cwd");
    umask(077);
    if (arg && (unshare(CLONE_FILES) || open("/dev/null", O_RDONLY) < 0))
        DIE("thread B own fd table");
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    thread_wait_go();
    uint32_t eff, prm;
    caps(&eff, &prm);
    char cwd[4096] = "";
    getcwd(cwd, sizeof cwd);
    mode_t m = umask(0);
    umask(m);
    CHECK(getuid() == 0 && geteuid() == 0, "thread B uid %d/%d", getuid(), geteuid());
    CHECK(eff == 1u << CAP_KILL && prm == 1u << CAP_KILL, "thread B capabilities %#x/%#x", eff, prm);
    CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) == 0, "thread B: CAP_SYS_BOOT back in its bounding set");
    CHECK(strcmp(cwd, wl_path("own")) == 0, "thread B cwd %s", cwd);
    CHECK(m == 077, "thread B umask %o", m);
    __atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int files = argc > 2 && strcmp(argv[2], "files") == 0;
    if (mkdir(wl_path("own"), 0755))
        DIE("mkdir own");
    umask(022);
    pthread_t a, b;
    pthread_create(&a, NULL, thread_a, NULL);
    pthread_create(&b, NULL, thread_b, files ? (void *)1 : NULL);
    while (started < 2)
        sleep_ms(1);
    ready();
    wait_go();
    go = 1;
    while (done < 2)
        sleep_ms(1);
    uint32_t eff, prm;
    caps(&eff, &prm);
    char cwd[4096] = "";
    getcwd(cwd, sizeof cwd);
    mode_t m = umask(0);
    gid_t groups[8];
    CHECK(getuid() == 0 && geteuid() == 0 && getgid() == 0, "main uid %d gid %d", getuid(), getgid());
    CHECK(syscall(SYS_getgroups, 8, groups) == 0, "main has the thread's groups");
    CHECK(eff & 1u << CAP_SYS_ADMIN && prm & 1u << CAP_SYS_ADMIN, "main lost CAP_SYS_ADMIN (%#x/%#x)", eff, prm);
    CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) == 1, "main lost CAP_SYS_BOOT from its bounding set");
    CHECK(strcmp(cwd, g_dir) == 0, "main cwd %s", cwd);
    CHECK(m == 022, "main umask %o", m);
    return finish();
}
