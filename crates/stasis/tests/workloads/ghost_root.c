/*
 * ghost_root: a process whose root directory was removed. It makes WORKDIR/jail (mode
 * 0751, owner 1234:5678), chroots into it, chdirs to its new "/", and removes the jail
 * through an fd on WORKDIR (kept: the harness's `go` and the result are reached
 * through it). Before READY and after restore the same checks hold: "/" is an empty
 * removed directory (nlink 0, mode 0751, owner 1234:5678, nothing can be created in
 * it, no entries), ".." of "/" is "/" itself, the working directory is "/", and none
 * of the host's files (/etc, /tmp, /proc) can be seen. Argument "child": a forked child
 * (sharing nothing) does the same checks, so two processes share one removed root.
 * Argument "outside": no chdir after the chroot, so the working directory stays
 * WORKDIR, outside the root (then "." is WORKDIR, not "/").
 */
#include "common.h"
#include <sys/wait.h>

static int wd, outside;

static void check_root(const char *when)
{
    struct stat r, dd, cwd;
    CHECK(stat("/", &r) == 0, "%s: stat /: %s", when, strerror(errno));
    CHECK(r.st_nlink == 0, "%s: / has %lu links, want 0 (removed)", when, (unsigned long)r.st_nlink);
    CHECK((r.st_mode & 07777) == 0751 && S_ISDIR(r.st_mode), "%s: / mode %o", when, r.st_mode);
    CHECK(r.st_uid == 1234 && r.st_gid == 5678, "%s: / owner %u:%u", when, r.st_uid, r.st_gid);
    CHECK(stat("/..", &dd) == 0 && dd.st_ino == r.st_ino && dd.st_dev == r.st_dev, "%s: /.. is not / (escaped the root?)", when);
    if (outside) {
        struct stat w;
        CHECK(fstat(wd, &w) == 0 && stat(".", &cwd) == 0 && cwd.st_ino == w.st_ino && cwd.st_dev == w.st_dev,
              "%s: the working directory is not the work dir (outside the root)", when);
    } else {
        CHECK(stat(".", &cwd) == 0 && cwd.st_ino == r.st_ino && cwd.st_dev == r.st_dev, "%s: the working directory is not /", when);
    }
    const char *host[] = {"/etc", "/tmp", "/proc", "/usr"};
    for (int i = 0; i < 4; i++) {
        struct stat x;
        CHECK(stat(host[i], &x) < 0 && errno == ENOENT, "%s: %s is visible", when, host[i]);
    }
    int f = open("/new", O_CREAT | O_WRONLY, 0600);
    CHECK(f < 0 && errno == ENOENT, "%s: creating /new: %s", when, f < 0 ? strerror(errno) : "it worked");
    if (f >= 0)
        close(f);
    DIR *d = opendir("/");
    int entries = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                entries++;
        closedir(d);
    }
    CHECK(entries == 0, "%s: / has %d entries", when, entries);
}

static void wait_go_at(void)
{
    double t0 = now_mono();
    while (faccessat(wd, "go", F_OK, 0) != 0) {
        if (now_mono() - t0 > 300) {
            printf("FAIL: no go file\n");
            fflush(stdout);
            exit(1);
        }
        sleep_ms(10);
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int with_child = argc > 2 && !strcmp(argv[2], "child");
    outside = argc > 2 && !strcmp(argv[2], "outside");
    wd = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (wd < 0)
        DIE("open workdir");
    if (mkdirat(wd, "jail", 0751) || fchmodat(wd, "jail", 0751, 0) || fchownat(wd, "jail", 1234, 5678, 0))
        DIE("mkdir jail");
    if (chdir(g_dir) || chroot(wl_path("jail")) || (!outside && chdir("/")))
        DIE("chroot");
    if (unlinkat(wd, "jail", AT_REMOVEDIR))
        DIE("rmdir jail");
    check_root("before");
    pid_t kid = -1;
    if (with_child) {
        kid = fork();
        if (kid < 0)
            DIE("fork");
        if (kid == 0) {
            wait_go_at();
            check_root("child after");
            _exit(g_failed ? 1 : 0);
        }
        info("child", "%d", (int)kid);
    }
    if (g_failed)
        DIE("checks failed before the dump");
    ready();
    wait_go_at();
    check_root("after");
    if (kid > 0) {
        int st = 0;
        CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed: status %#x", st);
    }
    return finish();
}
