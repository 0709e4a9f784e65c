/*
 * tree_ids: zombies keep their process group and session, an orphan keeps the
 * subreaper it was re-parented to.
 * The parent P is a child subreaper and leads a new session.
 *   z1  leads its own process group, exits 3: a zombie in group z1, session P
 *   z2  leads its own session, exits 4: a zombie in group z2, session z2
 *   z3  joins z1's group, exits 5: a zombie in group z1
 *   o   forked by m, which exited: o was re-parented to P; it waits for go, then exits
 *       0 if getppid() is P (and its group/session are P's), 1 otherwise
 * After restore P checks each zombie's group and session in /proc/PID/stat, reaps
 * them with their statuses, and reaps o with status 0.
 */
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int ids_of(pid_t p, int *pgid, int *sid, char *state)
{
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    if (read_file(path, st, sizeof st) <= 0)
        return -1;
    char *r = strrchr(st, ')');
    int ppid;
    if (!r || sscanf(r + 2, "%c %d %d %d", state, &ppid, pgid, sid) != 4)
        return -1;
    return 0;
}

static pid_t zombie(int how, pid_t group, int code)
{
    pid_t c = fork();
    if (c < 0)
        DIE("fork");
    if (c == 0) {
        if (how == 1)
            setpgid(0, 0);
        else if (how == 2)
            setsid();
        else
            setpgid(0, group);
        _exit(code);
    }
    if (how == 1)
        setpgid(c, c);
    return c;
}

static int is_zombie(pid_t p)
{
    int g, s;
    char st = '?';
    return ids_of(p, &g, &s, &st) == 0 && st == 'Z';
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
        DIE("PR_SET_CHILD_SUBREAPER");
    if (setsid() < 0)
        DIE("setsid");
    pid_t me = getpid();
    /* z3 must join z1's group while z1 still exists: z1 waits for a pipe */
    int pz[2];
    if (pipe(pz))
        DIE("pipe");
    pid_t z1 = fork();
    if (z1 == 0) {
        setpgid(0, 0);
        char b;
        close(pz[1]);
        read(pz[0], &b, 1);
        _exit(3);
    }
    setpgid(z1, z1);
    close(pz[0]);
    pid_t z3 = zombie(3, z1, 5);
    pid_t z2 = zombie(2, 0, 4);
    for (int i = 0; i < 500 && !is_zombie(z3); i++)
        sleep_ms(5);
    close(pz[1]);

    int po[2];
    if (pipe(po))
        DIE("pipe");
    pid_t m = fork();
    if (m == 0) {
        pid_t o = fork();
        if (o == 0) {
            close(po[0]);
            pid_t x = getpid();
            write(po[1], &x, sizeof x);
            close(po[1]);
            while (getppid() != me)
                sleep_ms(1);
            wait_go();
            _exit(getppid() == me && getpgrp() == me && getsid(0) == me ? 0 : 1);
        }
        _exit(0);
    }
    close(po[1]);
    pid_t o;
    if (read(po[0], &o, sizeof o) != sizeof o)
        DIE("reading o's pid");
    int st;
    if (waitpid(m, &st, 0) != m)
        DIE("waitpid m");
    for (int i = 0; i < 500 && !(is_zombie(z1) && is_zombie(z2)); i++)
        sleep_ms(5);
    if (!is_zombie(z1) || !is_zombie(z2) || !is_zombie(z3))
        DIE("zombies not ready");
    int pg, sid;
    char s;
    for (int i = 0; i < 500; i++) {
        int pp = -1;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)o);
        if (read_file(path, buf, sizeof buf) > 0) {
            char *r = strrchr(buf, ')');
            sscanf(r + 4, "%d", &pp);
        }
        if (pp == me)
            break;
        sleep_ms(5);
    }
    info("z1", "%d", (int)z1);
    info("z2", "%d", (int)z2);
    info("z3", "%d", (int)z3);
    info("o", "%d", (int)o);
    ready();
    wait_go();

    CHECK(ids_of(z1, &pg, &sid, &s) == 0 && s == 'Z' && pg == z1 && sid == me, "z1: state %c group %d session %d, want Z %d %d",
          s, pg, sid, (int)z1, (int)me);
    CHECK(ids_of(z2, &pg, &sid, &s) == 0 && s == 'Z' && pg == z2 && sid == z2, "z2: state %c group %d session %d, want Z %d %d",
          s, pg, sid, (int)z2, (int)z2);
    CHECK(ids_of(z3, &pg, &sid, &s) == 0 && s == 'Z' && pg == z1 && sid == me, "z3: state %c group %d session %d, want Z %d %d",
          s, pg, sid, (int)z1, (int)me);
    pid_t zs[3] = { z1, z2, z3 };
    int codes[3] = { 3, 4, 5 };
    for (int i = 0; i < 3; i++)
        CHECK(waitpid(zs[i], &st, WNOHANG) == zs[i] && WIFEXITED(st) && WEXITSTATUS(st) == codes[i],
              "zombie %d: status %#x, want exit %d", (int)zs[i], st, codes[i]);
    CHECK(waitpid(o, &st, 0) == o && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "orphan %d: status %#x (1: its parent, group or session is not ours)", (int)o, st);
    CHECK(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD, "children left");
    return finish();
}
