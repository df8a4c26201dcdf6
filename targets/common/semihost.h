/* semihost.h - the few semihosting calls the nncc test firmware needs, for Cortex-M (BKPT 0xAB)
 * and RISC-V (the slli/ebreak/srai sequence). QEMU: -semihosting-config enable=on,target=native.
 * On a real board these calls need an attached debugger that serves semihosting (openocd
 * `arm semihosting enable`); without one, BKPT/EBREAK traps. Copied into each firmware project
 * by nncc. */
#ifndef NNCC_SEMIHOST_H
#define NNCC_SEMIHOST_H
#include <stdint.h>

#define NNCC_SYS_WRITE0 0x04
#define NNCC_SYS_EXIT_EXTENDED 0x20
#define NNCC_ADP_STOPPED_APPLICATION_EXIT 0x20026

static inline uintptr_t nncc_sh_call(uintptr_t op, uintptr_t arg)
{
#if defined(__arm__)
    register uintptr_t r0 __asm__("r0") = op;
    register uintptr_t r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
#elif defined(__riscv)
    register uintptr_t a0 __asm__("a0") = op;
    register uintptr_t a1 __asm__("a1") = arg;
    /* The debugger recognises the three instructions only uncompressed and within one page. */
    __asm__ volatile(".option push\n .option norvc\n .balign 16\n"
                     "slli x0, x0, 0x1f\n ebreak\n srai x0, x0, 7\n .option pop"
                     : "+r"(a0) : "r"(a1) : "memory");
    return a0;
#else
#error "semihosting: unsupported architecture"
#endif
}

/* Writes a NUL-terminated string to the debugger's console. */
static inline void nncc_sh_puts(const char *s) { nncc_sh_call(NNCC_SYS_WRITE0, (uintptr_t)s); }

/* SYS_EXIT_EXTENDED: plain SYS_EXIT on 32-bit targets only tells success from failure, the
 * extended call passes the whole status (QEMU exits with it). */
__attribute__((noreturn)) static inline void nncc_sh_exit(int status)
{
    uintptr_t block[2];
    block[0] = NNCC_ADP_STOPPED_APPLICATION_EXIT;
    block[1] = (uintptr_t)status;
    nncc_sh_call(NNCC_SYS_EXIT_EXTENDED, (uintptr_t)block);
    for (;;) {
    }
}
#endif
