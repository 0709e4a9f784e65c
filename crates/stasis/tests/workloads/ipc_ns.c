/*
 * ipc_ns: a process in an IPC namespace of its own (it unshares it itself) with
 *   - segment A (key 0x57a50001, 3 pages + 100 bytes, mode 0640, owner 1234:4321),
 *     attached read-write, first two pages written, the third never touched;
 *   - segment B (IPC_PRIVATE, one page) attached read-only;
 *   - segment C (key 0x57a50003) attached, then IPC_RMID'ed (destroyed while attached);
 *   - segment D (key 0x57a50004) with content but not attached;
 *   - message queue Q (key 0x57a50011, mode 0620, qbytes 18000 > kernel.msgmnb) with
 *     four messages of types 3, 1, 2, 1, and an empty private queue;
 *   - semaphore set S (key 0x57a50021, 4 semaphores = 0, 5, 32767, 1);
 *   - kernel.msgmax set to 4000 in the namespace;
 *   - a child (same namespace, A attached through fork);
 *   - a SEM_UNDO list (semop +1 then -1 on S[3] with SEM_UNDO).
 * After restore: every id, key, mode, owner, size is the same; contents of A, B, C, D;
 * C still marked destroyed; the third page of A still not resident in the segment;
 * msgrcv(type 1) takes "one", then the rest come out in order; semaphore values, and a
 * semop works; kernel.msgmax still 4000.
 */
#include "common.h"
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define KA 0x57a50001
#define KC 0x57a50003
#define KD 0x57a50004
#define KQ 0x57a50011
#define KS 0x57a50021

struct m { long type; char text[64]; };

static void put_sysctl(const char *name, const char *v)
{
    char p[128];
    snprintf(p, sizeof p, "/proc/sys/kernel/%s", name);
    int fd = open(p, O_WRONLY);
    if (fd < 0 || write(fd, v, strlen(v)) < 0)
        DIE(p);
    close(fd);
}

static long get_sysctl(const char *name)
{
    char p[128], b[64];
    snprintf(p, sizeof p, "/proc/sys/kernel/%s", name);
    if (read_file(p, b, sizeof b) < 0)
        return -1;
    return atol(b);
}

static void send(int q, long type, const char *text)
{
    struct m msg = { type, { 0 } };
    strcpy(msg.text, text);
    if (msgsnd(q, &msg, strlen(text), IPC_NOWAIT))
        DIE("msgsnd");
}

