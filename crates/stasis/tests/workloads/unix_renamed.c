/*
 * unix_renamed: unix sockets whose files were renamed after bind, within their
 * directory (a JVM's attach listener binds .java_pidN.tmp and renames it to
 * .java_pidN): a stream listener bound to WORKDIR/srv.sock.tmp, its file renamed to
 * WORKDIR/srv.sock (mode 0640, uid 1000), with a connection accepted and one still
 * waiting in its queue; a datagram socket bound to WORKDIR/dg.tmp renamed to WORKDIR/dg,
 * with a datagram queued. After restore (from inside): getsockname shows the names of
 * the bind, the files are at the new names (same owner and mode), nothing is at the
 * old ones, new clients and datagrams reach the sockets by the new names, the waiting
 * connection is accepted, the queued datagram is there, the old connection carries data.
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>

static struct sockaddr_un addr(const char *name)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", wl_path(name));
    return a;
}

static void name_is(int s, const char *want, const char *what)
{
    struct sockaddr_un a = { 0 };
    socklen_t l = sizeof a;
    const char *w = wl_path(want);
    CHECK(getsockname(s, (void *)&a, &l) == 0 && !strcmp(a.sun_path, w), "%s: getsockname %s (want %s)", what, a.sun_path, w);
}

static void file_is_socket(const char *name, const char *old)
{
    struct stat st;
    CHECK(stat(wl_path(name), &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0640 && st.st_uid == 1000,
          "%s: mode %o uid %d (want a socket file 0640 of uid 1000)", name, st.st_mode, st.st_uid);
    CHECK(lstat(wl_path(old), &st) != 0 && errno == ENOENT, "a file is at the old name %s", old);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    umask(0);
    struct sockaddr_un as = addr("srv.sock.tmp"), ad = addr("dg.tmp");
    int l = socket(AF_UNIX, SOCK_STREAM, 0), d = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(l, (void *)&as, sizeof as) || listen(l, 4) || bind(d, (void *)&ad, sizeof ad))
        DIE("bind");
    const char *tmp[] = { "srv.sock.tmp", "dg.tmp" }, *fin[] = { "srv.sock", "dg" };
    for (int i = 0; i < 2; i++) {
        char t[4096];
        snprintf(t, sizeof t, "%s", wl_path(tmp[i]));
        if (chmod(t, 0640) || chown(t, 1000, 1000) || rename(t, wl_path(fin[i])))
            DIE("rename");
    }
    struct sockaddr_un ns = addr("srv.sock"), nd = addr("dg");
    int c = socket(AF_UNIX, SOCK_STREAM, 0), waiting = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (void *)&ns, sizeof ns))
        DIE("connect");
    int a = accept(l, NULL, NULL);
    if (a < 0 || connect(waiting, (void *)&ns, sizeof ns))
        DIE("accept, connect");
    int u = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (sendto(u, "queued", 6, 0, (void *)&nd, sizeof nd) != 6)
        DIE("sendto");
    close(u);
    ready();
    wait_go();
    name_is(l, "srv.sock.tmp", "listener");
    name_is(d, "dg.tmp", "datagram socket");
    for (int i = 0; i < 2; i++)
        file_is_socket(fin[i], tmp[i]);
    char b[16] = "";
    CHECK(recv(d, b, sizeof b, MSG_DONTWAIT) == 6 && !memcmp(b, "queued", 6), "queued datagram: %.6s", b);
    u = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sendto(u, "new", 3, 0, (void *)&nd, sizeof nd) == 3, "sendto dg after restore: %s", strerror(errno));
    memset(b, 0, sizeof b);
    CHECK(recv(d, b, sizeof b, MSG_DONTWAIT) == 3 && !memcmp(b, "new", 3), "new datagram: %.3s", b);
    int w = accept(l, NULL, NULL);
    CHECK(w >= 0 && write(waiting, "wait", 4) == 4 && read(w, b, 4) == 4 && !memcmp(b, "wait", 4), "the waiting connection");
    int n = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(n, (void *)&ns, sizeof ns) == 0, "a new client by the new name: %s", strerror(errno));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0 && write(n, "hi", 2) == 2 && read(s, b, 2) == 2 && !memcmp(b, "hi", 2), "data from the new client");
    CHECK(write(c, "ping", 4) == 4 && read(a, b, 4) == 4 && !memcmp(b, "ping", 4), "old connection c->a");
    CHECK(write(a, "pong", 4) == 4 && read(c, b, 4) == 4 && !memcmp(b, "pong", 4), "old connection a->c");
    return finish();
}
