/*
 * memfd_future_write: a memfd mapped shared and writable, then sealed with
 * F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_SEAL: write() and new writable shared
 * mappings are refused, but the mapping made before the seal still writes the memfd.
 * After restore the seals read back the same, the old mapping still writes through
 * (restore must map it before sealing), write() and a new writable mapping are still
 * refused. With "result" the verdict goes to WORKDIR/result (for --leave-running).
 */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int to_result = argc > 2 && strcmp(argv[2], "result") == 0;
    int fd = memfd_create("stasis-fw", MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, 8192))
        DIE("memfd");
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        DIE("mmap");
    strcpy(m, "before the seal");
    int seals = F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_SEAL;
    if (fcntl(fd, F_ADD_SEALS, seals))
        DIE("F_ADD_SEALS");
    ready();
    wait_go();
    if (to_result && stdout_to_result())
        return 1;
    CHECK(fcntl(fd, F_GET_SEALS) == seals, "seals %#x, were %#x", fcntl(fd, F_GET_SEALS), seals);
    CHECK(strcmp(m, "before the seal") == 0, "mapping holds '%.20s'", m);
    strcpy(m + 4096, "through the old mapping");
    char b[32] = { 0 };
    CHECK(pread(fd, b, 23, 4096) == 23 && strcmp(b, "through the old mapping") == 0, "the old mapping no longer writes the memfd: '%s'", b);
    CHECK(pwrite(fd, "x", 1, 0) < 0 && errno == EPERM, "write() to the sealed memfd: errno %d", errno);
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED, "a new writable shared mapping of the sealed memfd was allowed");
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW) < 0, "F_SEAL_SEAL lost: more seals can be added");
    return finish();
}
