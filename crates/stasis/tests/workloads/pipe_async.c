/*
 * pipe_async [outside]: a pipe whose read end has O_ASYNC with an owner
 * (F_SETOWN): a writer makes the kernel send SIGIO to the owner.
 *   (no arg)  the owner is this process: dumped and restored with flag and owner.
 *   outside   the owner is the parent (outside the dumped tree): the dump is refused
 *             (after restore the signals would go elsewhere).
 * After go: the flag and owner are untouched, and a write still raises SIGIO (to us,
 * or, for "outside", nothing to check but the flag and owner).
 */
#include "common.h"
#include <signal.h>

static volatile int got_io;
static void on_io(int s) { (void)s; got_io++; }

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int p[2];
    if (pipe(p))
        DIE("pipe");
    signal(SIGIO, on_io);
    const char *mode = argc > 2 ? argv[2] : "";
    int owner = strcmp(mode, "outside") ? getpid() : getppid();
    if (fcntl(p[0], F_SETOWN, owner) || fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC))
        DIE("O_ASYNC");
    info("fd", "%d", p[0]);
    ready();
    wait_go();
    CHECK(fcntl(p[0], F_GETFL) & O_ASYNC, "O_ASYNC lost");
    CHECK(fcntl(p[0], F_GETOWN) == owner, "owner %d, want %d", fcntl(p[0], F_GETOWN), owner);
    if (owner != getpid()) {
        /* closing the write end first (exit releases files in reverse) would SIGIO the
           parent: drop the reader, and its owner, first */
        close(p[0]);
        return finish();
    }
    CHECK(write(p[1], "x", 1) == 1, "write");
    for (int i = 0; i < 100 && !got_io; i++)
        sleep_ms(10);
    CHECK(got_io > 0, "no SIGIO");
    return finish();
}
