/*
 * odirect: an fd opened with O_DIRECT (fd 3) at offset 8192 of a 3-page file. After
 * restore: O_DIRECT is still set, the offset is kept, and an aligned O_DIRECT read at
 * the offset returns the third page.
 */
#define _GNU_SOURCE
#include "common.h"

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *path = wl_path("direct.bin");
    int w = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static unsigned char page[4096];
    for (int p = 0; p < 3; p++) {
        memset(page, 'A' + p, sizeof page);
        if (w < 0 || write(w, page, sizeof page) != (ssize_t)sizeof page)
            DIE("write direct.bin");
    }
    close(w);
    int fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0)
        DIE("open O_DIRECT");
    if (fd != 3 && (dup2(fd, 3) != 3 || close(fd)))
        DIE("dup2");
    if (lseek(3, 8192, SEEK_SET) != 8192)
        DIE("lseek");
    ready();
    wait_go();
    CHECK(fcntl(3, F_GETFL) & O_DIRECT, "O_DIRECT lost: flags %#x", fcntl(3, F_GETFL));
    CHECK(lseek(3, 0, SEEK_CUR) == 8192, "offset %ld, want 8192", (long)lseek(3, 0, SEEK_CUR));
    void *buf;
    if (posix_memalign(&buf, 4096, 4096))
        DIE("posix_memalign");
    ssize_t n = read(3, buf, 4096);
    CHECK(n == 4096 && ((unsigned char *)buf)[0] == 'C' && ((unsigned char *)buf)[4095] == 'C',
          "O_DIRECT read returned %zd bytes starting %c", n, n > 0 ? ((char *)buf)[0] : '?');
    return finish();
}
