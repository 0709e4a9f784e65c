/*
 * ext_shared WORKDIR pipe|shm|anon: a process sharing a resource with a process
 * outside its tree (tests/external.rs gives it the fds).
 *
 * pipe: fd 5 is the read end of a pipe and fd 6 the write end of another,
 *       whose other ends an outside process holds. After go it reads one
 *       line from fd 5 (10 s at most), checks it is "ping 42" and answers
 *       "pong 42" on fd 6.
 * shm:  fd 5 is a memfd of 4096 bytes, which it maps MAP_SHARED and closes
 *       (only the mapping is left); it writes "before-dump" at offset 0 and
 *       checks the outside process wrote "helper" at 256. After go it waits
 *       (10 s at most) for "from-test" at offset 64, reports what offset 0
 *       holds (INFO at0=...) and writes "from-workload" at offset 128.
 * anon: like shm with MAP_SHARED|MAP_ANONYMOUS memory shared with its parent:
 *       the parent maps it, writes "helper" at 256, forks the child that does
 *       the checks (INFO child=PID; only the child is dumped), reaps it and
 *       sleeps until it is killed.
 */
#include "common.h"
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>

static int do_pipe(void)
{
    struct stat st;
    if (fstat(5, &st) != 0 || !S_ISFIFO(st.st_mode) || fstat(6, &st) != 0 || !S_ISFIFO(st.st_mode))
        DIE("fds 5 and 6 must be pipes");
    ready();
    wait_go();
    char buf[64] = { 0 };
    size_t n = 0;
    double end = now_mono() + 10;
    while (n < sizeof buf - 1 && (n == 0 || buf[n - 1] != '\n') && now_mono() < end) {
        struct pollfd p = { .fd = 5, .events = POLLIN };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = read(5, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += k;
    }
    CHECK(strcmp(buf, "ping 42\n") == 0, "fd 5 gave '%s', expected 'ping 42'", buf);
    CHECK(write(6, "pong 42\n", 8) == 8, "writing fd 6: %s", strerror(errno));
    return finish();
}

static int shm_checks(char *p)
{
    memcpy(p, "before-dump", 12);
    double end = now_mono() + 10;
    while (strcmp(p + 256, "helper") != 0 && now_mono() < end)
        sleep_ms(10);
    if (strcmp(p + 256, "helper") != 0)
        DIE("the outside process's write is not visible");
    ready();
    wait_go();
    end = now_mono() + 10;
    while (strcmp(p + 64, "from-test") != 0 && now_mono() < end) {
        sleep_ms(10);
        __asm__ volatile("" ::: "memory");
    }
    CHECK(strcmp(p + 64, "from-test") == 0, "offset 64 holds '%.16s', expected 'from-test'", p + 64);
    info("at0", "%.16s", p);
    memcpy(p + 128, "from-workload", 14);
    return finish();
}

static int do_shm(void)
{
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 5, 0);
    if (p == MAP_FAILED)
        DIE("mmap fd 5");
    close(5);
    return shm_checks(p);
}

static int do_anon(void)
{
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        DIE("mmap shared anonymous");
    memcpy(p + 256, "helper", 7);
    pid_t c = fork();
    if (c < 0)
        DIE("fork");
    if (c == 0)
        return shm_checks(p);
    info("child", "%d", (int)c);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR)
        ;
    for (;;)
        sleep_ms(10);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc > 2 && strcmp(argv[2], "pipe") == 0)
        return do_pipe();
    if (argc > 2 && strcmp(argv[2], "shm") == 0)
        return do_shm();
    if (argc > 2 && strcmp(argv[2], "anon") == 0)
        return do_anon();
    fprintf(stderr, "usage: %s WORKDIR pipe|shm|anon\n", argv[0]);
    return 2;
}
