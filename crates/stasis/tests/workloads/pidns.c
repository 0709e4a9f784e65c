/*
 * pidns: a tree that lives in its own PID namespace with its own /proc, the shape of
 * `unshare --fork --pid --mount-proc`.
 *   root (host PID namespace): unshare(CLONE_NEWPID | CLONE_NEWNS), private mounts,
 *         forks the namespace's init;
 *   init (pid 1 inside): mounts a fresh procfs on /proc, forks
 *         worker (pid 2 inside), which waits for `go`, and
 *         quitter (pid 3 inside), which exits with status 7 (a zombie until go).
 * After restore, inside the namespace: init is still pid 1 and /proc/self says so
 * (its procfs is back), the worker is pid 2 with parent 1 and sees the same /proc,
 * init reaps the zombie (pid 3, status 7) and the worker (status 0); the root reaps
 * init and checks its status and that its own pid and the host's /proc are unchanged.
 * args: WORKDIR [all] — "all" adds new UTS and IPC namespaces (`unshare --fork --pid
 * --mount-proc --uts --ipc`): init sets a host name and creates a SysV segment (key
 * 0x5151, a pattern written) and a message queue (key 0x5152, one message); after
 * restore init checks the name, the segment's contents by key and receives the message.
 */
#include "common.h"
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/utsname.h>

static int g_all; /* "all": also own UTS and IPC namespaces with a host name and SysV objects */
struct qmsg { long mtype; char text[16]; };

static int proc_self(void)
{
    char b[64] = { 0 };
    if (readlink("/proc/self", b, sizeof b - 1) <= 0)
        return -1;
    return atoi(b);
}

static void worker(void)
{
    wait_go();
    if (getpid() != 2)
        _exit(10);
    if (getppid() != 1)
        _exit(11);
    if (proc_self() != 2)
        _exit(12);
    _exit(0);
}

static void init_main(int ready_w)
{
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
        _exit(20);
    pid_t w = fork();
    if (w == 0)
        worker();
    pid_t q = fork();
    if (q == 0)
        _exit(7);
    if (w != 2 || q != 3)
        _exit(21);
    int shmid = -1, msqid = -1;
    if (g_all) {
        if (sethostname("stasis-ns", 9))
            _exit(40);
        shmid = shmget(0x5151, 8192, IPC_CREAT | 0600);
        msqid = msgget(0x5152, IPC_CREAT | 0600);
        if (shmid < 0 || msqid < 0)
            _exit(41);
        unsigned char *p = shmat(shmid, NULL, 0);
        if (p == (void *)-1)
            _exit(42);
        for (int i = 0; i < 8192; i++)
            p[i] = (unsigned char)(i * 7 + 3);
        shmdt(p);
        struct qmsg m = { 5, "inside" };
        if (msgsnd(msqid, &m, sizeof m.text, 0))
            _exit(43);
    }
    if (write(ready_w, "r", 1) != 1)
        _exit(22);
    close(ready_w);
    wait_go();
    int code = 0;
    if (getpid() != 1)
        code = 23;
    if (proc_self() != 1)
        code = 24;
    if (g_all) {
        struct utsname u;
        if (uname(&u) || strcmp(u.nodename, "stasis-ns"))
            code = 44;
        if (shmget(0x5151, 0, 0) != shmid || msgget(0x5152, 0) != msqid)
            code = 45;
        unsigned char *p = shmat(shmid, NULL, SHM_RDONLY);
        if (p == (void *)-1)
            code = 46;
        else
            for (int i = 0; i < 8192; i++)
                if (p[i] != (unsigned char)(i * 7 + 3)) {
                    code = 47;
                    break;
                }
        struct qmsg m = { 0, "" };
        if (msgrcv(msqid, &m, sizeof m.text, 0, IPC_NOWAIT) != sizeof m.text || m.mtype != 5 || strcmp(m.text, "inside"))
            code = 48;
        shmctl(shmid, IPC_RMID, NULL);
        msgctl(msqid, IPC_RMID, NULL);
    }
    int st;
    if (waitpid(3, &st, 0) != 3 || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        code = 25;
    if (waitpid(2, &st, 0) != 2 || !WIFEXITED(st))
        code = 26;
    else if (WEXITSTATUS(st) != 0)
        code = 30 + WEXITSTATUS(st);
    _exit(code);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    pid_t me = getpid();
    int host_self = proc_self();
    int rp[2];
    if (pipe(rp))
        DIE("pipe");
    g_all = argc > 2 && !strcmp(argv[2], "all");
    if (unshare(CLONE_NEWPID | CLONE_NEWNS | (g_all ? CLONE_NEWUTS | CLONE_NEWIPC : 0)))
        DIE("unshare");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        DIE("mount private");
    pid_t init = fork();
    if (init < 0)
        DIE("fork");
    if (init == 0) {
        close(rp[0]);
        init_main(rp[1]);
    }
    close(rp[1]);
    char c;
    if (read(rp[0], &c, 1) != 1)
        DIE("init did not get ready");
    close(rp[0]);
    info("init", "%d", (int)init);
    ready();
    wait_go();
    CHECK(getpid() == me, "root pid %d, want %d", (int)getpid(), (int)me);
    int st;
    CHECK(waitpid(init, &st, 0) == init, "waitpid(init): %s", strerror(errno));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "init ended with status %#x (exit %d)", st, WEXITSTATUS(st));
    /* The root is in the new mount namespace, whose /proc is the namespace's procfs
     * (init mounted it there). */
    CHECK(host_self == me, "host /proc/self was %d", host_self);
    return finish();
}
