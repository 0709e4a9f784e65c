/*
 * tree_shared: a parent and a child sharing
 *   - one open file description of data.bin (opened once, inherited by fork): after the
 *     restore the child reads 100 bytes, and the parent's offset must have moved by 100
 *     and its next read must return the bytes after the child's;
 *   - a MAP_SHARED|MAP_ANONYMOUS counter, and
 *   - a counter in a POSIX shared-memory object (shm_open, /dev/shm), which the child
 *     keeps an fd of (the parent closed its fd after mapping).
 * Both processes add ROUNDS to each counter before READY and ROUNDS after `go`;
 * the totals must be 4 * ROUNDS.
 */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define ROUNDS 100000
#define FLEN 8192

static unsigned char fbyte(int i) { return (unsigned char)(i * 7 + i / 256); }

static void bump(volatile uint64_t *a, volatile uint64_t *b)
{
    for (int i = 0; i < ROUNDS; i++) {
        __atomic_add_fetch(a, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(b, 1, __ATOMIC_SEQ_CST);
    }
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    unsigned char content[FLEN];
    for (int i = 0; i < FLEN; i++)
        content[i] = fbyte(i);
    int w = open(wl_path("data.bin"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w < 0 || write(w, content, FLEN) != FLEN)
        DIE("data.bin");
    close(w);
    int fd = open(wl_path("data.bin"), O_RDONLY);
    if (fd < 0)
        DIE("open data.bin");
    unsigned char b[128];
    if (read(fd, b, 10) != 10)
        DIE("read");

    volatile uint64_t *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        DIE("mmap anon");
    char shm_name[64];
    snprintf(shm_name, sizeof shm_name, "/stasis-test-shm-%d", (int)getpid());
    int shm = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (shm < 0 || ftruncate(shm, 8192))
        DIE("shm_open");
    volatile uint64_t *posix = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
    if (posix == MAP_FAILED)
        DIE("mmap shm");
    posix += 64; /* second cache line of the first page */
    int pc[2], cp[2];
    if (pipe(pc) || pipe(cp))
        DIE("pipe");
    pid_t child = fork();
    if (child == 0) {
        close(pc[1]);
        close(cp[0]);
        bump(anon, posix);
        wait_go();
        bump(anon, posix);
        char c;
        CHECK(read(pc[0], &c, 1) == 1, "child: no turn");
        off_t at = lseek(fd, 0, SEEK_CUR);
        CHECK(at == 10, "child: shared offset is %lld, want 10", (long long)at);
        CHECK(read(fd, b, 100) == 100 && !memcmp(b, content + 10, 100), "child: read of bytes 10..110 differs");
        struct stat sb;
        CHECK(fstat(shm, &sb) == 0 && sb.st_size == 8192, "child: shm fd lost");
        CHECK(write(cp[1], "k", 1) == 1, "child: ack");
        _exit(g_failed ? 1 : 0);
    }
    close(shm);
    close(pc[0]);
    close(cp[1]);
    bump(anon, posix);
    for (int i = 0; i < 1000 && (anon[0] != 2 * ROUNDS || posix[0] != 2 * ROUNDS); i++)
        sleep_ms(10);
    if (anon[0] != 2 * ROUNDS || posix[0] != 2 * ROUNDS) {
        errno = 0;
        DIE("counters before READY");
    }
    info("child", "%d", (int)child);
    info("shm", "/dev/shm%s", shm_name);
    ready();
    wait_go();
    bump(anon, posix);
    CHECK(write(pc[1], "t", 1) == 1, "turn");
    char c;
    CHECK(read(cp[0], &c, 1) == 1, "no ack from the child");
    off_t at = lseek(fd, 0, SEEK_CUR);
    CHECK(at == 110, "parent: offset after the child's read is %lld, want 110", (long long)at);
    CHECK(read(fd, b, 16) == 16 && !memcmp(b, content + 110, 16), "parent: read after the child's differs");
    int st = 0;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
    CHECK(anon[0] == 4 * ROUNDS, "anonymous shared counter %llu, want %d", (unsigned long long)anon[0], 4 * ROUNDS);
    CHECK(posix[0] == 4 * ROUNDS, "POSIX shm counter %llu, want %d", (unsigned long long)posix[0], 4 * ROUNDS);
    shm_unlink(shm_name);
    return finish();
}
