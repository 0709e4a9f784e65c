/*
 * ghosts: objects whose name was removed while they stay open.
 * args: WORKDIR MODE...  (each MODE sets one up; "all" = every mode)
 *   sparse  a 10 GiB sparse file (4 KiB at 0, 1 MiB at 5 GiB, 100 bytes at
 *           the end), mode 0640, owner 1234:5678, atime/mtime set, offset
 *           12345, then unlinked
 *   fifo    a named FIFO (mode 0620) with 1000 bytes buffered, opened O_RDWR,
 *           O_RDONLY|O_NONBLOCK and O_WRONLY, then unlinked
 *   dir     an open directory fd (mode 0751, mtime set) of a removed dir, and
 *           the working directory (mode 0705) removed too
 *   dev     copies of /dev/null (1:3, mode 0640) and /dev/zero (1:5) made with
 *           mknod, opened, unlinked
 *   memfd   a memfd holding a copy of /bin/false, sealed
 *           (SHRINK|GROW|WRITE), executed with fexecve after restore; a second
 *           one created MFD_NOEXEC_SEAL (F_SEAL_EXEC, mode 0666)
 * After restore every value is checked from inside: content, holes
 * (SEEK_DATA/SEEK_HOLE, st_blocks), size, offsets, mode, owner, times, nlink 0,
 * FIFO bytes and flags, device numbers and behaviour, seals, exec.
 */
#include "common.h"
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

#define GiB (1024L * 1024 * 1024)
#define SPARSE_SIZE (10 * GiB)
#define MID_OFF (5 * GiB)
#define MID_LEN (1024 * 1024)
#define TAIL_LEN 100

static int has(int argc, char **argv, const char *m)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], m) || !strcmp(argv[i], "all"))
            return 1;
    return 0;
}

static void set_times(int fd, long a, long m)
{
    struct timespec ts[2] = { { a, 111 }, { m, 222 } };
    if (futimens(fd, ts))
        DIE("futimens");
}

static void check_times(int fd, const char *what, long a, long m)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat %s", what);
    CHECK(st.st_atim.tv_sec == a && st.st_atim.tv_nsec == 111, "%s atime %ld.%09ld, want %ld.000000111", what,
          (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, a);
    CHECK(st.st_mtim.tv_sec == m && st.st_mtim.tv_nsec == 222, "%s mtime %ld.%09ld, want %ld.000000222", what,
          (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, m);
}

static void check_node(int fd, const char *what, mode_t fmt, mode_t perm, uid_t uid, gid_t gid)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat %s", what);
    CHECK((st.st_mode & S_IFMT) == fmt, "%s type %o, want %o", what, st.st_mode & S_IFMT, fmt);
    CHECK((st.st_mode & 07777) == perm, "%s mode %o, want %o", what, st.st_mode & 07777, perm);
    CHECK(st.st_uid == uid && st.st_gid == gid, "%s owner %d:%d, want %d:%d", what, st.st_uid, st.st_gid, uid, gid);
    CHECK(st.st_nlink == 0, "%s has nlink %ld (should still be removed)", what, (long)st.st_nlink);
}

/* ---- sparse ---- */
static int sp;
static unsigned char *mid;

static void sparse_setup(void)
{
    const char *p = wl_path("sparse.bin");
    sp = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (sp < 0)
        DIE("open sparse");
    static unsigned char head[4096], tail[TAIL_LEN];
    fill_pattern(head, sizeof head, 31);
    mid = malloc(MID_LEN);
    fill_pattern(mid, MID_LEN, 32);
    fill_pattern(tail, sizeof tail, 33);
    if (pwrite(sp, head, sizeof head, 0) != sizeof head || pwrite(sp, mid, MID_LEN, MID_OFF) != MID_LEN ||
        pwrite(sp, tail, TAIL_LEN, SPARSE_SIZE - TAIL_LEN) != TAIL_LEN)
        DIE("write sparse");
    if (fchown(sp, 1234, 5678) || fchmod(sp, 0640))
        DIE("fchown/fchmod sparse");
    set_times(sp, 1000000000, 1100000000);
    lseek(sp, 12345, SEEK_SET);
    if (unlink(p))
        DIE("unlink sparse");
}

