/*
 * regs: register state across checkpoint/restore.
 *
 * mode "syscall": hand-written asm loads known patterns into rbx, rbp,
 *   rdx, rsi(=0), r8-r10, r12-r15, ymm0-15 (full 256 bits), MXCSR
 *   (round-to-zero, FTZ, DAZ), the x87 control word and st(0), then does a
 *   raw nanosleep(2 s) with the `syscall` instruction (only rax, rcx, r11
 *   clobbered) and stores every register right after it returns.  The
 *   harness dumps while the task sits in that syscall.
 * mode "busy": same patterns in ALL general registers (rax, rcx, r11
 *   included) while spinning in user space on a byte of a MAP_SHARED
 *   mapping of WORKDIR/flag; the harness dumps while it spins and sets the
 *   byte (pwrite, no truncation) after restore.
 * Afterwards C code checks every register, rsp, the FS base and a __thread
 * variable.  In "syscall" mode the syscall result must be 0 or -EINTR
 * (whether it is 0 is the business of the sleep tests; it is reported).
 */
#include "common.h"
#include <asm/prctl.h>
#include <stddef.h>
#include <sys/mman.h>

struct ctx {
    uint64_t gp[16];          /* 0: rax rbx rcx rdx rsi rdi rbp rsp r8..r15 */
    uint8_t ymm_in[16][32];   /* 128 */
    uint8_t ymm_out[16][32];  /* 640 */
    uint32_t mxcsr_in;        /* 1152 */
    uint32_t mxcsr_out;       /* 1156 */
    uint16_t fcw_in;          /* 1160 */
    uint16_t fcw_out;         /* 1162 */
    uint32_t pad;             /* 1164 */
    uint8_t x87_in[16];       /* 1168 */
    uint8_t x87_out[16];      /* 1184 */
    struct timespec ts;       /* 1200 */
    uint64_t rsp_before;      /* 1216 */
    volatile uint8_t *flag;   /* 1224 */
};
_Static_assert(offsetof(struct ctx, ymm_in) == 128, "layout");
_Static_assert(offsetof(struct ctx, ymm_out) == 640, "layout");
_Static_assert(offsetof(struct ctx, mxcsr_in) == 1152, "layout");
_Static_assert(offsetof(struct ctx, fcw_in) == 1160, "layout");
_Static_assert(offsetof(struct ctx, x87_in) == 1168, "layout");
_Static_assert(offsetof(struct ctx, x87_out) == 1184, "layout");
_Static_assert(offsetof(struct ctx, ts) == 1200, "layout");
_Static_assert(offsetof(struct ctx, rsp_before) == 1216, "layout");
_Static_assert(offsetof(struct ctx, flag) == 1224, "layout");

#define P_RAX 0xa0a0a0a0a0a0a001ULL
#define P_RBX 0xb1b1b1b1b1b1b102ULL
#define P_RCX 0xc2c2c2c2c2c2c203ULL
#define P_RDX 0xd3d3d3d3d3d3d304ULL
#define P_RSI 0x5151515151515105ULL
#define P_RBP 0xbebebebebebebe06ULL
#define P_R8 0x0808080808080807ULL
#define P_R9 0x0909090909090908ULL
#define P_R10 0x1010101010101009ULL
#define P_R11 0x111111111111110aULL
#define P_R12 0x121212121212120bULL
#define P_R13 0x131313131313130cULL
#define P_R14 0x141414141414140dULL
#define P_R15 0x151515151515150eULL

#define STR2(x) #x
#define STR(x) STR2(x)

void regs_syscall_test(struct ctx *c);
void regs_busy_test(struct ctx *c);

