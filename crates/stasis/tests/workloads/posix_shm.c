/*
 * posix_shm: a POSIX shared memory object (shm_open: /dev/shm/stasis-shm-PID, mode
 * 0640, four pages of which the middle two were never written: a hole) mapped shared
 * by this process and a child; the fd is closed, so only the mappings hold it.
 * INFO path=/dev/shm/... tells the test which file it is.
 * When WORKDIR/poke appears (before go), the process writes "LIVE" into page 0 and
 * prints POKED: the object changes after a --leave-running dump.
 * After go (the parent's checks first): the hole is still a hole (SEEK_HOLE/SEEK_DATA,
 * read as zeros), page 0 and page 3 hold what they held at READY (never "LIVE": a
 * restore brings the dump's content back), the file at the path is the mapped object (a write
 * through the mapping is read back through a new shm_open), the mode is 0640, and
 * the child sees the parent's write (still shared). Then the
 * object is unlinked (shm_unlink).
 * Also a named semaphore (sem_open: /dev/shm/sem.stasis-sem-PID, made by glibc under a
 * temporary name that it removes once linked: the mapping shows the removed name) of
 * value 2, taken once: after go its value is 1, a post is seen through a new sem_open
 * of the name (the same semaphore). INFO sem=/dev/shm/sem.stasis-sem-PID.
 */
#define _GNU_SOURCE
#include "common.h"
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096

static char name[64], sname[64];

/* Pages 1 and 2 are not read through the mapping: a read fault fills a tmpfs hole. */
static void check_content(const char *m, const char *who)
{
    CHECK(strcmp(m, "page zero") == 0, "%s: page 0 holds '%.12s'", who, m);
    CHECK(strcmp(m + 3 * PG, "page three") == 0, "%s: page 3 holds '%.12s'", who, m + 3 * PG);
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    snprintf(name, sizeof name, "/stasis-shm-%d", getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0640);
    if (fd < 0)
        DIE("shm_open");
    if (fchmod(fd, 0640) || ftruncate(fd, 4 * PG))
        DIE("ftruncate");
    char *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        DIE("mmap");
    close(fd);
    strcpy(m, "page zero");
    strcpy(m + 3 * PG, "page three");
    snprintf(sname, sizeof sname, "/stasis-sem-%d", getpid());
    sem_t *sem = sem_open(sname, O_CREAT | O_EXCL, 0600, 2);
    if (sem == SEM_FAILED || sem_wait(sem))
        DIE("sem_open");
    pid_t kid = fork();
    if (kid < 0)
        DIE("fork");
    if (kid == 0) {
        wait_go();
        check_content(m, "child");
        /* the parent writes "shared" at offset 200 after its own checks */
        for (int i = 0; i < 400 && strcmp(m + 200, "shared") != 0; i++)
            usleep(5000);
        CHECK(strcmp(m + 200, "shared") == 0, "child: the parent's write did not reach the child's mapping");
        return g_failed ? 1 : 0;
    }
    wl_out("INFO path=/dev/shm%s\n", name);
    wl_out("INFO kid=%d\n", kid);
    wl_out("INFO sem=/dev/shm/sem.%s\n", sname + 1);
    ready();
    char poke[4096];
    snprintf(poke, sizeof poke, "%s/poke", g_dir);
    char go[4096];
    snprintf(go, sizeof go, "%s/go", g_dir);
    while (access(go, F_OK) != 0) {
        if (access(poke, F_OK) == 0) {
            unlink(poke);
            memcpy(m, "LIVE", 4);
            wl_out("POKED\n");
        }
        usleep(10000);
    }
    int f2 = shm_open(name, O_RDWR, 0);
    CHECK(f2 >= 0, "shm_open of the object by name after restore: %s", strerror(errno));
    if (f2 >= 0) {
        struct stat st;
        CHECK(fstat(f2, &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_size == 4 * PG, "mode %o size %lld, want 640 and %d",
              st.st_mode & 07777, (long long)st.st_size, 4 * PG);
        CHECK(lseek(f2, 0, SEEK_HOLE) == PG && lseek(f2, PG, SEEK_DATA) == 3 * PG, "holes: SEEK_HOLE(0) %lld, SEEK_DATA(%d) %lld",
              (long long)lseek(f2, 0, SEEK_HOLE), PG, (long long)lseek(f2, PG, SEEK_DATA));
        char z[2 * PG], zero[2 * PG] = { 0 };
        CHECK(pread(f2, z, sizeof z, PG) == (ssize_t)sizeof z && memcmp(z, zero, sizeof z) == 0, "the never-written pages are not zero");
        strcpy(m + 100, "through the mapping");
        char b[32] = { 0 };
        CHECK(pread(f2, b, 19, 100) == 19 && strcmp(b, "through the mapping") == 0, "the file at the path is not the mapped object: '%s'", b);
        close(f2);
    }
    check_content(m, "parent");
    int v = -1;
    CHECK(sem_getvalue(sem, &v) == 0 && v == 1, "semaphore value %d, want 1", v);
    sem_t *again = sem_open(sname, 0);
    CHECK(again != SEM_FAILED, "sem_open %s by name: %s", sname, strerror(errno));
    if (again != SEM_FAILED) {
        sem_post(again);
        CHECK(sem_getvalue(sem, &v) == 0 && v == 2, "a post through the name: value %d, want 2", v);
    }
    sem_unlink(sname);
    strcpy(m + 200, "shared");
    int st = 0;
    CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
    shm_unlink(name);
    return finish();
}
