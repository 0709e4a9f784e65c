/*
 * unix_relative: unix sockets bound to relative paths (bind("srv.sock") in the working
 * directory WORKDIR/rel): a stream listener with a connection accepted from a client of
 * its own, a datagram socket with a datagram queued to it by name, and a listener in a
 * subdirectory ("sub/deep.sock"). After restore (from inside): getsockname shows the
 * relative names, the socket files are where they were (same owner and mode 0640), a
 * new client connecting by the relative name reaches the restored listener, the queued
 * datagram is there and a new one sent to "dg.sock" arrives, the old connection
 * carries data both ways.
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>

static struct sockaddr_un addr(const char *name)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", name);
    return a;
}

static void name_is(int s, const char *want, const char *what)
{
    struct sockaddr_un a = { 0 };
    socklen_t l = sizeof a;
    CHECK(getsockname(s, (void *)&a, &l) == 0 && l == offsetof(struct sockaddr_un, sun_path) + strlen(want) + 1 &&
              !strcmp(a.sun_path, want),
          "%s: getsockname %.*s (want %s)", what, (int)(l - offsetof(struct sockaddr_un, sun_path)), a.sun_path, want);
}

static void file_is_socket(const char *path)
{
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0640 && st.st_uid == 1000,
          "%s: mode %o uid %d (want a socket file 0640 of uid 1000)", path, st.st_mode, st.st_uid);
}

/* A new client connecting to `name` (relative to the cwd) is accepted by `l`. */
static void new_client(int l, const char *name)
{
    struct sockaddr_un a = addr(name);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(c >= 0 && connect(c, (void *)&a, sizeof a) == 0, "connect to %s: %s", name, strerror(errno));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0 && write(c, "hi", 2) == 2, "accept on %s: %s", name, strerror(errno));
    char b[4] = "";
    CHECK(s >= 0 && read(s, b, sizeof b) == 2 && !memcmp(b, "hi", 2), "data through %s", name);
    close(c);
    close(s);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (mkdir(wl_path("rel"), 0755) || chdir(wl_path("rel")) || mkdir("sub", 0755))
        DIE("mkdir rel");
    umask(0);
    struct sockaddr_un as = addr("srv.sock"), ad = addr("dg.sock"), ab = addr("sub/deep.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0), d = socket(AF_UNIX, SOCK_DGRAM, 0), deep = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (void *)&as, sizeof as) || listen(l, 4) || bind(d, (void *)&ad, sizeof ad) || bind(deep, (void *)&ab, sizeof ab) ||
        listen(deep, 2))
        DIE("bind");
    const char *files[] = { "srv.sock", "dg.sock", "sub/deep.sock" };
    for (int i = 0; i < 3; i++)
        if (chmod(files[i], 0640) || chown(files[i], 1000, 1000))
            DIE("chmod");
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (void *)&as, sizeof as))
        DIE("connect");
    int a = accept(l, NULL, NULL);
    int u = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (a < 0 || sendto(u, "queued", 6, 0, (void *)&ad, sizeof ad) != 6)
        DIE("sendto");
    close(u);
    ready();
    wait_go();
    name_is(l, "srv.sock", "listener");
    name_is(d, "dg.sock", "datagram socket");
    name_is(deep, "sub/deep.sock", "listener in sub");
    for (int i = 0; i < 3; i++)
        file_is_socket(files[i]);
    char b[16] = "";
    CHECK(recv(d, b, sizeof b, MSG_DONTWAIT) == 6 && !memcmp(b, "queued", 6), "queued datagram: %.6s", b);
    u = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sendto(u, "new", 3, 0, (void *)&ad, sizeof ad) == 3, "sendto dg.sock after restore: %s", strerror(errno));
    memset(b, 0, sizeof b);
    CHECK(recv(d, b, sizeof b, MSG_DONTWAIT) == 3 && !memcmp(b, "new", 3), "new datagram: %.3s", b);
    new_client(l, "srv.sock");
    new_client(deep, "sub/deep.sock");
    CHECK(write(c, "ping", 4) == 4 && read(a, b, 4) == 4 && !memcmp(b, "ping", 4), "old connection c->a");
    CHECK(write(a, "pong", 4) == 4 && read(c, b, 4) == 4 && !memcmp(b, "pong", 4), "old connection a->c");
    return finish();
}
