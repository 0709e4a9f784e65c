/*
 * ghost_host: deleted-while-open files whose old names the host reuses.
 *   fd A: WORKDIR/ghost.txt, mode 0640, 3000 bytes pattern 71, offset 123, unlinked
 *         (the harness puts another file at that name between dump and restore)
 *   fd B: WORKDIR/gone/ghost2.txt, mode 0604, 1000 bytes pattern 72, unlinked, and
 *         the directory WORKDIR/gone removed too
 * Prints "INFO fds=A B".  After go: each fd reads its own content (not the host's
 * file), offsets, nlink 0, mode bits, /proc/self/fd says "(deleted)", and a write
 * through A is read back.
 */
#include "common.h"

static unsigned char a_want[3000], b_want[1000];

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    for (unsigned i = 0; i < sizeof a_want; i++)
        a_want[i] = (unsigned char)pat64(71, i);
    for (unsigned i = 0; i < sizeof b_want; i++)
        b_want[i] = (unsigned char)pat64(72, i);
    const char *ga = wl_path("ghost.txt");
    int a = open(ga, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (a < 0 || write(a, a_want, sizeof a_want) != (ssize_t)sizeof a_want || fchmod(a, 0640))
        DIE("ghost.txt");
    lseek(a, 123, SEEK_SET);
    if (unlink(ga))
        DIE("unlink ghost.txt");
    if (mkdir(wl_path("gone"), 0755))
        DIE("mkdir gone");
    const char *gb = wl_path("gone/ghost2.txt");
    int b = open(gb, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (b < 0 || write(b, b_want, sizeof b_want) != (ssize_t)sizeof b_want || fchmod(b, 0604))
        DIE("gone/ghost2.txt");
    if (unlink(gb) || rmdir(wl_path("gone")))
        DIE("unlink gone/ghost2.txt, rmdir gone");
    info("fds", "%d %d", a, b);
    ready();
    wait_go();

    struct stat sa, sb;
    CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0, "fstat");
    CHECK(sa.st_nlink == 0 && sb.st_nlink == 0, "nlink %ld and %ld, want 0 (still deleted)", (long)sa.st_nlink,
          (long)sb.st_nlink);
    CHECK(S_ISREG(sa.st_mode) && (sa.st_mode & 07777) == 0640, "fd %d mode %o, want 0640", a, sa.st_mode);
    CHECK(S_ISREG(sb.st_mode) && (sb.st_mode & 07777) == 0604, "fd %d mode %o, want 0604", b, sb.st_mode);
    CHECK(sa.st_size == sizeof a_want && sb.st_size == sizeof b_want, "sizes %ld and %ld", (long)sa.st_size,
          (long)sb.st_size);
    CHECK(lseek(a, 0, SEEK_CUR) == 123, "fd %d offset %ld, want 123", a, (long)lseek(a, 0, SEEK_CUR));
    static unsigned char got[3000];
    CHECK(pread(a, got, sizeof a_want, 0) == sizeof a_want && !memcmp(got, a_want, sizeof a_want),
          "fd %d does not read its own content", a);
    CHECK(pread(b, got, sizeof b_want, 0) == sizeof b_want && !memcmp(got, b_want, sizeof b_want),
          "fd %d does not read its own content", b);
    CHECK(pwrite(a, "zz", 2, 10) == 2, "pwrite fd %d", a);
    char zz[2] = { 0 };
    CHECK(pread(a, zz, 2, 10) == 2 && zz[0] == 'z' && zz[1] == 'z', "write to fd %d not read back", a);
    for (int i = 0; i < 2; i++) {
        char p[64], l[4096] = { 0 };
        snprintf(p, sizeof p, "/proc/self/fd/%d", i ? b : a);
        CHECK(readlink(p, l, sizeof l - 1) > 0 && strstr(l, "(deleted)"), "fd %d links to '%s'", i ? b : a, l);
    }
    return finish();
}
