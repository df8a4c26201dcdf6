/* start.S - RV32 bare-metal startup for nncc firmware (M-mode): gp, sp, tp (picolibc keeps errno
 * in thread-local storage), FPU enable when built with F, a trap vector that exits with status
 * 100 + mcause, .data copy, .bss zero, main, exit through semihosting. */
    .option arch, +zicsr       /* binutils 2.40 needs Zicsr for csr* with -march=rv32imac; adding
                                  _zicsr to -march instead breaks GCC 12's multilib selection */
    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la   gp, __global_pointer$
    .option pop
    la   sp, _estack
    la   tp, __tls_base
#ifdef __riscv_flen
    li   t0, 0x2000            /* mstatus.FS = Initial: FP instructions trap while FS = Off */
    csrs mstatus, t0
    csrw fcsr, zero
#endif
    la   t0, trap_entry
    csrw mtvec, t0
    la   a0, _sitdata          /* .tdata: load address -> run address */
    la   a1, _stdata
    la   a2, _etdata
    call copy_words
    la   a0, _sidata           /* .data */
    la   a1, _sdata
    la   a2, _edata
    call copy_words
    la   a1, _stbss            /* .tbss */
    la   a2, _etbss
    call zero_words
    la   a1, _sbss             /* .bss */
    la   a2, _ebss
    call zero_words
    call main
    call nncc_exit             /* a0 = main's return value */
5:  j    5b

    .balign 4
trap_entry:
    csrr a0, mcause
    addi a0, a0, 100
    call nncc_exit
6:  j    6b

copy_words:                    /* a0 = source, a1 = destination, a2 = destination end */
    bgeu a1, a2, 2f
1:  lw   t0, 0(a0)
    sw   t0, 0(a1)
    addi a0, a0, 4
    addi a1, a1, 4
    bltu a1, a2, 1b
2:  ret

zero_words:                    /* a1 = start, a2 = end */
    bgeu a1, a2, 2f
1:  sw   zero, 0(a1)
    addi a1, a1, 4
    bltu a1, a2, 1b
2:  ret
