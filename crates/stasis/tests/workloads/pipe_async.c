/*
 * pipe_async: a pipe whose read end has O_ASYNC with an owner (F_SETOWN): a writer makes
 * the kernel send SIGIO to the owner. stasis does not keep file ownership yet, so the dump
 * must be refused (restoring the pipe without O_ASYNC would silently stop the signals).
 * After go: the flag and owner are untouched, and a write still raises SIGIO.
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
    if (fcntl(p[0], F_SETOWN, getpid()) || fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC))
        DIE("O_ASYNC");
    info("fd", "%d", p[0]);
    ready();
    wait_go();
    CHECK(fcntl(p[0], F_GETFL) & O_ASYNC, "O_ASYNC lost");
    CHECK(fcntl(p[0], F_GETOWN) == getpid(), "owner %d", fcntl(p[0], F_GETOWN));
    CHECK(write(p[1], "x", 1) == 1, "write");
    for (int i = 0; i < 100 && !got_io; i++)
        sleep_ms(10);
    CHECK(got_io > 0, "no SIGIO");
    return finish();
}
