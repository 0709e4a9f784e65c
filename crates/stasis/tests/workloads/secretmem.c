/*
 * secretmem: memory of memfd_secret (fd 3, mapped shared and written). Nobody but the
 * process can read it: dump refuses it by kind, and the process keeps fd and content.
 */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int fd = (int)syscall(SYS_memfd_secret, 0);
    if (fd < 0)
        DIE("memfd_secret");
    if (ftruncate(fd, 4096))
        DIE("ftruncate");
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        DIE("mmap");
    strcpy(p, "secret");
    ready();
    wait_go();
    CHECK(!strcmp(p, "secret"), "content %.8s", p);
    return finish();
}