__asm__(
    ".text\n"
    ".globl regs_syscall_test\n"
    ".type regs_syscall_test,@function\n"
    "regs_syscall_test:\n"
    "    push %rbx\n    push %rbp\n    push %r12\n    push %r13\n    push %r14\n    push %r15\n"
    "    push %rdi\n"
    "    sub $8, %rsp\n"
    "    mov %rsp, 1216(%rdi)\n"
    "    ldmxcsr 1152(%rdi)\n"
    "    fldcw 1160(%rdi)\n"
    "    fldt 1168(%rdi)\n"
    "vmovdqu 128(%rdi), %ymm0\n"
    "vmovdqu 160(%rdi), %ymm1\n"
    "vmovdqu 192(%rdi), %ymm2\n"
    "vmovdqu 224(%rdi), %ymm3\n"
    "vmovdqu 256(%rdi), %ymm4\n"
    "vmovdqu 288(%rdi), %ymm5\n"
    "vmovdqu 320(%rdi), %ymm6\n"
    "vmovdqu 352(%rdi), %ymm7\n"
    "vmovdqu 384(%rdi), %ymm8\n"
    "vmovdqu 416(%rdi), %ymm9\n"
    "vmovdqu 448(%rdi), %ymm10\n"
    "vmovdqu 480(%rdi), %ymm11\n"
    "vmovdqu 512(%rdi), %ymm12\n"
    "vmovdqu 544(%rdi), %ymm13\n"
    "vmovdqu 576(%rdi), %ymm14\n"
    "vmovdqu 608(%rdi), %ymm15\n"
    "    movabs $" STR(P_RBX) ", %rbx\n"
    "    movabs $" STR(P_RBP) ", %rbp\n"
    "    movabs $" STR(P_RDX) ", %rdx\n"
    "    movabs $" STR(P_R8) ", %r8\n"
    "    movabs $" STR(P_R9) ", %r9\n"
    "    movabs $" STR(P_R10) ", %r10\n"
    "    movabs $" STR(P_R12) ", %r12\n"
    "    movabs $" STR(P_R13) ", %r13\n"
    "    movabs $" STR(P_R14) ", %r14\n"
    "    movabs $" STR(P_R15) ", %r15\n"
    "    xor %esi, %esi\n"              /* rem = NULL */
    "    lea 1200(%rdi), %rdi\n"        /* req = &c->ts */
    "    mov $35, %eax\n"               /* __NR_nanosleep */
    "    syscall\n"
    "    mov 8(%rsp), %rcx\n"           /* ctx; rcx and r11 are free now */
    "    mov %rax, 0(%rcx)\n"
    "    mov %rbx, 8(%rcx)\n"
    "    movq $0, 16(%rcx)\n"
    "    mov %rdx, 24(%rcx)\n"
    "    mov %rsi, 32(%rcx)\n"
    "    mov %rdi, 40(%rcx)\n"
    "    mov %rbp, 48(%rcx)\n"
    "    mov %rsp, 56(%rcx)\n"
    "    mov %r8, 64(%rcx)\n"
    "    mov %r9, 72(%rcx)\n"
    "    mov %r10, 80(%rcx)\n"
    "    movq $0, 88(%rcx)\n"
    "    mov %r12, 96(%rcx)\n"
    "    mov %r13, 104(%rcx)\n"
    "    mov %r14, 112(%rcx)\n"
    "    mov %r15, 120(%rcx)\n"
    "vmovdqu %ymm0, 640(%rcx)\n"
    "vmovdqu %ymm1, 672(%rcx)\n"
    "vmovdqu %ymm2, 704(%rcx)\n"
    "vmovdqu %ymm3, 736(%rcx)\n"
    "vmovdqu %ymm4, 768(%rcx)\n"
    "vmovdqu %ymm5, 800(%rcx)\n"
    "vmovdqu %ymm6, 832(%rcx)\n"
    "vmovdqu %ymm7, 864(%rcx)\n"
    "vmovdqu %ymm8, 896(%rcx)\n"
    "vmovdqu %ymm9, 928(%rcx)\n"
    "vmovdqu %ymm10, 960(%rcx)\n"
    "vmovdqu %ymm11, 992(%rcx)\n"
    "vmovdqu %ymm12, 1024(%rcx)\n"
    "vmovdqu %ymm13, 1056(%rcx)\n"
    "vmovdqu %ymm14, 1088(%rcx)\n"
    "vmovdqu %ymm15, 1120(%rcx)\n"
    "    stmxcsr 1156(%rcx)\n"
    "    fnstcw 1162(%rcx)\n"
    "    fstpt 1184(%rcx)\n"
    "    movl $0x1f80, (%rsp)\n"
    "    ldmxcsr (%rsp)\n"
    "    movw $0x37f, (%rsp)\n"
    "    fldcw (%rsp)\n"
    "    vzeroupper\n"
    "    add $8, %rsp\n"
    "    pop %rdi\n"
    "    pop %r15\n    pop %r14\n    pop %r13\n    pop %r12\n    pop %rbp\n    pop %rbx\n"
    "    ret\n"
    ".size regs_syscall_test, .-regs_syscall_test\n"

    ".globl regs_busy_test\n"
    ".type regs_busy_test,@function\n"
    "regs_busy_test:\n"
    "    push %rbx\n    push %rbp\n    push %r12\n    push %r13\n    push %r14\n    push %r15\n"
    "    push %rdi\n"
    "    sub $8, %rsp\n"
    "    mov %rsp, 1216(%rdi)\n"
    "    ldmxcsr 1152(%rdi)\n"
    "    fldcw 1160(%rdi)\n"
    "    fldt 1168(%rdi)\n"
    "vmovdqu 128(%rdi), %ymm0\n"
    "vmovdqu 160(%rdi), %ymm1\n"
    "vmovdqu 192(%rdi), %ymm2\n"
    "vmovdqu 224(%rdi), %ymm3\n"
    "vmovdqu 256(%rdi), %ymm4\n"
    "vmovdqu 288(%rdi), %ymm5\n"
    "vmovdqu 320(%rdi), %ymm6\n"
    "vmovdqu 352(%rdi), %ymm7\n"
    "vmovdqu 384(%rdi), %ymm8\n"
    "vmovdqu 416(%rdi), %ymm9\n"
    "vmovdqu 448(%rdi), %ymm10\n"
    "vmovdqu 480(%rdi), %ymm11\n"
    "vmovdqu 512(%rdi), %ymm12\n"
    "vmovdqu 544(%rdi), %ymm13\n"
    "vmovdqu 576(%rdi), %ymm14\n"
    "vmovdqu 608(%rdi), %ymm15\n"
    "    movabs $" STR(P_RAX) ", %rax\n"
    "    movabs $" STR(P_RBX) ", %rbx\n"
    "    movabs $" STR(P_RCX) ", %rcx\n"
    "    movabs $" STR(P_RDX) ", %rdx\n"
    "    movabs $" STR(P_RSI) ", %rsi\n"
    "    movabs $" STR(P_RBP) ", %rbp\n"
    "    movabs $" STR(P_R8) ", %r8\n"
    "    movabs $" STR(P_R9) ", %r9\n"
    "    movabs $" STR(P_R10) ", %r10\n"
    "    movabs $" STR(P_R11) ", %r11\n"
    "    movabs $" STR(P_R12) ", %r12\n"
    "    movabs $" STR(P_R13) ", %r13\n"
    "    movabs $" STR(P_R14) ", %r14\n"
    "    movabs $" STR(P_R15) ", %r15\n"
    "    mov 1224(%rdi), %rdi\n"        /* rdi = flag address */
    "1:  cmpb $0, (%rdi)\n"
    "    jne 2f\n"
    "    pause\n"
    "    jmp 1b\n"
    "2:  push %rax\n"
    "    mov 16(%rsp), %rax\n"          /* ctx */
    "    mov %rbx, 8(%rax)\n"
    "    mov %rcx, 16(%rax)\n"
    "    mov %rdx, 24(%rax)\n"
    "    mov %rsi, 32(%rax)\n"
    "    mov %rdi, 40(%rax)\n"
    "    mov %rbp, 48(%rax)\n"
    "    lea 8(%rsp), %rcx\n"
    "    mov %rcx, 56(%rax)\n"
    "    mov %r8, 64(%rax)\n"
    "    mov %r9, 72(%rax)\n"
    "    mov %r10, 80(%rax)\n"
    "    mov %r11, 88(%rax)\n"
    "    mov %r12, 96(%rax)\n"
    "    mov %r13, 104(%rax)\n"
    "    mov %r14, 112(%rax)\n"
    "    mov %r15, 120(%rax)\n"
    "    pop %rcx\n"
    "    mov %rcx, 0(%rax)\n"
    "vmovdqu %ymm0, 640(%rax)\n"
    "vmovdqu %ymm1, 672(%rax)\n"
    "vmovdqu %ymm2, 704(%rax)\n"
    "vmovdqu %ymm3, 736(%rax)\n"
    "vmovdqu %ymm4, 768(%rax)\n"
    "vmovdqu %ymm5, 800(%rax)\n"
    "vmovdqu %ymm6, 832(%rax)\n"
    "vmovdqu %ymm7, 864(%rax)\n"
    "vmovdqu %ymm8, 896(%rax)\n"
    "vmovdqu %ymm9, 928(%rax)\n"
    "vmovdqu %ymm10, 960(%rax)\n"
    "vmovdqu %ymm11, 992(%rax)\n"
    "vmovdqu %ymm12, 1024(%rax)\n"
    "vmovdqu %ymm13, 1056(%rax)\n"
    "vmovdqu %ymm14, 1088(%rax)\n"
    "vmovdqu %ymm15, 1120(%rax)\n"
    "    stmxcsr 1156(%rax)\n"
    "    fnstcw 1162(%rax)\n"
    "    fstpt 1184(%rax)\n"
    "    movl $0x1f80, (%rsp)\n"
    "    ldmxcsr (%rsp)\n"
    "    movw $0x37f, (%rsp)\n"
    "    fldcw (%rsp)\n"
    "    vzeroupper\n"
    "    add $8, %rsp\n"
    "    pop %rdi\n"
    "    pop %r15\n    pop %r14\n    pop %r13\n    pop %r12\n    pop %rbp\n    pop %rbx\n"
    "    ret\n"
    ".size regs_busy_test, .-regs_busy_test\n");

