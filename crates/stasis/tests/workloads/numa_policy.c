/*
 * numa_policy: NUMA memory policies on node 0 (every machine has it): the main thread
 * MPOL_PREFERRED with MPOL_F_STATIC_NODES, a second thread MPOL_INTERLEAVE, a region
 * mbind'ed MPOL_BIND inside a larger mapping (which splits it) and a thread back at
 * MPOL_DEFAULT. After restore each thread and each part of the mapping reads back its
 * own policy (get_mempolicy), contents kept. With "result" the verdict goes to
 * WORKDIR/result (for --leave-running).
 */
#include "common.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_F_STATIC_NODES (1 << 15)
#define MPOL_F_ADDR 2
#define MAXNODE 1024

static volatile int g_go, g_done[2];
static int g_mode[2] = { MPOL_INTERLEAVE, MPOL_DEFAULT };

static void get_policy(void *addr, int *mode, unsigned long *mask)
{
    unsigned long m[MAXNODE / 64] = { 0 };
    *mode = -1;
    if (syscall(SYS_get_mempolicy, mode, m, MAXNODE, addr, addr ? MPOL_F_ADDR : 0))
        DIE("get_mempolicy");
    *mask = m[0];
}

static void *thread_main(void *a)
{
    int i = (int)(intptr_t)a;
    unsigned long one = 1;
    /* threads start with the main thread's policy: the second one goes back to default */
    if (syscall(SYS_set_mempolicy, g_mode[i], g_mode[i] ? &one : NULL, g_mode[i] ? MAXNODE : 0))
        DIE("set_mempolicy (thread)");
    g_done[i] = 1;
    while (!g_go)
        sleep_ms(5);
    int mode;
    unsigned long mask;
    get_policy(NULL, &mode, &mask);
    CHECK(mode == g_mode[i] && mask == (g_mode[i] ? 1UL : 0UL), "thread %d: policy %d mask %#lx, want %d", i, mode, mask, g_mode[i]);
    g_done[i] = 2;
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int to_result = argc > 2 && strcmp(argv[2], "result") == 0;
    unsigned long one = 1;
    if (syscall(SYS_set_mempolicy, MPOL_PREFERRED | MPOL_F_STATIC_NODES, &one, MAXNODE))
        DIE("set_mempolicy");
    size_t page = 4096, len = 16 * page;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        DIE("mmap");
    if (syscall(SYS_mbind, m + 4 * page, 4 * page, MPOL_BIND, &one, MAXNODE, 0))
        DIE("mbind");
    fill_pattern(m, len, 42);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i))
            DIE("pthread_create");
    while (!g_done[0] || !g_done[1])
        sleep_ms(1);
    ready();
    wait_go();
    if (to_result && stdout_to_result())
        return 1;
    int mode;
    unsigned long mask;
    get_policy(NULL, &mode, &mask);
    CHECK(mode == (MPOL_PREFERRED | MPOL_F_STATIC_NODES) && mask == 1, "main thread: policy %#x mask %#lx", mode, mask);
    get_policy(m + 5 * page, &mode, &mask);
    CHECK(mode == MPOL_BIND && mask == 1, "mbind'ed part: policy %d mask %#lx", mode, mask);
    get_policy(m, &mode, &mask);
    CHECK(mode == MPOL_DEFAULT, "part before it: policy %d", mode);
    get_policy(m + 12 * page, &mode, &mask);
    CHECK(mode == MPOL_DEFAULT, "part after it: policy %d", mode);
    CHECK(check_pattern(m, len, 42) < 0, "content differs");
    g_go = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(g_done[0] == 2 && g_done[1] == 2, "threads did not check");
    return finish();
}
