/*
 * files_pipe: a pipe (both ends here) holding 3000 unread bytes written in
 * 7 chunks; capacity set to 128 KiB; read end O_NONBLOCK.
 * args: WORKDIR [eof]   with "eof": also a second pipe holding 5 bytes
 *   whose write end was closed (no writer anywhere).
 * After restore: the data comes out in order and complete, then EAGAIN;
 * F_GETPIPE_SZ is still 128 KiB; the flags are kept; the pipe still works;
 * the second pipe yields "tail!" then EOF.
 */
#include "common.h"

#define N 3000

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int eof = argc > 2 && strcmp(argv[2], "eof") == 0;
    int p[2], q[2] = { -1, -1 };
    if (pipe(p) || (eof && pipe(q)))
        DIE("pipe");
    if (fcntl(p[0], F_SETFL, O_NONBLOCK))
        DIE("O_NONBLOCK");
    if (fcntl(p[0], F_SETPIPE_SZ, 128 * 1024) < 0)
        DIE("F_SETPIPE_SZ");
    static char data[N];
    for (int i = 0; i < N; i++)
        data[i] = (char)(' ' + (i * 13 + i / 97) % 95);
    int off = 0;
    static const int chunks[] = { 1, 99, 400, 1000, 500, 700, 300 };
    for (int i = 0; i < 7; i++) {
        if (write(p[1], data + off, chunks[i]) != chunks[i])
            DIE("write pipe");
        off += chunks[i];
    }
    if (eof) {
        if (write(q[1], "tail!", 5) != 5)
            DIE("write q");
        close(q[1]);
    }
    int fl0 = fcntl(p[0], F_GETFL), fl1 = fcntl(p[1], F_GETFL);
    info("pipe", "%d %d", p[0], p[1]);
    ready();
    wait_go();

    CHECK(fcntl(p[0], F_GETPIPE_SZ) == 128 * 1024, "pipe size %d, want 131072", fcntl(p[0], F_GETPIPE_SZ));
    CHECK(fcntl(p[0], F_GETFL) == fl0 && fcntl(p[1], F_GETFL) == fl1, "pipe fd flags changed (%#o %#o -> %#o %#o)",
          fl0, fl1, fcntl(p[0], F_GETFL), fcntl(p[1], F_GETFL));
    static char got[N + 100];
    int n = 0;
    for (;;) {
        ssize_t r = read(p[0], got + n, sizeof got - n);
        if (r <= 0) {
            CHECK(r < 0 && errno == EAGAIN, "end of pipe data: read returned %zd (%s), want EAGAIN", r,
                  strerror(errno));
            break;
        }
        n += (int)r;
    }
    CHECK(n == N, "read %d bytes from the pipe, want %d", n, N);
    for (int i = 0; i < n && i < N; i++)
        if (got[i] != data[i]) {
            CHECK(0, "pipe data differs at byte %d", i);
            break;
        }
    CHECK(write(p[1], "more", 4) == 4 && read(p[0], got, 10) == 4 && memcmp(got, "more", 4) == 0,
          "pipe no longer connected");
    if (eof) {
        char t[16] = { 0 };
        CHECK(read(q[0], t, sizeof t) == 5 && memcmp(t, "tail!", 5) == 0, "second pipe data '%s'", t);
        CHECK(read(q[0], t, sizeof t) == 0, "second pipe: no EOF (its write end was closed)");
    }
    return finish();
}