static __thread uint64_t tls_value = 0x7715c0ffee;

static struct ctx g_ctx __attribute__((aligned(64)));

int main(int argc, char **argv)
{
    wl_init(argc, argv);
    int busy = argc > 2 && strcmp(argv[2], "busy") == 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx"))
        DIE("CPU without AVX");

    struct ctx *c = &g_ctx;
    for (int i = 0; i < 16; i++)
        fill_pattern(c->ymm_in[i], 32, 500 + i);
    c->mxcsr_in = 0xffc0; /* all exceptions masked, RC=toward zero, FTZ, DAZ */
    c->fcw_in = 0x0a7f;   /* masked, 53-bit precision, round up */
    long double x = 3.14159265358979323846264338327950288L * 12345.678L;
    memset(c->x87_in, 0, 16);
    memcpy(c->x87_in, &x, 10);
    c->ts.tv_sec = 2;
    c->ts.tv_nsec = 0;

    if (busy) {
        int fd = open(wl_path("flag"), O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, 4096))
            DIE("create flag");
        c->flag = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (c->flag == MAP_FAILED)
            DIE("mmap flag");
        close(fd);
    }
    unsigned long fs_before = 0, fs_after = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_before);
    tls_value ^= 0x1234;
    info("mode", "%s", busy ? "busy" : "syscall");
    ready();

    if (busy)
        regs_busy_test(c);
    else
        regs_syscall_test(c);

    if (!busy)
        wait_go();

    static const char *names[16] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                     "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15" };
    uint64_t want[16] = { P_RAX, P_RBX, P_RCX, P_RDX, P_RSI, 0, P_RBP, 0, P_R8, P_R9, P_R10, P_R11, P_R12, P_R13, P_R14, P_R15 };
    want[5] = busy ? (uint64_t)(uintptr_t)c->flag : (uint64_t)(uintptr_t)&c->ts;
    want[7] = c->rsp_before;
    if (!busy) {
        want[2] = 0;  /* rcx: clobbered by syscall, not checked */
        want[11] = 0; /* r11: idem */
        want[4] = 0;  /* rsi: rem = NULL */
        long r = (long)c->gp[0];
        info("syscall_result", "%ld", r);
        CHECK(r == 0 || r == -EINTR, "nanosleep returned %ld", r);
        want[0] = c->gp[0];
    }
    for (int i = 0; i < 16; i++)
        CHECK(c->gp[i] == want[i], "%s = %#llx, want %#llx", names[i], (unsigned long long)c->gp[i],
              (unsigned long long)want[i]);
    for (int i = 0; i < 16; i++) {
        CHECK(memcmp(c->ymm_in[i], c->ymm_out[i], 16) == 0, "xmm%d (low 128 bits) changed", i);
        CHECK(memcmp(c->ymm_in[i] + 16, c->ymm_out[i] + 16, 16) == 0, "ymm%d upper 128 bits changed", i);
    }
    CHECK((c->mxcsr_out & ~0x3fu) == (c->mxcsr_in & ~0x3fu), "MXCSR %#x, want %#x", c->mxcsr_out, c->mxcsr_in);
    CHECK(c->fcw_out == c->fcw_in, "x87 control word %#x, want %#x", c->fcw_out, c->fcw_in);
    CHECK(memcmp(c->x87_in, c->x87_out, 10) == 0, "x87 st(0) changed");
    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_after);
    CHECK(fs_after == fs_before, "FS base %#lx, want %#lx", fs_after, fs_before);
    CHECK(tls_value == (0x7715c0ffeeULL ^ 0x1234), "__thread variable %#llx", (unsigned long long)tls_value);
    return finish();
}