static void sparse_check(void)
{
    check_node(sp, "sparse file", S_IFREG, 0640, 1234, 5678);
    check_times(sp, "sparse file", 1000000000, 1100000000);
    struct stat st;
    fstat(sp, &st);
    CHECK(st.st_size == SPARSE_SIZE, "sparse file size %ld, want %ld", (long)st.st_size, SPARSE_SIZE);
    /* 4 KiB + 1 MiB + the tail page, allowing for a few metadata blocks */
    CHECK(st.st_blocks * 512L <= 2 * 1024 * 1024, "sparse file uses %ld bytes on disk (holes filled?)",
          (long)st.st_blocks * 512L);
    CHECK(lseek(sp, 0, SEEK_CUR) == 12345, "sparse offset %ld, want 12345", (long)lseek(sp, 0, SEEK_CUR));
    off_t h = lseek(sp, 0, SEEK_HOLE);
    CHECK(h == 4096, "first hole at %ld, want 4096", (long)h);
    off_t d = lseek(sp, 4096, SEEK_DATA);
    CHECK(d == MID_OFF, "data after the first hole at %ld, want %ld", (long)d, MID_OFF);
    h = lseek(sp, MID_OFF, SEEK_HOLE);
    CHECK(h == MID_OFF + MID_LEN, "hole after the middle extent at %ld, want %ld", (long)h, MID_OFF + MID_LEN);
    d = lseek(sp, MID_OFF + MID_LEN, SEEK_DATA);
    CHECK(d >= SPARSE_SIZE - 4096 && d <= SPARSE_SIZE - TAIL_LEN, "tail data at %ld", (long)d);
    static unsigned char buf[4096];
    CHECK(pread(sp, buf, 4096, 0) == 4096 && check_pattern(buf, 4096, 31) < 0, "sparse head content differs");
    unsigned char *m = malloc(MID_LEN);
    CHECK(pread(sp, m, MID_LEN, MID_OFF) == MID_LEN && memcmp(m, mid, MID_LEN) == 0, "sparse middle content differs");
    static unsigned char tail[TAIL_LEN];
    CHECK(pread(sp, tail, TAIL_LEN, SPARSE_SIZE - TAIL_LEN) == TAIL_LEN && check_pattern(tail, TAIL_LEN, 33) < 0,
          "sparse tail content differs");
    CHECK(pread(sp, buf, 4096, 3 * GiB) == 4096, "read in a hole");
    for (int i = 0; i < 4096; i++)
        if (buf[i]) {
            CHECK(0, "hole at 3 GiB reads non-zero at %d", i);
            break;
        }
    free(m);
}

/* ---- fifo ---- */
static int f_rw, f_r, f_w;
#define FIFO_LEN 1000

static void fifo_setup(void)
{
    const char *p = wl_path("fifo");
    if (mkfifo(p, 0600) || chmod(p, 0620))
        DIE("mkfifo");
    f_rw = open(p, O_RDWR);
    f_r = open(p, O_RDONLY | O_NONBLOCK);
    f_w = open(p, O_WRONLY);
    if (f_rw < 0 || f_r < 0 || f_w < 0)
        DIE("open fifo");
    static unsigned char b[FIFO_LEN];
    fill_pattern(b, sizeof b, 41);
    if (write(f_w, b, FIFO_LEN) != FIFO_LEN)
        DIE("write fifo");
    if (unlink(p))
        DIE("unlink fifo");
}

