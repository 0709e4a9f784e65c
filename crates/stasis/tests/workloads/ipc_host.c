/*
 * ipc_host: parent and child share a SysV segment of the host's IPC namespace
 * (key from argv[2], 2 pages + 10 bytes): a counter and a pattern. The child also has
 * a second, read-only attachment of it. argv[3]: "kept" = the test writes a marker
 * into page 1 after the dump (the segment outlived the dump and must be attached as
 * it is), "gone" = the test removed the segment after the dump (restore recreates it
 * with the dump-time contents). After restore the child increments the counter, the
 * parent sees it; ids, key and size are the same; the parent removes the segment.
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define MARKER 0xfeedfacecafef00dULL

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    if (argc < 4)
        DIE("usage");
    key_t key = (key_t)strtol(argv[2], NULL, 0);
    int kept = !strcmp(argv[3], "kept");
    size_t size = 2 * 4096 + 10;
    int id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0)
        DIE("shmget");
    volatile uint64_t *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        DIE("shmat");
    fill_pattern((void *)p, 2 * 4096, 5);
    p[0] = 100;
    pid_t c = fork();
    if (c == 0) {
        const volatile uint64_t *ro = shmat(id, NULL, SHM_RDONLY);
        if (ro == (void *)-1)
            DIE("child shmat");
        wait_go();
        CHECK(ro[0] == 100, "child: counter %lu", (unsigned long)ro[0]);
        __atomic_add_fetch(&p[0], 1, __ATOMIC_SEQ_CST);
        CHECK(ro[0] == 101, "child: read-only view %lu", (unsigned long)ro[0]);
        _exit(g_failed ? 1 : 0);
    }
    /* the child attached before READY */
    for (int i = 0; i < 1000; i++) {
        struct shmid_ds ds;
        if (shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 3)
            break;
        sleep_ms(5);
    }
    info("shmid", "%d", id);
    info("child", "%d", (int)c);
    ready();
    wait_go();
    int st = 0;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
    CHECK(p[0] == 101, "counter %lu, want 101", (unsigned long)p[0]);
    p[0] = pat64(5, 0);
    uint64_t w512 = p[512];
    if (kept) {
        CHECK(w512 == MARKER, "marker written after the dump is lost: %#lx", (unsigned long)w512);
        p[512] = pat64(5, 512);
    }
    CHECK(check_pattern((void *)p, 2 * 4096, 5) < 0, "content differs at word %ld", check_pattern((void *)p, 2 * 4096, 5));
    struct shmid_ds ds;
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.__key == key && ds.shm_segsz == size, "segment %d changed", id);
    CHECK(shmget(key, 0, 0) == id, "key leads elsewhere");
    shmctl(id, IPC_RMID, NULL);
    return finish();
}
