/*
 * session_topology: sessions and process groups that a plain "fork, then setsid" replay
 * gets wrong. The root R is a child subreaper and leads its own session.
 *   A  setsid; forks A1 (own group) and A2 (joins group A1), both in session A
 *   B  forks B1 first, then setsid: B1 stays in session R and group R under a parent
 *      of another session
 *   C  forks C1, then setsid; C1 forks C2, then setsid: C2 is in session R, its parent
 *      in session C1, its grandparent in session C
 *   D  leads its own group; its child D1 joins group R (a group of another branch)
 *   E  setsid, forks E1, exits: E1 is re-parented to R, in session and group E (gone)
 *   F  forks F1 and exits: F1 is re-parented to R, in session R and group R
 * Every process records its pid, ppid, sid and pgid in a shared table before READY and
 * compares them after restore; the root reports every mismatch, then everybody exits
 * and is reaped by its parent.
 */
#include "common.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

enum { R, A, A1, A2, B, B1, C, C1, C2, D, D1, E, E1, F, F1, N };
static const char *names[N] = { "R", "A", "A1", "A2", "B", "B1", "C", "C1", "C2", "D", "D1", "E", "E1", "F", "F1" };

struct slot {
    int pid, ppid, sid, pgid; /* recorded before the dump */
    int ready;                /* 1: recorded */
    int checked;              /* 1: ids compared after restore */
    int now[4];               /* pid, ppid, sid, pgid after restore */
};
struct table {
    int go;    /* 1: compare now */
    int quit;  /* 1: exit */
    struct slot s[N];
};
static struct table *t;

static void record(int i)
{
    struct slot *s = &t->s[i];
    s->pid = getpid();
    s->ppid = getppid();
    s->sid = getsid(0);
    s->pgid = getpgid(0);
    __atomic_store_n(&s->ready, 1, __ATOMIC_SEQ_CST);
}

static void wait_flag(int *f)
{
    while (!__atomic_load_n(f, __ATOMIC_SEQ_CST))
        sleep_ms(2);
}

/* the life of every process but R once its own children exist */
static void live(int i, const int *kids, int nkids)
{
    record(i);
    wait_flag(&t->go);
    struct slot *s = &t->s[i];
    s->now[0] = getpid();
    s->now[1] = getppid();
    s->now[2] = getsid(0);
    s->now[3] = getpgid(0);
    __atomic_store_n(&s->checked, 1, __ATOMIC_SEQ_CST);
    wait_flag(&t->quit);
    for (int k = 0; k < nkids; k++)
        waitpid(t->s[kids[k]].pid, NULL, 0);
    _exit(0);
}

static void wait_ready(int i)
{
    wait_flag(&t->s[i].ready);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED)
        DIE("mmap");
    memset(t, 0, sizeof *t);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1))
        DIE("subreaper");
    if (getsid(0) != getpid() && setsid() < 0)
        DIE("setsid");
    pid_t root = getpid();

    if (fork() == 0) { /* A */
        setsid();
        if (fork() == 0) { /* A1 */
            setpgid(0, 0);
            live(A1, NULL, 0);
        }
        wait_ready(A1);
        if (fork() == 0) { /* A2 */
            setpgid(0, t->s[A1].pid);
            live(A2, NULL, 0);
        }
        wait_ready(A2);
        int k[] = { A1, A2 };
        live(A, k, 2);
    }
    if (fork() == 0) { /* B */
        if (fork() == 0) /* B1 */
            live(B1, NULL, 0);
        wait_ready(B1);
        setsid();
        int k[] = { B1 };
        live(B, k, 1);
    }
    if (fork() == 0) { /* C */
        if (fork() == 0) { /* C1 */
            if (fork() == 0) /* C2 */
                live(C2, NULL, 0);
            wait_ready(C2);
            setsid();
            int k[] = { C2 };
            live(C1, k, 1);
        }
        wait_ready(C1);
        setsid();
        int k[] = { C1 };
        live(C, k, 1);
    }
    if (fork() == 0) { /* D */
        setpgid(0, 0);
        if (fork() == 0) { /* D1 */
            setpgid(0, root);
            live(D1, NULL, 0);
        }
        wait_ready(D1);
        int k[] = { D1 };
        live(D, k, 1);
    }
    pid_t e = fork();
    if (e == 0) { /* E */
        setsid();
        if (fork() == 0) { /* E1: record once re-parented to R */
            while (getppid() != root)
                sleep_ms(1);
            live(E1, NULL, 0);
        }
        _exit(0);
    }
    pid_t f = fork();
    if (f == 0) { /* F */
        if (fork() == 0) { /* F1 */
            while (getppid() != root)
                sleep_ms(1);
            live(F1, NULL, 0);
        }
        _exit(0);
    }
    waitpid(e, NULL, 0);
    waitpid(f, NULL, 0);
    record(R);
    for (int i = 1; i < N; i++)
        if (i != E && i != F)
            wait_ready(i);
    for (int i = 0; i < N; i++)
        if (i != E && i != F)
            info(names[i], "%d", t->s[i].pid);
    ready();
    wait_go();
    __atomic_store_n(&t->go, 1, __ATOMIC_SEQ_CST);
    struct slot *r = &t->s[R];
    r->now[0] = getpid();
    r->now[1] = getppid();
    r->now[2] = getsid(0);
    r->now[3] = getpgid(0);
    for (int i = 0; i < N; i++) {
        if (i == E || i == F)
            continue;
        struct slot *s = &t->s[i];
        for (int w = 0; w < 2000 && i != R && !__atomic_load_n(&s->checked, __ATOMIC_SEQ_CST); w++)
            sleep_ms(5);
        CHECK(i == R || s->checked, "%s (pid %d) did not check in", names[i], s->pid);
        CHECK(s->now[0] == s->pid, "%s: pid %d, want %d", names[i], s->now[0], s->pid);
        /* the root's parent is whoever restored it */
        CHECK(i == R || s->now[1] == s->ppid, "%s: ppid %d, want %d", names[i], s->now[1], s->ppid);
        CHECK(s->now[2] == s->sid, "%s: sid %d, want %d", names[i], s->now[2], s->sid);
        CHECK(s->now[3] == s->pgid, "%s: pgid %d, want %d", names[i], s->now[3], s->pgid);
    }
    /* the relations the comment promises, independent of the recorded values */
    CHECK(t->s[B1].sid == root && t->s[B].sid == t->s[B].pid, "setup: B1 sid %d B sid %d", t->s[B1].sid, t->s[B].sid);
    CHECK(t->s[C2].sid == root && t->s[C1].sid == t->s[C1].pid, "setup: C2 sid %d C1 sid %d", t->s[C2].sid, t->s[C1].sid);
    CHECK(t->s[D1].pgid == root && t->s[D].pgid == t->s[D].pid, "setup: D1 pgid %d", t->s[D1].pgid);
    CHECK(t->s[E1].ppid == root && t->s[E1].sid == e, "setup: E1 ppid %d sid %d", t->s[E1].ppid, t->s[E1].sid);
    __atomic_store_n(&t->quit, 1, __ATOMIC_SEQ_CST);
    int kids[] = { A, B, C, D, E1, F1 };
    for (int k = 0; k < 6; k++) {
        int st = 0;
        CHECK(waitpid(t->s[kids[k]].pid, &st, 0) == t->s[kids[k]].pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%s ended with %#x", names[kids[k]], st);
    }
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "another child is left");
    return finish();
}