static void fifo_check(void)
{
    check_node(f_rw, "removed FIFO", S_IFIFO, 0620, 0, 0);
    struct stat a, b, c;
    fstat(f_rw, &a), fstat(f_r, &b), fstat(f_w, &c);
    CHECK(a.st_ino == b.st_ino && b.st_ino == c.st_ino, "the three FIFO descriptions are no longer one FIFO");
    CHECK((fcntl(f_r, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDONLY | O_NONBLOCK), "FIFO reader flags %#x",
          fcntl(f_r, F_GETFL));
    CHECK((fcntl(f_w, F_GETFL) & O_ACCMODE) == O_WRONLY, "FIFO writer flags %#x", fcntl(f_w, F_GETFL));
    int n = 0;
    ioctl(f_r, FIONREAD, &n);
    CHECK(n == FIFO_LEN, "FIFO holds %d bytes, want %d", n, FIFO_LEN);
    static unsigned char got[FIFO_LEN + 10];
    CHECK(read(f_r, got, sizeof got) == FIFO_LEN && check_pattern(got, FIFO_LEN, 41) < 0, "FIFO bytes differ");
    CHECK(write(f_w, "xyz", 3) == 3 && read(f_rw, got, 10) == 3 && !memcmp(got, "xyz", 3), "FIFO no longer carries bytes");
    CHECK(read(f_r, got, 10) < 0 && errno == EAGAIN, "FIFO not empty at the end");
}

/* ---- dir ---- */
static int d_fd;

static void dir_setup(void)
{
    const char *p = wl_path("gone-dir");
    const char *c = wl_path("gone-cwd");
    if (mkdir(p, 0700) || mkdir(c, 0700) || chmod(p, 0751) || chmod(c, 0705))
        DIE("mkdir");
    d_fd = open(p, O_RDONLY | O_DIRECTORY);
    if (d_fd < 0)
        DIE("open dir");
    set_times(d_fd, 1200000000, 1300000000);
    if (chdir(c))
        DIE("chdir");
    if (rmdir(p) || rmdir(c))
        DIE("rmdir");
    /* rmdir changed the times of the removed directory; set them again */
    set_times(d_fd, 1200000000, 1300000000);
}

static void dir_check(void)
{
    check_node(d_fd, "removed directory", S_IFDIR, 0751, 0, 0);
    check_times(d_fd, "removed directory", 1200000000, 1300000000);
    int fd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0, "open of the removed working directory: %s", strerror(errno));
    if (fd >= 0) {
        check_node(fd, "removed working directory", S_IFDIR, 0705, 0, 0);
        close(fd);
    }
    char l[4096] = { 0 };
    CHECK(readlink("/proc/self/cwd", l, sizeof l - 1) > 0 && strstr(l, "(deleted)"), "cwd links to '%s'", l);
    CHECK(open("new-file", O_CREAT | O_WRONLY, 0600) < 0 && errno == ENOENT,
          "a file could be created in the removed working directory");
    CHECK(openat(d_fd, "x", O_CREAT | O_WRONLY, 0600) < 0 && errno == ENOENT,
          "a file could be created in the removed directory");
}

/* ---- dev ---- */
static int dn, dz;

static void dev_setup(void)
{
    const char *n = wl_path("null-copy"), *z = wl_path("zero-copy");
    if (mknod(n, S_IFCHR | 0600, makedev(1, 3)) || mknod(z, S_IFCHR | 0600, makedev(1, 5)) || chmod(n, 0640))
        DIE("mknod");
    dn = open(n, O_RDWR);
    dz = open(z, O_RDONLY);
    if (dn < 0 || dz < 0)
        DIE("open dev");
    if (unlink(n) || unlink(z))
        DIE("unlink dev");
}

