/* Instruction sequences for the Cortex-M4 timing model of `nncc bench` (test_timing_model.py).
 * Each case sits between two calls of nncc_bench_mark() in one asm statement, so that nothing
 * gcc emits falls between them; the test subtracts the cost of an empty pair (the mark's return
 * and the next call) and compares what remains with the cycles the Cortex-M4 Technical Reference
 * Manual gives for the sequence. The order of the cases is the order of the test's table. */
#include "semihost.h"

__attribute__((noinline)) void nncc_bench_mark(void) { __asm__ volatile("" ::: "memory"); }

#define CASE(body)                                                                                 \
    __asm__ volatile("bl nncc_bench_mark\n\t" body "bl nncc_bench_mark\n\t"                        \
                     :                                                                             \
                     :                                                                             \
                     : "r0", "r1", "r2", "r3", "r12", "lr", "s0", "s1", "s2", "cc", "memory")

int main(void)
{
    CASE(""); /* the empty pair */
    CASE("add r0, r0, #1\n\tadd r1, r1, #1\n\tadd r2, r2, #1\n\tadd r3, r3, #1\n\t");
    CASE("ldr r0, [sp]\n\tldr r1, [sp, #4]\n\tldr r2, [sp, #8]\n\t");
    CASE("mov r1, sp\n\tstr r1, [sp, #-8]\n\tldr r0, [sp, #-8]\n\tldr r1, [r0]\n\t");
    CASE("add r0, sp, #4\n\tldr r1, [r0]\n\t");
    CASE("ldrd r0, r1, [sp]\n\tldr r2, [sp]\n\tldr r3, [sp, #4]\n\t");
    CASE("str r0, [sp, #-4]\n\tstr r1, [sp, #-8]\n\t");
    CASE("push {r0, r1, r2, r3}\n\tpop {r0, r1, r2, r3}\n\t");
    CASE("smlad r0, r1, r2, r0\n\tsmull r0, r1, r2, r3\n\tsxtb16 r2, r3, ror #8\n\tssat r0, #8, r0\n\t");
    CASE("movs r0, #4\n\t1:\n\tsubs r0, r0, #1\n\tbne 1b\n\t");
    CASE("movs r0, #0\n\tcmp r0, #1\n\tbeq 2f\n\tnop\n\t2:\n\t");
    CASE("cmp r0, r0\n\tit eq\n\tmoveq r1, r2\n\t");
    CASE("movs r0, #7\n\tmovs r1, #2\n\tsdiv r2, r0, r1\n\t");
    CASE("vadd.f32 s0, s1, s2\n\tvmla.f32 s0, s1, s2\n\tvldr s1, [sp]\n\t");
    CASE("vpush {s0, s1}\n\tvpop {s0, s1}\n\t");
    CASE("ldr r0, [sp, #1]\n\tldr r1, [sp, #2]\n\tldrh r2, [sp, #1]\n\tldrb r3, [sp, #1]\n\t");
    CASE(".rept 400\n\tldr r0, [sp]\n\t.endr\n\t");
    CASE(".rept 200\n\tadd r0, sp, #4\n\tldr r1, [r0]\n\t.endr\n\t");
    return 0;
}
