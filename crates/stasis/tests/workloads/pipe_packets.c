/*
 * pipe_packets: pipes in packet mode (pipe2 O_DIRECT: each write of an O_DIRECT writer
 * is a packet, and a read returns at most one).
 *   a: packets "aaa", "bbbbb", "c", then plain bytes "tail" (written with O_DIRECT
 *      cleared on the write end, which then gets it back);
 *   b: packets only, ending with a 4096-byte one; O_DIRECT set on the read end too
 *      (pipe2 gives it to the write end only);
 *   c: a plain pipe (no O_DIRECT) with "plain" written in two writes.
 * After restore (from inside): the ends' flags; reads of 100 bytes return "aaa",
 * "bbbbb", "c", "tail" (a: the plain bytes after the packets in one read), b's packets
 * one per read, with a 2-byte read of its first discarding the rest of it; c reads
 * "plainplain" at once; a new O_DIRECT write is a packet again.
 */
#include "common.h"

static void reads_are(int fd, const char *what, const char **want, int n)
{
    char b[8192];
    for (int i = 0; i < n; i++) {
        ssize_t k = read(fd, b, 100);
        CHECK(k == (ssize_t)strlen(want[i]) && !memcmp(b, want[i], k), "%s: read %d: %zd bytes '%.*s' (want '%s')", what, i, k,
              (int)(k > 0 ? k : 0), b, want[i]);
    }
    CHECK(read(fd, b, sizeof b) < 0 && errno == EAGAIN, "%s: more than expected", what);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int a[2], b[2], c[2];
    if (pipe2(a, O_DIRECT | O_NONBLOCK) || pipe2(b, O_DIRECT | O_NONBLOCK) || pipe2(c, O_NONBLOCK) ||
        fcntl(b[0], F_SETFL, O_DIRECT | O_NONBLOCK))
        DIE("pipe2");
    if (write(a[1], "aaa", 3) != 3 || write(a[1], "bbbbb", 5) != 5 || write(a[1], "c", 1) != 1)
        DIE("write a");
    int fl = fcntl(a[1], F_GETFL);
    if (fcntl(a[1], F_SETFL, fl & ~O_DIRECT) || write(a[1], "ta", 2) != 2 || write(a[1], "il", 2) != 2 || fcntl(a[1], F_SETFL, fl))
        DIE("write a plain");
    static char big[4096];
    memset(big, 'B', sizeof big);
    if (write(b[1], "xyz", 3) != 3 || write(b[1], "12", 2) != 2 || write(b[1], big, sizeof big) != sizeof big)
        DIE("write b");
    if (write(c[1], "plain", 5) != 5 || write(c[1], "plain", 5) != 5)
        DIE("write c");
    ready();
    wait_go();
    CHECK((fcntl(a[1], F_GETFL) & O_DIRECT) && !(fcntl(a[0], F_GETFL) & O_DIRECT), "a: O_DIRECT of the ends %#x %#x", fcntl(a[0], F_GETFL), fcntl(a[1], F_GETFL));
    CHECK((fcntl(b[0], F_GETFL) & O_DIRECT) && (fcntl(b[1], F_GETFL) & O_DIRECT), "b: O_DIRECT lost");
    CHECK(!(fcntl(c[0], F_GETFL) & O_DIRECT) && !(fcntl(c[1], F_GETFL) & O_DIRECT), "c: O_DIRECT appeared");
    const char *wa[] = { "aaa", "bbbbb", "c", "tail" };
    reads_are(a[0], "a", wa, 4);
    char t[2];
    CHECK(read(b[0], t, 2) == 2 && !memcmp(t, "xy", 2), "b: first 2 bytes");
    big[100] = 0; // the first 100 bytes of the big packet
    const char *wb[] = { "12", big };
    reads_are(b[0], "b (the rest of xyz dropped)", wb, 2);
    const char *wc[] = { "plainplain" };
    reads_are(c[0], "c", wc, 1);
    // packet mode still on for new writes
    if (write(a[1], "n1", 2) != 2 || write(a[1], "n2", 2) != 2)
        DIE("write again");
    const char *wn[] = { "n1", "n2" };
    reads_are(a[0], "a after restore", wn, 2);
    return finish();
}
