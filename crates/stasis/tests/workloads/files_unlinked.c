/*
 * files_unlinked: files deleted while open.
 *   fd A: ghost.bin (5000 bytes pattern) O_RDWR, offset 77, then unlinked
 *   fd B: the same file opened separately before the unlink, offset 999
 * args: WORKDIR [map]  with "map": also a MAP_SHARED and a MAP_PRIVATE
 *   mapping of a second file (ghost-map.bin) that is then unlinked and
 *   whose fd is closed (like a deleted shared library).
 * After restore: A and B are the same deleted inode (nlink 0, a write via
 * B is read via A), content and offsets are as before, /proc/self/fd says
 * "WORKDIR/... (deleted)" (a nameless file of the same directory); mappings keep content, and the shared one still shares the
 * deleted file with B-style access through /proc/self/map_files.
 */
#include "common.h"
#include <sys/mman.h>

#define LEN 5000
static unsigned char expect[LEN];

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int with_map = argc > 2 && strcmp(argv[2], "map") == 0;
    for (int i = 0; i < LEN; i++)
        expect[i] = (unsigned char)pat64(91, i);
    const char *ghost = wl_path("ghost.bin");
    int a = open(ghost, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (a < 0 || write(a, expect, LEN) != LEN)
        DIE("write ghost");
    int b = open(ghost, O_RDWR);
    if (b < 0)
        DIE("open ghost again");
    lseek(a, 77, SEEK_SET);
    lseek(b, 999, SEEK_SET);
    if (unlink(ghost))
        DIE("unlink");

    char *ms = NULL, *mp = NULL;
    if (with_map) {
        const char *gm = wl_path("ghost-map.bin");
        int m = open(gm, O_RDWR | O_CREAT | O_TRUNC, 0600);
        static uint64_t buf[4 * 4096 / 8];
        fill_pattern(buf, sizeof buf, 92);
        if (m < 0 || write(m, buf, sizeof buf) != (ssize_t)sizeof buf)
            DIE("write ghost-map");
        ms = mmap(NULL, sizeof buf, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
        mp = mmap(NULL, sizeof buf, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0);
        if (ms == MAP_FAILED || mp == MAP_FAILED)
            DIE("mmap ghost-map");
        close(m);
        fill_pattern(mp + 4096, 4096, 93); /* private COW page */
        if (unlink(gm))
            DIE("unlink ghost-map");
    }
    info("ghost_fds", "%d %d", a, b);
    ready();
    wait_go();

    struct stat sa, sb;
    CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0, "fstat");
    CHECK(sa.st_nlink == 0, "ghost file has nlink %ld after restore (should still be deleted)", (long)sa.st_nlink);
    CHECK(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev, "fds %d and %d no longer refer to the same file", a, b);
    CHECK(sa.st_size == LEN, "ghost file size %ld, want %d", (long)sa.st_size, LEN);
    CHECK(lseek(a, 0, SEEK_CUR) == 77, "fd %d offset %ld, want 77", a, (long)lseek(a, 0, SEEK_CUR));
    CHECK(lseek(b, 0, SEEK_CUR) == 999, "fd %d offset %ld, want 999", b, (long)lseek(b, 0, SEEK_CUR));
    static unsigned char got[LEN];
    CHECK(pread(a, got, LEN, 0) == LEN && memcmp(got, expect, LEN) == 0, "ghost file content differs");
    CHECK(pwrite(b, "zz", 2, 10) == 2, "pwrite via fd %d", b);
    char zz[2] = { 0 };
    CHECK(pread(a, zz, 2, 10) == 2 && zz[0] == 'z' && zz[1] == 'z', "write via fd %d not visible via fd %d", b, a);
    char p[64], l[4096] = { 0 };
    snprintf(p, sizeof p, "/proc/self/fd/%d", a);
    /* recreated nameless (O_TMPFILE in the same directory): "WORKDIR/#INODE (deleted)" */
    CHECK(readlink(p, l, sizeof l - 1) > 0 && !strncmp(l, g_dir, strlen(g_dir)) && strstr(l, "(deleted)"),
          "fd %d links to '%s'", a, l);
    if (with_map) {
        long bad;
        CHECK((bad = check_pattern(ms, 4 * 4096, 92)) < 0, "shared mapping of deleted file differs at %ld", bad);
        CHECK((bad = check_pattern(mp, 4096, 92)) < 0, "private mapping of deleted file (page 0) differs at %ld", bad);
        CHECK((bad = check_pattern(mp + 4096, 4096, 93)) < 0, "private COW page differs at %ld", bad);
        char line[4096];
        CHECK(maps_line(ms, line, sizeof line) && strstr(line, "(deleted)") && strstr(line, g_dir),
              "shared mapping is not of the deleted file: %s", line);
        CHECK(strcmp(vma_perms(ms), "rw-s") == 0, "shared mapping perms %s", vma_perms(ms));
        ms[4096] ^= 1; /* must not reach the private copy-on-write page */
        CHECK((bad = check_pattern(mp + 4096, 4096, 93)) < 0, "private COW page changed by a shared write");
    }
    return finish();
}
