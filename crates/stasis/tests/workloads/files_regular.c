/*
 * files_regular: the fd table.
 *   0 /dev/null (harness)  1, 2 regular files (harness; offsets matter)
 *   3    data.txt O_RDWR, offset 123
 *   4    log.txt  O_WRONLY|O_APPEND, "first\n" written
 *   5    data.txt O_RDONLY|O_CLOEXEC, offset 456 (separate description)
 *   6, 7 closed (gap)
 *   8 /dev/null O_WRONLY   9 /dev/zero   10 /dev/urandom O_NONBLOCK
 *   11   WORKDIR O_DIRECTORY
 *   1000 dup of 3 with FD_CLOEXEC (shares 3's offset, cloexec per fd)
 * After restore: exactly these fds are open, with the same flags, cloexec
 * bits, offsets, sharing (moving 3 moves 1000, not 5), files (inode) and
 * devices; O_APPEND still appends; the devices work; stdout's offset is
 * where it was (READY line not overwritten).
 */
#include "common.h"
#include <dirent.h>
#include <sys/sysmacros.h>

static char expect_data[1000];

static void mkdata(const char *path)
{
    for (int i = 0; i < 1000; i++)
        expect_data[i] = 'a' + (i * 7) % 26;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, expect_data, 1000) != 1000)
        DIE("write data.txt");
    close(fd);
}

static void place(int fd, int want)
{
    if (fd < 0)
        DIE("open");
    if (fd != want) {
        if (dup2(fd, want) != want)
            DIE("dup2");
        close(fd);
    }
}

