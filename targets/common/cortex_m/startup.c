/* startup.c - Cortex-M startup for nncc firmware: vector table, Reset_Handler (FPU enable,
 * .data copy, .bss zero, main, exit through semihosting) and a fault handler that reports and
 * exits with status 99 instead of hanging the emulator. Same file for ARMv6-M, v7-M and v8-M. */
#include <stdint.h>
#include "semihost.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);

void Reset_Handler(void);
static void Fault_Handler(void)
{
    nncc_sh_puts("nncc: FAULT (unexpected exception)\n");
    nncc_sh_exit(99);
}

/* The core reads the initial SP and the reset vector from here (VTOR resets to the image base).
 * A struct, because ISO C has no conversion between the stack (an object pointer) and the
 * handlers (function pointers). */
struct vector_table {
    uint32_t *initial_sp;
    void (*handlers[15])(void);
};

__attribute__((section(".isr_vector"), used))
const struct vector_table nncc_vectors = {
    _estack,
    {
        Reset_Handler,
        Fault_Handler, /* NMI */
        Fault_Handler, /* HardFault */
        Fault_Handler, /* MemManage */
        Fault_Handler, /* BusFault */
        Fault_Handler, /* UsageFault */
        Fault_Handler, /* SecureFault (v8-M) */
        0, 0, 0,
        Fault_Handler, /* SVCall */
        Fault_Handler, /* DebugMonitor */
        0,
        Fault_Handler, /* PendSV */
        Fault_Handler, /* SysTick */
    },
};

__attribute__((noreturn)) void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11, otherwise the first VFP instruction faults (NOCP). */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    /* volatile stores: gcc keeps these loops instead of calling memcpy / memset, which would
       link ~470 B of newlib into every image */
    for (uint32_t *s = _sidata, *d = _sdata; d < _edata;)
        *(volatile uint32_t *)d++ = *s++;
    for (uint32_t *d = _sbss; d < _ebss;)
        *(volatile uint32_t *)d++ = 0;
    nncc_sh_exit(main());
}
