/* m4_timing.h - the Cortex-M4 cycle model of m4_timing.c */
#ifndef M4_TIMING_H
#define M4_TIMING_H

#include <stdint.h>

enum m4_kind { M4_DATA, M4_LOAD, M4_STORE, M4_DOUBLE, M4_MULTIPLE, M4_BRANCH };

struct m4_insn {
    int cycles;        /* when not taken, for a branch */
    enum m4_kind kind;
    int dest;          /* core register written by a data operation or single load, or -1 */
    int branch;        /* may write the PC: a refill when taken */
};

/* The refill after a taken branch: the manual's P (1 to 3). */
#define M4_REFILL 2

/* Cost of the instruction whose disassembly is text, given the one before it in the same
 * translated block (prev->kind = M4_BRANCH and prev->dest = -1 at a block's start). */
void m4_cost(const char *text, struct m4_insn *out, const struct m4_insn *prev);

/* The extra cycles of one data access of size bytes at addr that is not aligned to its size
 * (known only at run time); LDRD/STRD, LDM/STM and the FPU's accesses are always aligned. */
int m4_unaligned(unsigned size, uint64_t addr);

#endif
