/*
 * ldt: an x86 local descriptor table made with modify_ldt: entry 0 a 32-bit data
 * segment whose base is a word below 4 GiB, entry 3 a read-only code segment, entry 9
 * not present. %gs holds entry 0's selector (7) through the dump. After restore: the
 * table reads back the same (modify_ldt(0)), %gs still holds 7 and %gs:0 reads the
 * word; %gs reloaded with 7 too. With "result" the verdict goes to WORKDIR/result (for
 * --leave-running).
 */
#include "common.h"
#include <asm/ldt.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static int set_entry(unsigned n, uint32_t base, unsigned contents, int ro, int not_present)
{
    struct user_desc d = { 0 };
    d.entry_number = n;
    d.base_addr = base;
    d.limit = 0xfffff;
    d.seg_32bit = 1;
    d.limit_in_pages = 1;
    d.useable = 1;
    d.contents = contents;
    d.read_exec_only = ro;
    d.seg_not_present = not_present;
    return syscall(SYS_modify_ldt, 0x11, &d, sizeof d);
}

static unsigned short gs_sel(void)
{
    unsigned short s;
    __asm__ volatile("mov %%gs, %0" : "=r"(s));
    return s;
}

static uint64_t gs_word(void)
{
    uint64_t v;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(v));
    return v;
}

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int to_result = argc > 2 && strcmp(argv[2], "result") == 0;
    uint64_t *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (word == MAP_FAILED)
        DIE("mmap MAP_32BIT");
    word[0] = 0x1122334455667788ULL;
    if (set_entry(0, (uint32_t)(uintptr_t)word, 0, 0, 0) || set_entry(3, 0x10000, 2, 1, 0) || set_entry(9, 0x2000, 0, 0, 1))
        DIE("modify_ldt");
    unsigned char before[16 * 8], after[16 * 8];
    long nb = syscall(SYS_modify_ldt, 0, before, sizeof before);
    unsigned short sel = 7;
    __asm__ volatile("mov %0, %%gs" : : "r"(sel));
    CHECK(gs_word() == word[0], "before the dump %%gs:0 reads %#llx", (unsigned long long)gs_word());
    ready();
    wait_go();
    if (to_result && stdout_to_result())
        return 1;
    memset(after, 0xee, sizeof after);
    long na = syscall(SYS_modify_ldt, 0, after, sizeof after);
    CHECK(na == nb && memcmp(before, after, sizeof after) == 0, "the LDT reads back differently (%ld bytes, was %ld)", na, nb);
    CHECK(gs_sel() == 7, "%%gs holds %#x after restore, was 7", gs_sel());
    if (gs_sel() == 7)
        CHECK(gs_word() == word[0], "%%gs:0 reads %#llx", (unsigned long long)gs_word());
    __asm__ volatile("mov %0, %%gs" : : "r"(sel));
    CHECK(gs_word() == word[0], "%%gs reloaded with 7: %%gs:0 reads %#llx", (unsigned long long)gs_word());
    sel = 0;
    __asm__ volatile("mov %0, %%gs" : : "r"(sel));
    return finish();
}
