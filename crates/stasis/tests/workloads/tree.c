/*
 * tree: a process tree.
 *   child A: shares two pipes (ping/pong) and a MAP_SHARED anonymous page with the
 *            parent, and a dup of the parent's stdout file description (same offset);
 *   child B: exited with status 7 before the dump (a zombie the parent reaps later);
 *   child C: leads its own process group.
 * args: WORKDIR [setsid]
 * After restore: the parent sends "ping" and A answers "pong" through the pipes; A
 * writes 42 into the shared page, which the parent sees; everyone still has its pid,
 * parent, process group and session; the parent reaps B (status 7), then A and C
 * (status 0).
 */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

static int getppid_ok(pid_t want) { return getppid() == want; }

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    /* "setsid": lead a session of its own (a tree restored in a new PID namespace
     * cannot see a session leader outside it) */
    if (argc > 2 && !strcmp(argv[2], "setsid") && setsid() < 0)
        DIE("setsid");
    pid_t parent = getpid(), sid = getsid(0), pgid = getpgid(0);
    int p2c[2], c2p[2];
    if (pipe(p2c) || pipe(c2p))
        DIE("pipe");
    volatile int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        DIE("mmap");
    *shared = 1;
    pid_t a = fork();
    if (a == 0) {
        close(p2c[1]);
        close(c2p[0]);
        wait_go();
        char b[8] = { 0 };
        CHECK(getppid_ok(parent), "A: parent is %d, want %d", (int)getppid(), (int)parent);
        CHECK(getsid(0) == sid && getpgid(0) == pgid, "A: session/group changed");
        CHECK(*shared == 1, "A: shared page lost (%d)", *shared);
        CHECK(read(p2c[0], b, 4) == 4 && !memcmp(b, "ping", 4), "A: no ping: '%s'", b);
        *shared = 42;
        CHECK(write(c2p[1], "pong", 4) == 4, "A: pong");
        _exit(g_failed ? 1 : 0);
    }
    pid_t b = fork();
    if (b == 0)
        _exit(7);
    pid_t c = fork();
    if (c == 0) {
        setpgid(0, 0);
        wait_go();
        CHECK(getppid_ok(parent), "C: parent is %d", (int)getppid());
        CHECK(getpgid(0) == getpid(), "C: process group %d, want its own", (int)getpgid(0));
        CHECK(getsid(0) == sid, "C: session changed");
        _exit(g_failed ? 1 : 0);
    }
    close(p2c[0]);
    close(c2p[1]);
    /* B is a zombie and C leads its group before we report ready */
    for (int i = 0; i < 500; i++) {
        char path[64], st[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)b);
        if (read_file(path, st, sizeof st) > 0 && strstr(st, ") Z "))
            break;
        sleep_ms(10);
    }
    for (int i = 0; i < 500 && getpgid(c) != c; i++)
        sleep_ms(10);
    info("a", "%d", (int)a);
    info("b", "%d", (int)b);
    info("c", "%d", (int)c);
    ready();
    wait_go();

    CHECK(getpid() == parent && getsid(0) == sid && getpgid(0) == pgid, "parent identity changed");
    CHECK(write(p2c[1], "ping", 4) == 4, "ping");
    char r[8] = { 0 };
    CHECK(read(c2p[0], r, 4) == 4 && !memcmp(r, "pong", 4), "no pong: '%s'", r);
    int st = 0;
    CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 7, "zombie B: status %#x", st);
    CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 0, "A failed: status %#x", st);
    CHECK(*shared == 42, "shared page not shared with A any more (%d)", *shared);
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "C failed: status %#x", st);
    return finish();
}
