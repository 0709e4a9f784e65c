/*
 * basic: a small single-threaded process with heap, stack and static data.
 * Used by the restore-refusal, leave-running, foreground and inspect tests.
 *
 * args: WORKDIR [exit=N] [result]
 *   exit=N   after PASS, exit with status N instead of 0
 *   result   after go, write the verdict to WORKDIR/result instead of stdout
 *            (so stdout is never written after the dump)
 */
#include "common.h"
#include <sys/prctl.h>

static uint64_t g_static[4096];

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int exit_code = 0, to_result = 0;
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "exit=", 5) == 0)
            exit_code = atoi(argv[i] + 5);
        else if (strcmp(argv[i], "result") == 0)
            to_result = 1;
    }

    size_t heap_len = 1 << 20;
    uint64_t *heap = malloc(heap_len);
    if (!heap)
        DIE("malloc");
    fill_pattern(heap, heap_len, 1);
    fill_pattern(g_static, sizeof g_static, 2);
    uint64_t stack[2048];
    fill_pattern(stack, sizeof stack, 3);

    char comm[32] = { 0 };
    prctl(PR_GET_NAME, comm);
    info("comm", "%s", comm);
    info("pid", "%d", (int)getpid());
    ready();
    wait_go();

    if (to_result && stdout_to_result())
        return 1;

    long bad;
    CHECK((bad = check_pattern(heap, heap_len, 1)) < 0, "heap pattern differs at word %ld", bad);
    CHECK((bad = check_pattern(g_static, sizeof g_static, 2)) < 0, "static data differs at word %ld", bad);
    CHECK((bad = check_pattern(stack, sizeof stack, 3)) < 0, "stack array differs at word %ld", bad);
    CHECK(getpid() == wl_gettid(), "main thread tid %d != pid %d", (int)wl_gettid(), (int)getpid());
    free(heap);
    int rc = finish();
    return rc ? rc : exit_code;
}
