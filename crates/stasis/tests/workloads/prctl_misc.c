/*
 * prctl_misc: per-mm and per-process registrations that no /proc file restores by
 * itself.
 *   membarrier  MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (and the SYNC_CORE variant):
 *               after restore MEMBARRIER_CMD_PRIVATE_EXPEDITED(_SYNC_CORE) must not
 *               fail with EPERM
 *   KSM         PR_SET_MEMORY_MERGE 1: PR_GET_MEMORY_MERGE is 1 again
 *   loginuid    set to 4242 (/proc/self/loginuid): 4242 again (the audit session id
 *               cannot be restored: the kernel gives a new one on every write)
 */
#include "common.h"
#include <linux/membarrier.h>
#include <sys/prctl.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

static long membarrier(int cmd)
{
    return syscall(SYS_membarrier, cmd, 0, 0);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
        DIE("membarrier register");
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE))
        DIE("membarrier register sync core");
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        DIE("membarrier private expedited");
    int ksm = prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) == 0;
    int lfd = open("/proc/self/loginuid", O_WRONLY);
    if (lfd < 0 || write(lfd, "4242", 4) != 4)
        DIE("setting loginuid");
    close(lfd);
    info("ksm", "%d", ksm);
    ready();
    wait_go();

    errno = 0;
    CHECK(membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0, "MEMBARRIER_CMD_PRIVATE_EXPEDITED after restore: %s",
          strerror(errno));
    errno = 0;
    CHECK(membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0,
          "MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE after restore: %s", strerror(errno));
    if (ksm)
        CHECK(prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1, "PR_GET_MEMORY_MERGE is %d after restore",
              prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0));
    char luid[64] = "";
    read_file("/proc/self/loginuid", luid, sizeof luid);
    CHECK(strcmp(luid, "4242") == 0, "loginuid is %s after restore, want 4242", luid);
    return finish();
}
