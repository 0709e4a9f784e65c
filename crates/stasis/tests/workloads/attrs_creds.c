/*
 * attrs_creds: credentials, kept root-capable.
 *   setgroups {5, 100, 1000}; setresgid(1001, 1002, 1003);
 *   setresuid(0, 0, 1000); capabilities: CAP_SYS_BOOT and CAP_SYS_TIME
 *   dropped from effective+permitted, inheritable {CHOWN, NET_RAW},
 *   ambient {NET_RAW}, CAP_SYS_BOOT dropped from the bounding set;
 *   keepcaps 1; dumpable 0 (PR_SET_DUMPABLE, last).
 * After restore all of them read back the same.
 */
#include "common.h"
#include <grp.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>

static int capget3(struct __user_cap_data_struct d[2])
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    return (int)syscall(SYS_capget, &h, d);
}

static int capset3(struct __user_cap_data_struct d[2])
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    return (int)syscall(SYS_capset, &h, d);
}

static int last_cap(void)
{
    char b[32];
    if (read_file("/proc/sys/kernel/cap_last_cap", b, sizeof b) <= 0)
        return 40;
    return atoi(b);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    gid_t groups[3] = { 5, 100, 1000 };
    if (setgroups(3, groups))
        DIE("setgroups");
    if (setresgid(1001, 1002, 1003))
        DIE("setresgid");
    if (setresuid(0, 0, 1000))
        DIE("setresuid");

    struct __user_cap_data_struct d[2];
    if (capget3(d))
        DIE("capget");
    d[0].effective &= ~(1u << CAP_SYS_BOOT | 1u << CAP_SYS_TIME);
    d[0].permitted &= ~(1u << CAP_SYS_BOOT | 1u << CAP_SYS_TIME);
    d[0].inheritable = 1u << CAP_CHOWN | 1u << CAP_NET_RAW;
    d[1].inheritable = 0;
    if (capset3(d))
        DIE("capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0))
        DIE("ambient raise");
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0))
        DIE("capbset drop");
    if (prctl(PR_SET_KEEPCAPS, 1))
        DIE("keepcaps");
    if (prctl(PR_SET_DUMPABLE, 0))
        DIE("dumpable");

    struct __user_cap_data_struct before[2];
    capget3(before);
    int lc = last_cap();
    int bset[64], amb[64];
    for (int c = 0; c <= lc && c < 64; c++) {
        bset[c] = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        amb[c] = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
    }
    info("caps_eff", "%#x %#x", before[0].effective, before[1].effective);
    ready();
    wait_go();

    gid_t g[16];
    int n = getgroups(16, g);
    CHECK(n == 3 && g[0] == 5 && g[1] == 100 && g[2] == 1000, "supplementary groups changed (%d of them)", n);
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    CHECK(ru == 0 && eu == 0 && su == 1000, "uids %d/%d/%d, want 0/0/1000", ru, eu, su);
    CHECK(rg == 1001 && eg == 1002 && sg == 1003, "gids %d/%d/%d, want 1001/1002/1003", rg, eg, sg);
    CHECK(setfsuid(-1) == 0 && setfsgid(-1) == 1002, "fsuid %d fsgid %d, want 0 1002", setfsuid(-1), setfsgid(-1));
    struct __user_cap_data_struct now[2];
    capget3(now);
    for (int i = 0; i < 2; i++) {
        CHECK(now[i].effective == before[i].effective, "cap effective[%d] %#x, want %#x", i, now[i].effective,
              before[i].effective);
        CHECK(now[i].permitted == before[i].permitted, "cap permitted[%d] %#x, want %#x", i, now[i].permitted,
              before[i].permitted);
        CHECK(now[i].inheritable == before[i].inheritable, "cap inheritable[%d] %#x, want %#x", i,
              now[i].inheritable, before[i].inheritable);
    }
    for (int c = 0; c <= lc && c < 64; c++) {
        CHECK(prctl(PR_CAPBSET_READ, c, 0, 0, 0) == bset[c], "bounding set: cap %d %d, want %d", c,
              prctl(PR_CAPBSET_READ, c, 0, 0, 0), bset[c]);
        CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == amb[c], "ambient set: cap %d changed", c);
    }
    CHECK(prctl(PR_GET_KEEPCAPS) == 1, "keepcaps lost");
    CHECK(prctl(PR_GET_DUMPABLE) == 0, "dumpable %d, want 0", prctl(PR_GET_DUMPABLE));
    return finish();
}
