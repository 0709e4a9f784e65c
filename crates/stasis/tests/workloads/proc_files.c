/*
 * proc_files: files reached through /proc.
 * args: WORKDIR MODE
 *   pipe2     a pipe (1500 bytes queued) plus a second open description of
 *             each end, opened through /proc/self/fd/N (O_RDONLY|O_NONBLOCK,
 *             O_WRONLY|O_APPEND): after restore the four fds are one pipe, the
 *             second descriptions keep their own flags (changing one leaves the
 *             other alone), the bytes come out in order.
 *   procself  holds /proc/self/status at offset 5 (its link reads
 *             /proc/PID/status), two fds of one description, and a child's
 *             /proc/CHILD/status: after restore they are files of the restored
 *             processes (same inode as a fresh open), offset kept, dups shared.
 *   procinit  holds /proc/1/status (a process outside the tree: refused).
 *   hardlink  a file with two names ("first", "sub/second"), opened by the
 *             first, which is then removed: the dump refuses it (its other name
 *             is in another directory: unknown).
 *   hardlink2 the same with "second" in the same directory: reopened through
 *             it (same inode, offset 2, a write through the fd shows in "second").
 *   byname    a file "named" ("abc") open O_RDONLY at offset 1: reopened by
 *             path at restore (the test puts other kinds of file there first).
 */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "";
    int p[2] = { -1, -1 }, r2 = -1, w2 = -1, held = -1, ofd = -1;
    pid_t child = -1;
    static unsigned char data[1500];
    fill_pattern(data, sizeof data, 51);
    if (!strcmp(mode, "pipe2")) {
        if (pipe(p))
            DIE("pipe");
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
        r2 = open(path, O_RDONLY | O_NONBLOCK);
        snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
        w2 = open(path, O_WRONLY);
        if (r2 < 0 || w2 < 0)
            DIE("reopen pipe ends");
        if (write(w2, data, 1000) != 1000 || write(p[1], data + 1000, 500) != 500)
            DIE("write pipe");
    } else if (!strcmp(mode, "procinit")) {
        held = open("/proc/1/status", O_RDONLY);
        if (held < 0)
            DIE("open /proc/1/status");
    } else if (!strcmp(mode, "procself")) {
        char b[5];
        held = open("/proc/self/status", O_RDONLY);
        if (held < 0 || read(held, b, 5) != 5)
            DIE("open /proc/self/status");
        dup2(held, 40);
        child = fork();
        if (child == 0) {
            for (;;)
                pause();
        }
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/status", child);
        ofd = open(p, O_RDONLY | O_CLOEXEC);
        if (ofd < 0)
            DIE("open child status");
    } else if (!strcmp(mode, "hardlink") || !strcmp(mode, "hardlink2")) {
        int same = !strcmp(mode, "hardlink2");
        const char *a = wl_path("first"), *b = wl_path(same ? "second" : "sub/second");
        if (!same && mkdir(wl_path("sub"), 0700))
            DIE("mkdir sub");
        held = open(a, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (held < 0 || write(held, "abc", 3) != 3 || link(a, b) || unlink(a) || lseek(held, 2, SEEK_SET) != 2)
            DIE("hardlink setup");
    } else if (!strcmp(mode, "byname")) {
        held = open(wl_path("named"), O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (held < 0 || write(held, "abc", 3) != 3)
            DIE("byname setup");
        close(held);
        held = open(wl_path("named"), O_RDONLY);
        if (held < 0 || lseek(held, 1, SEEK_SET) != 1)
            DIE("open named");
    }
    info("held", "%d", held);
    info("child", "%d", (int)child);
    ready();
    wait_go();
    if (!strcmp(mode, "pipe2")) {
        struct stat s0, s1, s2, s3;
        fstat(p[0], &s0), fstat(p[1], &s1), fstat(r2, &s2), fstat(w2, &s3);
        CHECK(S_ISFIFO(s0.st_mode) && s0.st_ino == s1.st_ino && s1.st_ino == s2.st_ino && s2.st_ino == s3.st_ino,
              "the four fds are not one pipe");
        CHECK((fcntl(p[0], F_GETFL) & O_NONBLOCK) == 0, "first read description became non-blocking");
        CHECK((fcntl(r2, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDONLY | O_NONBLOCK), "second read description flags %#x",
              fcntl(r2, F_GETFL));
        CHECK((fcntl(w2, F_GETFL) & O_ACCMODE) == O_WRONLY, "second write description flags %#x", fcntl(w2, F_GETFL));
        /* separate descriptions: a flag set on one is not seen on the other */
        fcntl(p[1], F_SETFL, O_NONBLOCK);
        CHECK((fcntl(w2, F_GETFL) & O_NONBLOCK) == 0, "the write descriptions share their flags (one description?)");
        static unsigned char got[1600];
        CHECK(read(r2, got, sizeof got) == 1500 && memcmp(got, data, 1500) == 0, "pipe bytes differ");
        CHECK(write(w2, "q", 1) == 1 && read(p[0], got, 1) == 1 && got[0] == 'q', "second write description not on the pipe");
        CHECK(read(r2, got, 1) < 0 && errno == EAGAIN, "pipe not empty at the end");
    }
    if (!strcmp(mode, "procself")) {
        struct stat a, b;
        char l[256] = { 0 }, want[64], buf[4096] = { 0 };
        snprintf(want, sizeof want, "/proc/%d/status", getpid());
        snprintf(buf, sizeof buf, "/proc/self/fd/%d", held);
        CHECK(readlink(buf, l, sizeof l - 1) > 0 && !strcmp(l, want), "fd %d links to '%s', want '%s'", held, l, want);
        CHECK(fstat(held, &a) == 0 && stat("/proc/self/status", &b) == 0 && a.st_ino == b.st_ino,
              "fd %d is not the restored process's own status file", held);
        CHECK(lseek(held, 0, SEEK_CUR) == 5 && lseek(40, 0, SEEK_CUR) == 5, "status offsets %ld %ld, want 5",
              (long)lseek(held, 0, SEEK_CUR), (long)lseek(40, 0, SEEK_CUR));
        lseek(held, 0, SEEK_SET);
        CHECK(lseek(40, 0, SEEK_CUR) == 0, "fds %d and 40 no longer share their description", held);
        CHECK((fcntl(held, F_GETFD) & FD_CLOEXEC) == 0 && (fcntl(ofd, F_GETFD) & FD_CLOEXEC) != 0, "FD_CLOEXEC flags");
        memset(buf, 0, sizeof buf);
        CHECK(pread(ofd, buf, sizeof buf - 1, 0) > 0, "read child status: %s", strerror(errno));
        char ppid[64];
        snprintf(ppid, sizeof ppid, "\nPPid:\t%d\n", getpid());
        CHECK(strstr(buf, ppid) != NULL, "child's status does not name the restored parent");
        snprintf(want, sizeof want, "/proc/%d/status", child);
        CHECK(stat(want, &b) == 0 && fstat(ofd, &a) == 0 && a.st_ino == b.st_ino, "fd %d is not the child's status file", ofd);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    if (!strcmp(mode, "hardlink2")) {
        struct stat a, b;
        char buf[8] = { 0 };
        CHECK(fstat(held, &a) == 0 && stat(wl_path("second"), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
              "the fd is not the inode named second");
        CHECK(a.st_nlink == 1, "nlink %ld, want 1", (long)a.st_nlink);
        CHECK(lseek(held, 0, SEEK_CUR) == 2, "offset %ld, want 2", (long)lseek(held, 0, SEEK_CUR));
        CHECK(pwrite(held, "Z", 1, 0) == 1, "pwrite");
        int f = open(wl_path("second"), O_RDONLY);
        CHECK(f >= 0 && read(f, buf, sizeof buf) == 3 && !strcmp(buf, "Zbc"), "second reads '%s', want 'Zbc'", buf);
        CHECK(access(wl_path("first"), F_OK) < 0, "restore recreated the removed name");
    }
    if (!strcmp(mode, "byname")) {
        struct stat st;
        char b[8] = { 0 };
        CHECK(fstat(held, &st) == 0 && S_ISREG(st.st_mode), "named is no regular file");
        CHECK(read(held, b, sizeof b) == 2 && !strcmp(b, "bc"), "named reads '%s' at offset 1, want 'bc'", b);
    }
    return finish();
}
