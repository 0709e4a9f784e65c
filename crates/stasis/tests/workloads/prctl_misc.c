/*
 * prctl_misc: per-mm and per-process registrations that no /proc file restores by
 * itself.
 *   membarrier  MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (and the SYNC_CORE variant):
 *               after restore MEMBARRIER_CMD_PRIVATE_EXPEDITED(_SYNC_CORE) must not
 *               fail with EPERM
 *   KSM         PR_SET_MEMORY_MERGE 1: PR_GET_MEMORY_MERGE is 1 again
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
    return finish();
}
