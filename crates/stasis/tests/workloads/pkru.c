/*
 * pkru: the PKRU register (memory protection keys, part of xstate) in the main thread
 * and in a second thread, set to different values that keep key 0 (all normal memory)
 * accessible. After restore both threads read their own value back with rdpkru.
 * Prints "INFO pku=0" and passes without checks only if the CPU/OS lacks PKU.
 */
#include "common.h"
#include <cpuid.h>
#include <pthread.h>

static unsigned rdpkru(void)
{
    unsigned eax, edx, ecx = 0;
    __asm__ volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(ecx));
    return eax;
}

static void wrpkru(unsigned v)
{
    __asm__ volatile(".byte 0x0f,0x01,0xef" : : "a"(v), "c"(0), "d"(0) : "memory");
}

static volatile int t_ok = -1;

static void *thr(void *a)
{
    (void)a;
    wrpkru(0x0c000000u); /* keys 13: access+write disabled */
    wait_go();
    t_ok = rdpkru() == 0x0c000000u;
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    unsigned a, b, c, d;
    int pku = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 4)); /* OSPKE */
    info("pku", "%d", pku);
    pthread_t t;
    if (pku) {
        wrpkru(0x55555550u); /* keys 2..15 access-disabled, key 0/1 open */
        if (pthread_create(&t, NULL, thr, NULL))
            DIE("pthread_create");
        sleep_ms(50);
    }
    ready();
    wait_go();
    if (pku) {
        CHECK(rdpkru() == 0x55555550u, "main thread PKRU %#x, want 0x55555550", rdpkru());
        pthread_join(t, NULL);
        CHECK(t_ok == 1, "second thread PKRU lost");
    }
    return finish();
}
