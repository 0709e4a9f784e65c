/*
 * unix_peercred: SO_PEERCRED of unix sockets made by tasks of different users.
 *   parent (root) listens on WORKDIR/pc/l.sock; the child (uid/gid 1000) connects:
 *     a1 (parent, accepted) has the child's uid/gid, c1 (child) root's;
 *   the child listens on an abstract name; the parent connects:
 *     c2 (parent) has the child's uid/gid, a2 (child, accepted) root's;
 *   the child makes a socketpair sp: both ends have the child's uid/gid.
 *   After restore a new client of the parent's listener gets the parent as its peer.
 * After restore each is read from inside (the child reports through a pipe): pid, uid
 * and gid as before (the pid: the process that connected, listened or made the pair).
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <signal.h>
#include <sys/wait.h>

static int cred_is(int s, pid_t pid, uid_t uid, gid_t gid, const char *what, char *out, size_t n)
{
    struct ucred u = { 0 };
    socklen_t l = sizeof u;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &u, &l) < 0)
        return snprintf(out, n, "%s: SO_PEERCRED: %s; ", what, strerror(errno)), 0;
    if (u.pid != pid || u.uid != uid || u.gid != gid)
        return snprintf(out, n, "%s: peer pid %d uid %u gid %u, want %d %u %u; ", what, u.pid, u.uid, u.gid, pid, uid, gid), 0;
    return 1;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    // the uid-1000 child reaches the socket file: WORKDIR and its parent (the test's
    // temporary directory) searchable
    char up_dir[4096];
    snprintf(up_dir, sizeof up_dir, "%s/..", g_dir);
    chmod(up_dir, 0711);
    chmod(g_dir, 0711);
    mkdir(wl_path("pc"), 0777);
    chmod(wl_path("pc"), 0777);
    struct sockaddr_un a1 = { .sun_family = AF_UNIX }, a2 = { .sun_family = AF_UNIX };
    snprintf(a1.sun_path, sizeof a1.sun_path, "%s", wl_path("pc/l.sock"));
    int n2 = snprintf(a2.sun_path + 1, sizeof a2.sun_path - 1, "stasis-peercred-%d", getpid()) + 1;
    socklen_t l2 = offsetof(struct sockaddr_un, sun_path) + n2;
    int l1 = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l1 < 0 || bind(l1, (void *)&a1, sizeof a1) || chmod(a1.sun_path, 0777) || listen(l1, 4))
        DIE("listen 1");
    int up[2], rep[2]; // child ready; child's verdict
    if (pipe(up) || pipe(rep))
        DIE("pipe");
    pid_t child = fork();
    if (child == 0) {
        if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
            DIE("setresuid");
        int c1 = socket(AF_UNIX, SOCK_STREAM, 0), l2s = socket(AF_UNIX, SOCK_STREAM, 0), sp[2];
        if (connect(c1, (void *)&a1, sizeof a1) || bind(l2s, (void *)&a2, l2) || listen(l2s, 4) ||
            socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
            DIE("child sockets");
        if (write(up[1], "r", 1) != 1)
            DIE("write");
        int a2s = accept(l2s, NULL, NULL);
        if (a2s < 0)
            DIE("accept 2");
        wait_go();
        char msg[1024] = "";
        size_t o = 0;
        int ok = cred_is(c1, getppid(), 0, 0, "c1", msg, sizeof msg);
        o = strlen(msg);
        ok &= cred_is(a2s, getppid(), 0, 0, "a2", msg + o, sizeof msg - o);
        o = strlen(msg);
        ok &= cred_is(sp[0], getpid(), 1000, 1000, "sp[0]", msg + o, sizeof msg - o);
        o = strlen(msg);
        ok &= cred_is(sp[1], getpid(), 1000, 1000, "sp[1]", msg + o, sizeof msg - o);
        if (write(rep[1], msg, strlen(msg) + 1) < 0)
            DIE("report");
        for (;;)
            pause();
    }
    char r;
    if (read(up[0], &r, 1) != 1)
        DIE("child not ready");
    int a1s = accept(l1, NULL, NULL), c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    if (a1s < 0 || connect(c2, (void *)&a2, l2))
        DIE("parent sockets");
    info("child", "%d", child);
    ready();
    wait_go();
    char msg[1024] = "";
    cred_is(a1s, child, 1000, 1000, "a1", msg, sizeof msg);
    cred_is(c2, child, 1000, 1000, "c2", msg + strlen(msg), sizeof msg - strlen(msg));
    // a client of the restored listener: the listener's peer is who called listen()
    int c3 = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c3 < 0 || connect(c3, (void *)&a1, sizeof a1))
        DIE("connect 3");
    cred_is(c3, getpid(), 0, 0, "c3", msg + strlen(msg), sizeof msg - strlen(msg));
    CHECK(!msg[0], "parent: %s", msg);
    char cm[1024] = "";
    ssize_t n = read(rep[0], cm, sizeof cm - 1);
    CHECK(n == 1 && !cm[0], "child: %s", n > 0 ? cm : "no report");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return finish();
}
