/*
 * mem_special MODE: mappings with unusual backing.
 *   pasteof  a file of 6000 bytes mapped 4 pages, private (page 0 written: a
 *            copy-on-write page) and shared: after restore pages 0-1 read as before
 *            (page 1's tail past the end of the file reads as zeros), touching page 2
 *            or 3 still raises SIGBUS (checked before the dump too)
 *   devzero  /dev/zero mapped shared (shared anonymous memory in disguise) and private,
 *            both written; a child forked after shares the shared one: after restore
 *            both see each other's writes in it, the private ones stay private
 *   pktring  an AF_PACKET socket with a PACKET_RX_RING of which only the first 3 of its
 *            4 pages stay mapped (the dump must refuse the partial ring)
 *   device   /dev/loop0 mapped read-only shared (the dump must refuse it)
 *   guard    guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13) in an anonymous
 *            mapping of 16 pages (page 4, pages 10-11) with data around them: after
 *            restore the data is there and touching a guard page still raises SIGSEGV
 */
#include "common.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <arpa/inet.h>

static sigjmp_buf jb;
static volatile int got_bus;

static void on_bus(int sig)
{
    (void)sig;
    got_bus = 1;
    siglongjmp(jb, 1);
}

/* 1 if reading *p raises SIGBUS */
static int bus_on_read(volatile char *p)
{
    got_bus = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile char c = *p;
        (void)c;
    }
    return got_bus;
}

static int pasteof(void)
{
    struct sigaction sa = { 0 };
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, NULL);
    int fd = open(wl_path("short.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    static char buf[6000];
    fill_pattern(buf, 5992, 11);
    if (fd < 0 || write(fd, buf, sizeof buf) != sizeof buf)
        DIE("short.bin");
    char *priv = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *shr = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (priv == MAP_FAILED || shr == MAP_FAILED)
        DIE("mmap");
    close(fd);
    fill_pattern(priv, 4096, 12); /* copy-on-write page 0 */
    for (int i = 0; i < 2; i++) {
        CHECK(bus_on_read(priv + 2 * 4096 + i * 4096), "private page %d past the end did not SIGBUS (before)", 2 + i);
        CHECK(bus_on_read(shr + 2 * 4096 + i * 4096), "shared page %d past the end did not SIGBUS (before)", 2 + i);
    }
    ready();
    wait_go();
    CHECK(check_pattern(priv, 4096, 12) < 0, "private page 0 (written) differs");
    CHECK(check_pattern(shr, 4096, 11) < 0, "shared page 0 differs from the file");
    CHECK(memcmp(priv + 4096, buf + 4096, 6000 - 4096) == 0, "private page 1 differs from the file");
    CHECK(memcmp(shr + 4096, buf + 4096, 6000 - 4096) == 0, "shared page 1 differs from the file");
    int zero = 1;
    for (int i = 6000; i < 8192; i++)
        zero &= priv[i] == 0 && shr[i] == 0;
    CHECK(zero, "the tail of page 1 past the end of the file is not zero");
    for (int i = 0; i < 2; i++) {
        CHECK(bus_on_read(priv + 2 * 4096 + i * 4096), "private page %d past the end did not SIGBUS after the restore", 2 + i);
        CHECK(bus_on_read(shr + 2 * 4096 + i * 4096), "shared page %d past the end did not SIGBUS after the restore", 2 + i);
    }
    unlink(wl_path("short.bin"));
    return finish();
}

static int devzero(void)
{
    int fd = open("/dev/zero", O_RDWR);
    char *shr = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *priv = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (fd < 0 || shr == MAP_FAILED || priv == MAP_FAILED)
        DIE("mmap /dev/zero");
    close(fd);
    fill_pattern(shr, 512 << 10, 21);
    fill_pattern(priv, 256 << 10, 22);
    int sync[2];
    if (pipe(sync))
        DIE("pipe");
    pid_t kid = fork();
    if (kid < 0)
        DIE("fork");
    if (kid == 0) {
        close(sync[0]);
        fill_pattern(priv, 4096, 23); /* its own copy of a private page */
        if (write(sync[1], "k", 1) != 1)
            _exit(2);
        wait_go();
        CHECK(check_pattern(shr, 512 << 10, 21) < 0, "child: shared /dev/zero content");
        CHECK(check_pattern(priv, 4096, 23) < 0, "child: its private page");
        fill_pattern(shr + (600 << 10), 4096, 24); /* the parent must see this */
        __atomic_store_n((int *)(shr + (900 << 10)), 1, __ATOMIC_SEQ_CST);
        _exit(g_failed ? 1 : 0);
    }
    close(sync[1]);
    char c;
    if (read(sync[0], &c, 1) != 1)
        DIE("child");
    info("child", "%d", (int)kid);
    ready();
    wait_go();
    CHECK(check_pattern(shr, 512 << 10, 21) < 0, "shared /dev/zero content");
    CHECK(check_pattern(priv, 256 << 10, 22) < 0, "private /dev/zero content (the child's write must not show)");
    double t0 = now_mono();
    while (!__atomic_load_n((int *)(shr + (900 << 10)), __ATOMIC_SEQ_CST) && now_mono() - t0 < 10)
        sleep_ms(5);
    CHECK(check_pattern(shr + (600 << 10), 4096, 24) < 0, "the child's write to shared /dev/zero memory after the restore is not seen");
    int st = 0;
    CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed: %#x", st);
    return finish();
}

static int pktring(void)
{
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (s < 0)
        DIE("socket AF_PACKET");
    struct tpacket_req req = { .tp_block_size = 4096, .tp_block_nr = 4, .tp_frame_size = 2048, .tp_frame_nr = 8 };
    if (setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof req))
        DIE("PACKET_RX_RING");
    void *ring = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    if (ring == MAP_FAILED)
        DIE("mmap ring");
    if (munmap((char *)ring + 3 * 4096, 4096))
        DIE("munmap the ring's last page");
    info("ring", "%p", ring);
    ready();
    wait_go();
    return finish();
}

