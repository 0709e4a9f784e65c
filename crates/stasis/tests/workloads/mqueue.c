/*
 * mqueue: a POSIX message queue (mq_open) holding one message. Its fd's link reads like
 * a path ("/name") but names no file of the host: dump refuses it by kind. After the
 * refused dump the queue still holds the message with its priority.
 */
#define _GNU_SOURCE
#include "common.h"
#include <mqueue.h>

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    char name[64];
    snprintf(name, sizeof name, "/stasis-test-mq-%d", (int)getpid());
    struct mq_attr at = { .mq_maxmsg = 4, .mq_msgsize = 32 };
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &at);
    if (q < 0)
        DIE("mq_open");
    if (mq_send(q, "queued", 6, 7))
        DIE("mq_send");
    info("fd", "%d", (int)q);
    info("name", "%s", name);
    ready();
    wait_go();
    char buf[32] = { 0 };
    unsigned prio = 0;
    ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
    CHECK(n == 6 && !memcmp(buf, "queued", 6) && prio == 7, "message %zd bytes %.6s prio %u", n, buf, prio);
    mq_unlink(name);
    return finish();
}
