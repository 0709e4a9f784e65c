/*
 * mqueue: POSIX message queues (mq_open).
 *   q1   /stasis-mq-PID, O_RDWR, mode 0640, 8 messages of 64 bytes at most, holding
 *        "low-1" (priority 1), "high" (5), "low-2" (1)
 *   q1w  a second description of it, O_WRONLY|O_NONBLOCK
 *   q2   /stasis-mq2-PID holding "ghost", unlinked while open
 * INFO name=/stasis-mq-PID. With "notify": q1 also has a notification registered
 * (mq_notify, SIGUSR1), which the dump refuses.
 * After go: attributes and flags as they were, the messages in mq_receive's order
 * (high, low-1, low-2), the write-only description cannot receive, a message sent
 * through it arrives, the unlinked queue still has its message and no name, the named
 * one is reached by its name and has mode 0640. Then q1 is unlinked.
 */
#include "common.h"
#include <mqueue.h>
#include <signal.h>
#include <sys/stat.h>

static void recv_is(mqd_t q, const char *want, unsigned prio, const char *what)
{
    char b[64] = { 0 };
    unsigned p = 99;
    struct timespec past = { 0, 0 };
    ssize_t n = mq_timedreceive(q, b, sizeof b, &p, &past);
    CHECK(n == (ssize_t)strlen(want) && !memcmp(b, want, n) && p == prio, "%s: got '%.*s' (%zd bytes) priority %u, want '%s' %u", what,
          n > 0 ? (int)n : 0, b, n, p, want, prio);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int notify = argc > 2 && !strcmp(argv[2], "notify");
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "/stasis-mq-%d", getpid());
    snprintf(n2, sizeof n2, "/stasis-mq2-%d", getpid());
    struct mq_attr a = { .mq_maxmsg = 8, .mq_msgsize = 64 };
    umask(0);
    mqd_t q1 = mq_open(n1, O_CREAT | O_EXCL | O_RDWR, 0640, &a);
    mqd_t q2 = mq_open(n2, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
    mqd_t q1w = mq_open(n1, O_WRONLY | O_NONBLOCK);
    if (q1 < 0 || q2 < 0 || q1w < 0)
        DIE("mq_open");
    if (mq_send(q1, "low-1", 5, 1) || mq_send(q1, "high", 4, 5) || mq_send(q1, "low-2", 5, 1) || mq_send(q2, "ghost", 5, 0) || mq_unlink(n2))
        DIE("mq_send");
    if (notify) {
        struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
        if (mq_notify(q2, &ev))
            DIE("mq_notify");
    }
    info("name", "%s", n1);
    ready();
    wait_go();
    struct mq_attr g;
    CHECK(mq_getattr(q1, &g) == 0 && g.mq_maxmsg == 8 && g.mq_msgsize == 64 && g.mq_curmsgs == 3 && g.mq_flags == 0,
          "q1 attributes: maxmsg %ld msgsize %ld curmsgs %ld flags %#lx", g.mq_maxmsg, g.mq_msgsize, g.mq_curmsgs, g.mq_flags);
    CHECK(mq_getattr(q1w, &g) == 0 && g.mq_flags == O_NONBLOCK, "q1w flags %#lx, want O_NONBLOCK", g.mq_flags);
    struct stat st;
    CHECK(fstat(q1, &st) == 0 && (st.st_mode & 0777) == 0640, "q1 mode %o, want 640", st.st_mode & 0777);
    recv_is(q1, "high", 5, "q1 first");
    recv_is(q1, "low-1", 1, "q1 second");
    recv_is(q1, "low-2", 1, "q1 third");
    char b[64];
    CHECK(mq_receive(q1w, b, sizeof b, NULL) < 0 && errno == EBADF, "the write-only description received (errno %d)", errno);
    CHECK(mq_send(q1w, "via-w", 5, 2) == 0, "send through q1w: %s", strerror(errno));
    mqd_t again = mq_open(n1, O_RDONLY);
    CHECK(again >= 0, "mq_open %s by name: %s", n1, strerror(errno));
    if (again >= 0)
        recv_is(again, "via-w", 2, "q1 by its name");
    CHECK(mq_getattr(q2, &g) == 0 && g.mq_curmsgs == 1, "q2 holds %ld messages", g.mq_curmsgs);
    recv_is(q2, "ghost", 0, "q2 (unlinked)");
    CHECK(mq_open(n2, O_RDONLY) < 0 && errno == ENOENT, "the unlinked queue has a name again (errno %d)", errno);
    mq_unlink(n1);
    return finish();
}