static void dev_check(void)
{
    check_node(dn, "removed /dev/null copy", S_IFCHR, 0640, 0, 0);
    check_node(dz, "removed /dev/zero copy", S_IFCHR, 0600, 0, 0);
    struct stat st;
    fstat(dn, &st);
    CHECK(major(st.st_rdev) == 1 && minor(st.st_rdev) == 3, "null copy is %u:%u", major(st.st_rdev), minor(st.st_rdev));
    fstat(dz, &st);
    CHECK(major(st.st_rdev) == 1 && minor(st.st_rdev) == 5, "zero copy is %u:%u", major(st.st_rdev), minor(st.st_rdev));
    char b[16];
    memset(b, 7, sizeof b);
    CHECK(write(dn, b, 16) == 16 && read(dn, b, 16) == 0, "null copy does not behave as /dev/null");
    CHECK(read(dz, b, 16) == 16 && b[0] == 0 && b[15] == 0, "zero copy does not read zeros");
    CHECK((fcntl(dz, F_GETFL) & O_ACCMODE) == O_RDONLY, "zero copy access mode %#x", fcntl(dz, F_GETFL));
}

/* ---- memfd ---- */
static int mx, mn;
static long mx_size;

static void memfd_setup(void)
{
    mx = memfd_create("stasis-exec", MFD_ALLOW_SEALING | MFD_CLOEXEC | MFD_EXEC);
    if (mx < 0)
        mx = memfd_create("stasis-exec", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    if (mx < 0)
        DIE("memfd_create");
    int src = open("/bin/false", O_RDONLY);
    if (src < 0)
        DIE("open /bin/false");
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(mx, buf, n) != n)
            DIE("copy /bin/false");
    close(src);
    mx_size = lseek(mx, 0, SEEK_CUR);
    if (fcntl(mx, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE))
        DIE("F_ADD_SEALS");
    mn = memfd_create("stasis-noexec", MFD_NOEXEC_SEAL);
    if (mn >= 0 && write(mn, "data", 4) != 4)
        DIE("write noexec memfd");
    info("memfd_noexec", "%d", mn >= 0);
}

static void memfd_check(void)
{
    CHECK(fcntl(mx, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), "memfd seals %#x",
          fcntl(mx, F_GET_SEALS));
    struct stat st;
    fstat(mx, &st);
    CHECK(st.st_size == mx_size, "memfd size %ld, want %ld", (long)st.st_size, mx_size);
    CHECK((st.st_mode & 0111) == 0111, "memfd mode %o is not executable", st.st_mode & 07777);
    CHECK(write(mx, "x", 1) < 0 && errno == EPERM, "memfd write-sealed but writable");
    char l[256] = { 0 }, p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", mx);
    CHECK(readlink(p, l, sizeof l - 1) > 0 && !strcmp(l, "/memfd:stasis-exec (deleted)"), "memfd links to '%s'", l);
    pid_t c = fork();
    if (c == 0) {
        char *av[] = { "false", NULL }, *ev[] = { NULL };
        fexecve(mx, av, ev);
        _exit(100 + errno); /* 100 + errno of fexecve */
    }
    int status = 0;
    CHECK(waitpid(c, &status, 0) == c, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "fexecve of the memfd (a copy of /bin/false): exit status %d (100 + errno if fexecve failed)",
          WEXITSTATUS(status));
    if (mn >= 0) {
        int s = fcntl(mn, F_GET_SEALS);
        CHECK(s & F_SEAL_EXEC, "MFD_NOEXEC_SEAL memfd lost F_SEAL_EXEC (seals %#x)", s);
        fstat(mn, &st);
        CHECK((st.st_mode & 0111) == 0, "MFD_NOEXEC_SEAL memfd mode %o", st.st_mode & 07777);
        CHECK(pread(mn, l, 4, 0) == 4 && !memcmp(l, "data", 4), "noexec memfd content");
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int s = has(argc, argv, "sparse"), f = has(argc, argv, "fifo"), d = has(argc, argv, "dir"),
        v = has(argc, argv, "dev"), m = has(argc, argv, "memfd");
    if (s)
        sparse_setup();
    if (f)
        fifo_setup();
    if (v)
        dev_setup();
    if (m)
        memfd_setup();
    if (d)
        dir_setup(); /* last: it leaves the working directory */
    ready();
    wait_go();
    if (s)
        sparse_check();
    if (f)
        fifo_check();
    if (d)
        dir_check();
    if (v)
        dev_check();
    if (m)
        memfd_check();
    return finish();
}
