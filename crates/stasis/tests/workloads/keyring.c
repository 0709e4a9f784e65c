/*
 * keyring: a key added to the process keyring (argv "process") or to a thread's own
 * thread keyring (argv "thread": a second thread adds it and waits). Restore cannot
 * make these keyrings, so dump refuses the process naming the keyring (the thread's
 * tid too); after the refused dump the key is still found with its payload.
 */
#include "common.h"
#include <linux/keyctl.h>
#include <pthread.h>
#include <sys/syscall.h>

static int g_thread;
static long g_key = -1;
static pid_t g_tid;
static volatile int g_done;

static long add(int ring)
{
    return syscall(SYS_add_key, "user", "stasis-test", "payload", 7, ring);
}

static int check_key(int ring)
{
    char b[16] = { 0 };
    long id = syscall(SYS_keyctl, KEYCTL_SEARCH, ring, "user", "stasis-test", 0);
    long n = id >= 0 ? syscall(SYS_keyctl, KEYCTL_READ, id, b, sizeof b) : -1;
    CHECK(id == g_key && n == 7 && memcmp(b, "payload", 7) == 0, "key %ld (was %ld) reads %ld bytes '%s'", id, g_key, n, b);
    return 0;
}

static void *thread_main(void *a)
{
    (void)a;
    g_key = add(KEY_SPEC_THREAD_KEYRING);
    g_tid = gettid();
    while (!g_done)
        sleep_ms(10);
    check_key(KEY_SPEC_THREAD_KEYRING);
    g_done = 2;
    return NULL;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    g_thread = argc > 2 && strcmp(argv[2], "thread") == 0;
    pthread_t t;
    if (g_thread) {
        if (pthread_create(&t, NULL, thread_main, NULL))
            DIE("pthread_create");
        while (!g_tid)
            sleep_ms(1);
        info("tid", "%d", (int)g_tid);
    } else {
        g_key = add(KEY_SPEC_PROCESS_KEYRING);
    }
    if (g_key < 0)
        DIE("add_key");
    ready();
    wait_go();
    if (g_thread) {
        g_done = 1;
        pthread_join(t, NULL);
        CHECK(g_done == 2, "thread did not check");
    } else {
        check_key(KEY_SPEC_PROCESS_KEYRING);
    }
    return finish();
}