static void check_shm(int id, key_t key, unsigned mode, size_t size, const char *what)
{
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds)) {
        CHECK(0, "%s: IPC_STAT of shm %d: %s", what, id, strerror(errno));
        return;
    }
    CHECK(ds.shm_perm.__key == key, "%s: key %#x, want %#x", what, ds.shm_perm.__key, key);
    CHECK((ds.shm_perm.mode & 01777) == mode, "%s: mode %o, want %o", what, ds.shm_perm.mode & 01777, mode);
    CHECK(ds.shm_segsz == size, "%s: size %zu, want %zu", what, (size_t)ds.shm_segsz, size);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (unshare(CLONE_NEWIPC))
        DIE("unshare(CLONE_NEWIPC)");
    size_t asz = 3 * 4096 + 100;
    /* a throwaway segment first, so the ids are not the first ones */
    int tmp = shmget(IPC_PRIVATE, 4096, 0600);
    int a = shmget(KA, asz, IPC_CREAT | IPC_EXCL | 0640);
    shmctl(tmp, IPC_RMID, NULL);
    if (a < 0)
        DIE("shmget A");
    struct shmid_ds ds;
    shmctl(a, IPC_STAT, &ds);
    ds.shm_perm.uid = 1234;
    ds.shm_perm.gid = 4321;
    if (shmctl(a, IPC_SET, &ds))
        DIE("IPC_SET A");
    char *pa = shmat(a, NULL, 0);
    if (pa == (void *)-1)
        DIE("shmat A");
    fill_pattern(pa, 2 * 4096, 11);

    int b = shmget(IPC_PRIVATE, 4096, 0600);
    char *w = shmat(b, NULL, 0);
    if (b < 0 || w == (void *)-1)
        DIE("shm B");
    fill_pattern(w, 4096, 22);
    shmdt(w);
    const char *pb = shmat(b, NULL, SHM_RDONLY);
    if (pb == (void *)-1)
        DIE("shmat B read-only");

    int c = shmget(KC, 8192, IPC_CREAT | IPC_EXCL | 0600);
    char *pc = shmat(c, NULL, 0);
    if (c < 0 || pc == (void *)-1)
        DIE("shm C");
    fill_pattern(pc, 8192, 33);
    if (shmctl(c, IPC_RMID, NULL))
        DIE("IPC_RMID C");

    int d = shmget(KD, 4096, IPC_CREAT | IPC_EXCL | 0644);
    char *pd = shmat(d, NULL, 0);
    if (d < 0 || pd == (void *)-1)
        DIE("shm D");
    fill_pattern(pd, 4096, 44);
    shmdt(pd);

    put_sysctl("msgmnb", "20000");
    put_sysctl("msgmax", "4000");
    int q = msgget(KQ, IPC_CREAT | IPC_EXCL | 0620);
    if (q < 0)
        DIE("msgget");
    struct msqid_ds mq;
    msgctl(q, IPC_STAT, &mq);
    mq.msg_qbytes = 18000;
    if (msgctl(q, IPC_SET, &mq))
        DIE("msgctl IPC_SET");
    put_sysctl("msgmnb", "16384");
    send(q, 3, "three");
    send(q, 1, "one");
    send(q, 2, "two-two");
    send(q, 1, "uno");
    int q2 = msgget(IPC_PRIVATE, 0600);
    if (q2 < 0)
        DIE("msgget private");

    int s = semget(KS, 4, IPC_CREAT | IPC_EXCL | 0600);
    unsigned short vals[4] = { 0, 5, 32767, 1 };
    if (s < 0 || semctl(s, 0, SETALL, vals))
        DIE("sem");

    /* a child in the same namespace, with A attached through fork */
    pid_t kid = fork();
    if (kid == 0) {
        wait_go();
        CHECK(shmget(KA, 0, 0) == a && msgget(KQ, 0) == q, "child: keys lead elsewhere");
        CHECK(check_pattern(pa, 2 * 4096, 11) < 0, "child: A content differs");
        _exit(g_failed ? 1 : 0);
    }
    info("child", "%d", (int)kid);
    info("shm", "%d %d %d %d", a, b, c, d);
    info("msg", "%d %d", q, q2);
    info("sem", "%d", s);
    /* an undo list of its own whose adjustments sum to nothing (dump warns of it) */
    struct sembuf up = { 3, 1, SEM_UNDO }, down = { 3, -1, SEM_UNDO };
    if (semop(s, &up, 1) || semop(s, &down, 1))
        DIE("semop SEM_UNDO");
    ready();
    wait_go();

    int st = 0;
    CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
    check_shm(a, KA, 0640, asz, "A");
    shmctl(a, IPC_STAT, &ds);
    CHECK(ds.shm_perm.uid == 1234 && ds.shm_perm.gid == 4321, "A: owner %d:%d", ds.shm_perm.uid, ds.shm_perm.gid);
    CHECK(ds.shm_nattch == 1, "A: %lu attachments (the child has exited)", (unsigned long)ds.shm_nattch);
    CHECK(check_pattern(pa, 2 * 4096, 11) < 0, "A: content differs");
    unsigned char vec[4] = { 0 };
    CHECK(mincore(pa, 3 * 4096, vec) == 0 && !(vec[2] & 1), "A: the never-touched page exists now (%d)", vec[2]);
    CHECK(pa[3 * 4096 + 99] == 0, "A: tail not zero");
    check_shm(b, IPC_PRIVATE, 0600, 4096, "B");
    CHECK(check_pattern(pb, 4096, 22) < 0, "B: content differs");
    char line[256];
    snprintf(line, sizeof line, "/proc/self/maps");
    FILE *f = fopen("/proc/self/maps", "r");
    int b_ro = 0;
    while (f && fgets(line, sizeof line, f))
        if (strtoul(line, NULL, 16) == (unsigned long)pb && !strncmp(strchr(line, ' ') + 1, "r--s", 4))
            b_ro = 1;
    if (f)
        fclose(f);
    CHECK(b_ro, "B: not attached read-only at %p", pb);
    check_shm(c, IPC_PRIVATE, 01600, 8192, "C (destroyed)");
    CHECK(check_pattern(pc, 8192, 33) < 0, "C: content differs");
    check_shm(d, KD, 0644, 4096, "D");
    pd = shmat(d, NULL, SHM_RDONLY);
    CHECK(pd != (void *)-1 && check_pattern(pd, 4096, 44) < 0, "D: content differs");
    CHECK(shmget(KA, 0, 0) == a && shmget(KD, 0, 0) == d, "keys lead elsewhere");

    CHECK(msgctl(q, IPC_STAT, &mq) == 0, "Q: IPC_STAT: %s", strerror(errno));
    CHECK(mq.msg_perm.__key == KQ && (mq.msg_perm.mode & 0777) == 0620, "Q: key %#x mode %o", mq.msg_perm.__key, mq.msg_perm.mode);
    CHECK(mq.msg_qnum == 4 && mq.msg_qbytes == 18000, "Q: %lu messages, qbytes %lu", (unsigned long)mq.msg_qnum, (unsigned long)mq.msg_qbytes);
    struct m got;
    memset(&got, 0, sizeof got);
    ssize_t n = msgrcv(q, &got, sizeof got.text, 1, IPC_NOWAIT);
    CHECK(n == 3 && got.type == 1 && !memcmp(got.text, "one", 3), "Q: type-1 message: %zd %ld '%s'", n, got.type, got.text);
    const char *rest[] = { "three", "two-two", "uno" };
    long types[] = { 3, 2, 1 };
    for (int i = 0; i < 3; i++) {
        memset(&got, 0, sizeof got);
        n = msgrcv(q, &got, sizeof got.text, 0, IPC_NOWAIT);
        CHECK(n == (ssize_t)strlen(rest[i]) && got.type == types[i] && !strcmp(got.text, rest[i]),
              "Q: message %d: %zd %ld '%s', want %ld '%s'", i, n, got.type, got.text, types[i], rest[i]);
    }
    CHECK(msgctl(q2, IPC_STAT, &mq) == 0 && mq.msg_qnum == 0 && mq.msg_perm.__key == IPC_PRIVATE, "Q2 lost");

    unsigned short now[4] = { 9, 9, 9, 9 };
    CHECK(semctl(s, 0, GETALL, now) == 0, "S: GETALL: %s", strerror(errno));
    for (int i = 0; i < 4; i++)
        CHECK(now[i] == vals[i], "S: semaphore %d = %d, want %d", i, now[i], vals[i]);
    struct sembuf op = { 1, -1, IPC_NOWAIT };
    CHECK(semop(s, &op, 1) == 0 && semctl(s, 1, GETVAL) == 4, "S: semop");
    struct semid_ds sd;
    union { int v; struct semid_ds *buf; } arg = { .buf = &sd };
    CHECK(semctl(s, 0, IPC_STAT, arg) == 0 && sd.sem_perm.__key == KS && sd.sem_nsems == 4 && (sd.sem_perm.mode & 0777) == 0600,
          "S: IPC_STAT");
    CHECK(get_sysctl("msgmax") == 4000 && get_sysctl("msgmnb") == 16384, "sysctls msgmax %ld msgmnb %ld",
          get_sysctl("msgmax"), get_sysctl("msgmnb"));
    return finish();
}
