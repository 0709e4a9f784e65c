/*
 * stopped_tree: children stopped by different stop signals, and what their parent's
 * wait sees. The parent leads a new session; each child leads its own process group
 * (so the group is not orphaned and SIGTSTP/SIGTTIN/SIGTTOU stop it).
 *   s1  stopped by SIGTSTP, 3 threads; the parent already reaped the stop with WUNTRACED
 *   s2  stopped by SIGTTIN; the parent has not waited for it yet
 *   s3  stopped by SIGSTOP, 3 threads; the parent has not waited for it yet
 *   s4  stopped by SIGTTOU; the parent already reaped the stop
 * After restore: every child is in state T (every thread); the parent's
 * waitid(WSTOPPED|WNOHANG) reports s2 stopped by SIGTTIN and s3 by SIGSTOP, and nothing
 * for s1 and s4 (stops reported before the dump); its SIGCHLD handler ran no more
 * times than before the dump (one per stop); nothing runs for 200 ms;
 * SIGCONT continues each (WCONTINUED seen) and it exits with its own status; a child
 * with threads first checks that every thread runs again (its counter moves on) with
 * its own thread-local value intact (else it exits with status + 100).
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

static char state_of(pid_t p)
{
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    if (read_file(path, st, sizeof st) <= 0)
        return '?';
    char *r = strrchr(st, ')');
    return r && r[1] == ' ' ? r[2] : '?';
}

/* every thread of p in state T */
static int all_stopped(pid_t p)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)p);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0, ok = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char tp[128], st[512];
        snprintf(tp, sizeof tp, "/proc/%d/task/%s/stat", (int)p, e->d_name);
        if (read_file(tp, st, sizeof st) <= 0)
            continue;
        char *r = strrchr(st, ')');
        n++;
        if (!r || r[2] != 'T')
            ok = 0;
    }
    closedir(d);
    return n > 0 && ok;
}

#define MAXTH 3
#define TAG 0x7e5700UL
static volatile unsigned long counters[MAXTH];
static __thread unsigned long tls_tag;
static volatile int tls_bad;

static void *spin(void *a)
{
    long i = (long)a;
    tls_tag = TAG + (unsigned long)i;
    for (;;) {
        if (tls_tag != TAG + (unsigned long)i)
            tls_bad = 1;
        counters[i]++;
        sleep_ms(5);
    }
    return NULL;
}

/* After SIGCONT: every thread runs on with its thread-local value. */
static int threads_run_on(int n)
{
    unsigned long before[MAXTH];
    for (int i = 0; i < n; i++)
        before[i] = counters[i];
    sleep_ms(300);
    for (int i = 0; i < n; i++)
        if (counters[i] == before[i])
            return 0;
    return !tls_bad;
}

static pid_t child(int sig, int code, int threads)
{
    pid_t c = fork();
    if (c < 0)
        DIE("fork");
    if (c == 0) {
        setpgid(0, 0);
        for (long i = 0; i < threads; i++) {
            pthread_t t;
            pthread_create(&t, NULL, spin, (void *)i);
        }
        for (int i = 0; i < threads; i++)
            while (!counters[i])
                sleep_ms(1);
        signal(sig, SIG_DFL);
        kill(getpid(), sig);
        /* continued (the wait also gives the parent time to see WCONTINUED first) */
        if (threads ? !threads_run_on(threads) : (sleep_ms(300), 0))
            code += 100;
        _exit(code);
    }
    setpgid(c, c);
    return c;
}

static volatile int sigchlds;
static void on_chld(int s)
{
    (void)s;
    sigchlds++;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (setsid() < 0)
        DIE("setsid");
    struct sigaction sa = { .sa_handler = on_chld, .sa_flags = SA_RESTART };
    sigaction(SIGCHLD, &sa, NULL);
    pid_t s1 = child(SIGTSTP, 71, 3), s2 = child(SIGTTIN, 72, 0), s3 = child(SIGSTOP, 73, 3),
          s4 = child(SIGTTOU, 74, 0);
    int st;
    if (waitpid(s1, &st, WUNTRACED) != s1 || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGTSTP)
        DIE("s1 did not stop with SIGTSTP");
    if (waitpid(s4, &st, WUNTRACED) != s4 || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGTTOU)
        DIE("s4 did not stop with SIGTTOU");
    for (int i = 0; i < 500 && !(all_stopped(s2) && all_stopped(s3)); i++)
        sleep_ms(10);
    if (!all_stopped(s2) || !all_stopped(s3))
        DIE("s2/s3 did not stop");
    info("s1", "%d", (int)s1);
    info("s2", "%d", (int)s2);
    info("s3", "%d", (int)s3);
    info("s4", "%d", (int)s4);
    sleep_ms(50); /* the last stop's SIGCHLD is handled */
    int chlds_before = sigchlds;
    ready();
    wait_go();
    sleep_ms(50);
    CHECK(sigchlds == chlds_before, "SIGCHLD handled %d times after the dump (the restored stops raised it again)", sigchlds - chlds_before);

    pid_t kids[4] = { s1, s2, s3, s4 };
    int codes[4] = { 71, 72, 73, 74 };
    for (int i = 0; i < 4; i++)
        CHECK(all_stopped(kids[i]), "s%d (pid %d) is not stopped after restore (state %c)", i + 1, (int)kids[i],
              state_of(kids[i]));
    /* unreported stops are reported with their signal; reported ones are not again */
    int want[4] = { 0, SIGTTIN, SIGSTOP, 0 };
    for (int i = 0; i < 4; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, kids[i], &si, WSTOPPED | WNOHANG);
        if (want[i])
            CHECK(r == 0 && si.si_pid == kids[i] && si.si_code == CLD_STOPPED && si.si_status == want[i],
                  "s%d: waitid(WSTOPPED) = %d pid %d code %d status %d, want stopped by %d", i + 1, r, (int)si.si_pid,
                  si.si_code, si.si_status, want[i]);
        else
            CHECK(r == 0 && si.si_pid == 0, "s%d: its stop, collected before the dump, reported again: waitid = %d code %d status %d",
                  i + 1, r, si.si_code, si.si_status);
    }
    sleep_ms(200);
    for (int i = 0; i < 4; i++) {
        CHECK(all_stopped(kids[i]), "s%d left the stopped state by itself", i + 1);
        kill(kids[i], SIGCONT);
        CHECK(waitpid(kids[i], &st, WCONTINUED) == kids[i] && WIFCONTINUED(st), "s%d: no WCONTINUED", i + 1);
        CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == codes[i],
              "s%d: exit status %#x, want %d", i + 1, st, codes[i]);
    }
    return finish();
}
