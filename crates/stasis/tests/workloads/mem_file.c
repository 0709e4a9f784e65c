/*
 * mem_file: file mappings.
 *   data.bin (16 pages, pattern) mapped MAP_PRIVATE rw; pages 3 and 7
 *     modified through the mapping (copy-on-write, file untouched);
 *   data.bin pages 4..7 mapped again MAP_PRIVATE read-only at offset 16 KiB;
 *   shared.bin (16 pages) mapped MAP_SHARED rw; page 2 written through it.
 * All fds are closed after mmap: the mappings are the only references.
 * After restore: modified private pages keep the new content, the other
 * pages equal the file, the file is unchanged; the shared mapping is still
 * shared with the file both ways; perms, paths and offsets in maps kept.
 * Also used by the "mapped file changed after dump" refusal test.
 */
#include "common.h"
#include <sys/mman.h>

#define PG 4096UL
#define NP 16

static int write_file(const char *path, uint64_t seed)
{
    static uint64_t buf[NP * PG / 8];
    fill_pattern(buf, sizeof buf, seed);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
        return -1;
    return fd;
}

static int same_as_file(const char *path, const char *mem, off_t off, size_t len)
{
    static char buf[NP * PG];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = pread(fd, buf, len, off);
    close(fd);
    return n == (ssize_t)len && memcmp(buf, mem, len) == 0;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *data = wl_path("data.bin"), *shared = wl_path("shared.bin");
    int fd = write_file(data, 31);
    if (fd < 0)
        DIE("write data.bin");
    char *priv = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *ro = mmap(NULL, 4 * PG, PROT_READ, MAP_PRIVATE, fd, 4 * PG);
    if (priv == MAP_FAILED || ro == MAP_FAILED)
        DIE("mmap data.bin");
    close(fd);
    fill_pattern(priv + 3 * PG, PG, 32);
    fill_pattern(priv + 7 * PG, PG, 33);
    volatile char sink = priv[5 * PG] + ro[0]; /* fault in some clean pages too */
    (void)sink;

    int sfd = write_file(shared, 41);
    if (sfd < 0)
        DIE("write shared.bin");
    char *shr = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (shr == MAP_FAILED)
        DIE("mmap shared.bin");
    close(sfd);
    fill_pattern(shr + 2 * PG, PG, 42);
    if (msync(shr, NP * PG, MS_SYNC))
        DIE("msync");

    info("data", "%s", data);
    info("priv", "%p", (void *)priv);
    ready();
    wait_go();

    long bad;
    CHECK((bad = check_pattern(priv + 3 * PG, PG, 32)) < 0, "modified private page 3 differs at word %ld", bad);
    CHECK((bad = check_pattern(priv + 7 * PG, PG, 33)) < 0, "modified private page 7 differs at word %ld", bad);
    for (int p = 0; p < NP; p++) {
        if (p == 3 || p == 7)
            continue;
        CHECK(same_as_file(data, priv + p * PG, p * PG, PG), "private page %d is not the file's content", p);
    }
    {
        /* the file itself must not contain the private modifications */
        static uint64_t expect[NP * PG / 8];
        fill_pattern(expect, sizeof expect, 31);
        CHECK(same_as_file(data, (char *)expect, 0, NP * PG), "data.bin on disk changed");
    }
    CHECK(same_as_file(data, ro, 4 * PG, 4 * PG), "read-only mapping (offset 16 KiB) differs from the file");
    CHECK((bad = check_pattern(shr + 2 * PG, PG, 42)) < 0, "shared mapping page 2 differs at word %ld", bad);
    CHECK(same_as_file(shared, shr, 0, NP * PG), "shared mapping differs from shared.bin");

    char line[4096];
    CHECK(strcmp(vma_perms(priv), "rw-p") == 0, "private mapping perms %s", vma_perms(priv));
    CHECK(maps_line(priv, line, sizeof line) && strstr(line, "data.bin"), "private mapping not of data.bin: %s", line);
    CHECK(strcmp(vma_perms(ro), "r--p") == 0, "read-only mapping perms %s", vma_perms(ro));
    CHECK(maps_line(ro, line, sizeof line) && strstr(line, " 00004000 ") && strstr(line, "data.bin"),
          "read-only mapping lost its file offset: %s", line);
    CHECK(strcmp(vma_perms(shr), "rw-s") == 0, "shared mapping perms %s", vma_perms(shr));
    CHECK(maps_line(shr, line, sizeof line) && strstr(line, "shared.bin"), "shared mapping not of shared.bin: %s",
          line);

    /* still shared: mapping -> file */
    fill_pattern(shr + 5 * PG, PG, 43);
    CHECK(same_as_file(shared, shr + 5 * PG, 5 * PG, PG), "write through the shared mapping did not reach the file");
    /* file -> mapping */
    {
        static uint64_t buf[PG / 8];
        fill_pattern(buf, PG, 44);
        int f2 = open(shared, O_WRONLY);
        CHECK(f2 >= 0 && pwrite(f2, buf, PG, 6 * PG) == (ssize_t)PG, "pwrite shared.bin");
        if (f2 >= 0)
            close(f2);
        CHECK(memcmp(shr + 6 * PG, buf, PG) == 0, "pwrite to shared.bin is not visible in the shared mapping");
    }
    /* private mapping still private */
    priv[0] ^= 0x55;
    {
        static uint64_t expect[PG / 8];
        fill_pattern(expect, PG, 31);
        CHECK(same_as_file(data, (char *)expect, 0, PG), "write to the private mapping reached the file");
    }
    return finish();
}