static int device(void)
{
    int fd = open("/dev/loop0", O_RDONLY);
    if (fd < 0)
        DIE("open /dev/loop0");
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        DIE("mmap /dev/loop0");
    info("map", "%p", p);
    ready();
    wait_go();
    return finish();
}

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* 1 if reading *p raises SIGSEGV */
static int segv_on_read(volatile char *p)
{
    got_bus = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile char c = *p;
        (void)c;
    }
    return got_bus;
}

static int is_guard(int i)
{
    return i == 4 || i == 10 || i == 11;
}

static int guard(void)
{
    struct sigaction sa = { 0 };
    sa.sa_handler = on_bus;
    sigaction(SIGSEGV, &sa, NULL);
    char *p = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        DIE("mmap");
    for (int i = 0; i < 16; i++)
        fill_pattern(p + i * 4096, 4096, 40 + i);
    if (madvise(p + 4 * 4096, 4096, MADV_GUARD_INSTALL) || madvise(p + 10 * 4096, 2 * 4096, MADV_GUARD_INSTALL))
        DIE("MADV_GUARD_INSTALL");
    for (int i = 0; i < 16; i++)
        CHECK(segv_on_read(p + i * 4096) == is_guard(i), "page %d: guard %d before the dump", i, is_guard(i));
    info("map", "%p", (void *)p);
    ready();
    wait_go();
    for (int i = 0; i < 16; i++) {
        if (is_guard(i))
            CHECK(segv_on_read(p + i * 4096 + 100), "guard page %d is readable after the restore", i);
        else
            CHECK(check_pattern(p + i * 4096, 4096, 40 + i) < 0, "page %d differs after the restore", i);
    }
    return finish();
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "";
    if (!strcmp(mode, "pasteof"))
        return pasteof();
    if (!strcmp(mode, "devzero"))
        return devzero();
    if (!strcmp(mode, "pktring"))
        return pktring();
    if (!strcmp(mode, "device"))
        return device();
    if (!strcmp(mode, "guard"))
        return guard();
    DIE("unknown mode");
}