static int flags_of(int fd)
{
    return fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECTORY);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *data = wl_path("data.txt"), *log = wl_path("log.txt");
    mkdata(data);
    /* make sure 3..12 are free first */
    for (int i = 3; i < 13; i++)
        close(i);
    place(open(data, O_RDWR), 3);
    place(open(log, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600), 4);
    place(open(data, O_RDONLY | O_CLOEXEC), 5);
    place(open("/dev/null", O_WRONLY), 8);
    place(open("/dev/zero", O_RDONLY), 9);
    place(open("/dev/urandom", O_RDONLY | O_NONBLOCK), 10);
    place(open(g_dir, O_RDONLY | O_DIRECTORY), 11);
    if (dup2(3, 1000) != 1000)
        DIE("dup2 1000");
    fcntl(1000, F_SETFD, FD_CLOEXEC);
    if (lseek(3, 123, SEEK_SET) != 123 || lseek(5, 456, SEEK_SET) != 456)
        DIE("lseek");
    if (write(4, "first\n", 6) != 6)
        DIE("write log");
    fcntl(5, F_SETFD, FD_CLOEXEC); /* O_CLOEXEC already, explicit */

    static const int fds[] = { 0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 1000 };
    enum { NF = sizeof fds / sizeof fds[0] };
    int fl[NF], fdfl[NF];
    struct stat st[NF];
    for (int i = 0; i < NF; i++) {
        fl[i] = flags_of(fds[i]);
        fdfl[i] = fcntl(fds[i], F_GETFD);
        fstat(fds[i], &st[i]);
    }
    info("fd_count", "%d", NF);
    off_t out_pos = lseek(1, 0, SEEK_CUR);
    ready();
    off_t out_expect = out_pos + 6;
    wait_go();

    /* first, before any FAIL line moves it */
    off_t out_now = lseek(1, 0, SEEK_CUR);
    CHECK(out_now == out_expect, "stdout offset %ld, want %ld", (long)out_now, (long)out_expect);

    /* the set of open fds */
    DIR *d = opendir("/proc/self/fd");
    int seen[NF] = { 0 };
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            int fd = atoi(e->d_name);
            if (fd == dirfd(d))
                continue;
            int known = 0;
            for (int i = 0; i < NF; i++)
                if (fds[i] == fd)
                    seen[i] = known = 1;
            CHECK(known, "unexpected fd %d open after restore", fd);
        }
        closedir(d);
    }
    for (int i = 0; i < NF; i++) {
        CHECK(seen[i], "fd %d missing after restore", fds[i]);
        if (!seen[i])
            continue;
        CHECK(flags_of(fds[i]) == fl[i], "fd %d: flags %#o, want %#o", fds[i], flags_of(fds[i]), fl[i]);
        CHECK(fcntl(fds[i], F_GETFD) == fdfl[i], "fd %d: FD_CLOEXEC %d, want %d", fds[i], fcntl(fds[i], F_GETFD),
              fdfl[i]);
        struct stat s;
        fstat(fds[i], &s);
        CHECK(s.st_ino == st[i].st_ino && s.st_dev == st[i].st_dev && s.st_rdev == st[i].st_rdev &&
                  (s.st_mode & S_IFMT) == (st[i].st_mode & S_IFMT),
              "fd %d: now refers to another file", fds[i]);
    }

    CHECK(lseek(3, 0, SEEK_CUR) == 123, "fd 3 offset %ld, want 123", (long)lseek(3, 0, SEEK_CUR));
    CHECK(lseek(1000, 0, SEEK_CUR) == 123, "fd 1000 offset %ld, want 123", (long)lseek(1000, 0, SEEK_CUR));
    CHECK(lseek(5, 0, SEEK_CUR) == 456, "fd 5 offset %ld, want 456", (long)lseek(5, 0, SEEK_CUR));
    char buf[64];
    CHECK(read(3, buf, 10) == 10 && memcmp(buf, expect_data + 123, 10) == 0, "read at offset 123 wrong");
    CHECK(lseek(1000, 0, SEEK_CUR) == 133, "fd 1000 does not share fd 3's file description (offset %ld, want 133)",
          (long)lseek(1000, 0, SEEK_CUR));
    CHECK(lseek(5, 0, SEEK_CUR) == 456, "fd 5 shares fd 3's description (offset %ld)", (long)lseek(5, 0, SEEK_CUR));
    CHECK(read(5, buf, 10) == 10 && memcmp(buf, expect_data + 456, 10) == 0, "read at offset 456 wrong");
    CHECK(write(3, "XY", 2) == 2, "write to O_RDWR fd 3 failed: %s", strerror(errno));

    CHECK(write(4, "second\n", 7) == 7, "write log: %s", strerror(errno));
    {
        char lb[64] = { 0 };
        int l = open(log, O_RDONLY);
        ssize_t n = read(l, lb, sizeof lb - 1);
        close(l);
        CHECK(n == 13 && strcmp(lb, "first\nsecond\n") == 0, "log.txt is '%s' (O_APPEND or offset lost)", lb);
    }
    CHECK(write(8, "x", 1) == 1, "/dev/null write");
    memset(buf, 1, sizeof buf);
    CHECK(read(9, buf, 64) == 64, "/dev/zero read");
    int nz = 0;
    for (int i = 0; i < 64; i++)
        nz += buf[i] != 0;
    CHECK(nz == 0, "/dev/zero gave non-zero bytes");
    memset(buf, 0, sizeof buf);
    CHECK(read(10, buf, 64) == 64, "/dev/urandom read: %s", strerror(errno));
    nz = 0;
    for (int i = 0; i < 64; i++)
        nz += buf[i] != 0;
    CHECK(nz > 32, "/dev/urandom gave %d non-zero bytes of 64", nz);
    struct stat s;
    fstat(8, &s);
    CHECK(S_ISCHR(s.st_mode) && major(s.st_rdev) == 1 && minor(s.st_rdev) == 3, "fd 8 is not /dev/null");
    fstat(9, &s);
    CHECK(S_ISCHR(s.st_mode) && major(s.st_rdev) == 1 && minor(s.st_rdev) == 5, "fd 9 is not /dev/zero");
    fstat(10, &s);
    CHECK(S_ISCHR(s.st_mode) && major(s.st_rdev) == 1 && minor(s.st_rdev) == 9, "fd 10 is not /dev/urandom");
    int f = openat(11, "data.txt", O_RDONLY);
    CHECK(f >= 0, "openat(dirfd 11, data.txt): %s", strerror(errno));
    if (f >= 0)
        close(f);
    char lnk[256] = { 0 };
    CHECK(readlink("/proc/self/fd/0", lnk, sizeof lnk - 1) > 0 && strcmp(lnk, "/dev/null") == 0, "stdin is '%s'",
          lnk);
    return finish();
}
