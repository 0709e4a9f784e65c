/*
 * seccomp: two stacked seccomp filters (with no_new_privs): uname() fails with
 * EPERM, rt_sigaction() with EACCES. The second one also proves that stasis's own
 * syscalls inside the process during the dump are not filtered (it reads every
 * handler with rt_sigaction). After restore: both filters still act, the kernel
 * counts 2 filters, no_new_privs is still set.
 */
#define WL_SECCOMP
#include "common.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

static long install(long nr, int err)
{
    return seccomp_errno_filter(nr, err, 0);
}

static long status_num(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        DIE("no_new_privs");
    if (install(SYS_uname, EPERM) || install(SYS_rt_sigaction, EACCES))
        DIE("seccomp");
    info("filters", "%ld", status_num("Seccomp_filters"));
    ready();
    wait_go();

    struct utsname u;
    errno = 0;
    CHECK(uname(&u) == -1 && errno == EPERM, "uname not filtered after restore: errno %d", errno);
    unsigned long sa[4];
    errno = 0;
    CHECK(syscall(SYS_rt_sigaction, SIGUSR1, NULL, sa, 8) == -1 && errno == EACCES,
          "rt_sigaction not filtered after restore: errno %d", errno);
    CHECK(status_num("Seccomp") == 2, "Seccomp mode %ld, want 2", status_num("Seccomp"));
    CHECK(status_num("Seccomp_filters") == 2, "%ld seccomp filters, want 2", status_num("Seccomp_filters"));
    CHECK(status_num("NoNewPrivs") == 1, "no_new_privs lost");
    return finish();
}
