/*
 * tree_prefork: a pre-forking server.  The parent forks NW workers; they take 8-byte
 * jobs from one shared pipe and answer with 16-byte records (job, result, worker pid)
 * over another shared pipe.  Before READY the parent has queued every job, each worker
 * has done PRE jobs, and the parent has read half of those results: at dump time the
 * job pipe holds NJOBS - NW*PRE jobs and the result pipe NW*PRE/2 answers.
 * After `go` the workers carry on until they read a stop job; the parent collects
 * NJOBS answers and checks every job was done exactly once, with the right result, by
 * one of its workers, then reaps the workers (exit 0).
 */
#include "common.h"
#include <sys/ioctl.h>
#include <sys/wait.h>

#define NW 4
#define NJOBS 1000
#define PRE 10
#define STOP UINT64_MAX

static uint64_t answer(uint64_t job) { return pat64(99, job); }

static int read_full(int fd, void *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void worker(int jobs, int results)
{
    uint64_t done = 0;
    for (;;) {
        if (done == PRE)
            wait_go();
        uint64_t job;
        if (read_full(jobs, &job, 8) < 0) {
            CHECK(0, "worker %d: reading a job: %s", (int)getpid(), strerror(errno));
            break;
        }
        if (job == STOP)
            break;
        uint64_t rec[2] = { job, answer(job) ^ (uint64_t)getpid() };
        if (write(results, rec, sizeof rec) != (ssize_t)sizeof rec) {
            CHECK(0, "worker %d: writing a result: %s", (int)getpid(), strerror(errno));
            break;
        }
        done++;
    }
    CHECK(done >= PRE, "worker %d did only %llu jobs", (int)getpid(), (unsigned long long)done);
    _exit(g_failed ? 1 : 0);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int jp[2], rp[2];
    if (pipe(jp) || pipe(rp))
        DIE("pipe");
    /* every job fits in the job pipe (8000 bytes < 64 KiB) */
    for (uint64_t j = 0; j < NJOBS; j++)
        if (write(jp[1], &j, 8) != 8)
            DIE("queue job");
    pid_t w[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = fork();
        if (w[i] < 0)
            DIE("fork");
        if (w[i] == 0) {
            close(jp[1]);
            close(rp[0]);
            worker(jp[0], rp[1]);
        }
    }
    close(jp[0]);
    close(rp[1]);
    static int seen[NJOBS];
    int answers = 0;
    uint64_t rec[2];
    for (int i = 0; i < NW * PRE / 2; i++) {
        if (read_full(rp[0], rec, sizeof rec) < 0 || rec[0] >= NJOBS)
            DIE("early result");
        seen[rec[0]]++;
        answers++;
    }
    /* the other half of the early results are queued */
    int queued = 0;
    for (int i = 0; i < 1000 && queued < (int)(NW * PRE / 2 * sizeof rec); i++) {
        ioctl(rp[0], FIONREAD, &queued);
        sleep_ms(10);
    }
    if (queued != (int)(NW * PRE / 2 * sizeof rec)) {
        errno = 0;
        DIE("results queued before READY");
    }
    for (int i = 0; i < NW; i++)
        info("worker", "%d", (int)w[i]);
    ready();
    wait_go();
    while (answers < NJOBS) {
        if (read_full(rp[0], rec, sizeof rec) < 0) {
            CHECK(0, "result pipe closed after %d answers", answers);
            break;
        }
        uint64_t wpid = answer(rec[0] < NJOBS ? rec[0] : 0) ^ rec[1];
        int ours = 0;
        for (int i = 0; i < NW; i++)
            ours |= (uint64_t)w[i] == wpid;
        CHECK(rec[0] < NJOBS && ours, "bad answer for job %llu (worker %llu)", (unsigned long long)rec[0],
              (unsigned long long)wpid);
        if (rec[0] < NJOBS)
            seen[rec[0]]++;
        answers++;
    }
    int missing = 0, twice = 0;
    for (int j = 0; j < NJOBS; j++) {
        missing += seen[j] == 0;
        twice += seen[j] > 1;
    }
    CHECK(missing == 0 && twice == 0, "%d jobs never done, %d done more than once", missing, twice);
    for (int i = 0; i < NW; i++) {
        uint64_t s = STOP;
        CHECK(write(jp[1], &s, 8) == 8, "stop job");
    }
    for (int i = 0; i < NW; i++) {
        int st = 0;
        CHECK(waitpid(w[i], &st, 0) == w[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d: status %#x",
              (int)w[i], st);
    }
    int extra = 0;
    CHECK(ioctl(rp[0], FIONREAD, &extra) == 0 && extra == 0, "%d stray bytes in the result pipe", extra);
    return finish();
}
