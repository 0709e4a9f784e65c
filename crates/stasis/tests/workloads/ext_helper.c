/*
 * ext_helper WORKDIR [map]: a process outside the dumped tree that holds
 * whatever fds the test gave it (3, 4...). With "map" it maps fd 3 (a memfd
 * of at least 4096 bytes) MAP_SHARED and writes "helper" at offset 256.
 * Prints READY, then sleeps until it is killed (by the test).
 */
#include "common.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc > 2 && strcmp(argv[2], "map") == 0) {
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
        if (p == MAP_FAILED)
            DIE("mmap fd 3");
        memcpy(p + 256, "helper", 7);
    }
    ready();
    for (int i = 0; i < 600 * 100; i++)
        sleep_ms(10);
    return 0;
}
