/* m4_timing.c - a static cycle model of the Cortex-M4 core, for insn_marks.c's `timing=cortex-m4`.
 *
 * Costs follow the Cortex-M4 Technical Reference Manual (ARM 100166, section 3.3: "Processor
 * instruction set summary" and "Load/store timings"), for a system with zero wait states:
 *   - data processing, multiplies (MUL..SMLAL, the DSP MACs), saturation, packing: 1;
 *   - SDIV/UDIV: 2 to 12 by operand; the model charges the worst, 12;
 *   - LDR/LDRB/LDRH/LDRSB/LDRSH: 2; 1 when it follows a single load whose destination it does
 *     not use for its address (the manual's "pipelined" loads);
 *   - STR with an immediate offset: 1; with a register offset 2, or 1 after a single load;
 *   - LDRD/STRD: 3 (1 + N), never pipelined; LDM/STM/PUSH/POP: 1 + N;
 *   - a load or store whose address uses the result of the instruction before it (a data
 *     operation): +1, as the register bank has no forwarding path for addresses;
 *   - a branch, or any write to the PC: +P when taken. P (1 to 3 in the manual) is taken as 2;
 *     whether a branch was taken is decided at run time by the caller (the next block's address);
 *   - IT: 1 (the manual's folding onto a preceding 16-bit instruction is not assumed);
 *   - FPU: VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS 3, VDIV/VSQRT 14, VLDR/VSTR 2,
 *     VLDM/VSTM/VPUSH/VPOP 1 + N (words), the rest 1;
 *   - an unaligned halfword or word access (run time: m4_unaligned()): +1 for a halfword at an
 *     odd address or a word at 2 mod 4, +2 for a word at an odd address (done as two halfwords,
 *     or as a byte, a halfword and a byte).
 * Flash wait states, bus contention and the extra cycle an LDR from the PC may take are not
 * modelled: on a board that runs from flash the count is a lower bound.
 *
 * The text parsed is QEMU's disassembly of one instruction (capstone syntax: "ldr.w r4, [r0, r1,
 * lsl #1]", register names sb sl fp ip for r9-r12). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "m4_timing.h"

enum { NONE = -1, PC = 15 };

static const char *const CONDS[] = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs",
                                    "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"};

/* register number of the name at s (r0-r15, sb, sl, fp, ip, sp, lr, pc), or NONE */
static int reg_at(const char *s, int *len)
{
    static const char *const named[] = {"sb", "sl", "fp", "ip", "sp", "lr", "pc"};
    int i;
    if (s[0] == 'r' && isdigit((unsigned char)s[1])) {
        char *end;
        long n = strtol(s + 1, &end, 10);
        *len = (int)(end - s);
        return n <= 15 ? (int)n : NONE;
    }
    for (i = 0; i < 7; i++)
        if (strncmp(s, named[i], 2) == 0) {
            *len = 2;
            return 9 + i;
        }
    return NONE;
}

/* bit mask of the core registers named in s[0..n) (ranges such as r4-r7 included) */
static unsigned regs_in(const char *s, size_t n, int *count)
{
    unsigned mask = 0;
    int c = 0, last = NONE;
    size_t i = 0;
    while (i < n) {
        int len, r = (i == 0 || !isalnum((unsigned char)s[i - 1])) ? reg_at(s + i, &len) : NONE;
        if (r == NONE || (i + len < n && isalnum((unsigned char)s[i + len]))) {
            i++;
            continue;
        }
        if (last != NONE && i > 0 && s[i - 1] == '-')
            for (int k = last + 1; k <= r; k++, c++)
                mask |= 1u << k;
        else
            mask |= 1u << r, c++;
        last = r;
        i += (size_t)len;
    }
    if (count)
        *count = c;
    return mask;
}

/* FPU registers in a VLDM/VPUSH list, in words (d registers count 2) */
static int fpu_words(const char *s)
{
    int words = 0;
    const char *p = strchr(s, '{');
    for (; p && *p && *p != '}'; p++) {
        if ((*p == 's' || *p == 'd') && isdigit((unsigned char)p[1])) {
            const int w = *p == 'd' ? 2 : 1;
            char *end;
            long a = strtol(p + 1, &end, 10), b = a;
            if (*end == '-' && (end[1] == 's' || end[1] == 'd'))
                b = strtol(end + 2, &end, 10);
            words += (int)(b - a + 1) * w;
            p = end - 1;
        }
    }
    return words ? words : 1;
}

/* true if m is base followed by nothing or a condition code */
static int is_op(const char *m, const char *base)
{
    size_t n = strlen(base);
    if (strncmp(m, base, n) != 0)
        return 0;
    if (m[n] == 0)
        return 1;
    for (size_t i = 0; i < sizeof CONDS / sizeof *CONDS; i++)
        if (strcmp(m + n, CONDS[i]) == 0)
            return 1;
    return 0;
}

static int starts(const char *m, const char *p) { return strncmp(m, p, strlen(p)) == 0; }

void m4_cost(const char *text, struct m4_insn *out, const struct m4_insn *prev)
{
    char m[16];
    size_t n = strcspn(text, " \t");
    const char *ops = text + n + strspn(text + n, " \t");
    const char *lb = strchr(ops, '['), *rb = lb ? strchr(lb, ']') : NULL;
    int first_len, count;
    unsigned addr = lb && rb ? regs_in(lb, (size_t)(rb - lb), NULL) : 0;
    int first = reg_at(ops, &first_len);

    if (n >= sizeof m)
        n = sizeof m - 1;
    memcpy(m, text, n);
    m[n] = 0;
    if (n > 2 && m[n - 2] == '.' && (m[n - 1] == 'w' || m[n - 1] == 'n'))
        m[n - 2] = 0;

    out->cycles = 1;
    out->kind = M4_DATA;
    out->dest = NONE;
    out->branch = 0;

    if (starts(m, "ldrd") || starts(m, "strd")) {
        out->kind = M4_DOUBLE;
        out->cycles = 3;
    } else if (starts(m, "ldm") || starts(m, "pop") || starts(m, "stm") || starts(m, "push")) {
        const char *l = strchr(ops, '{'), *r = l ? strchr(l, '}') : NULL;
        unsigned list = l && r ? regs_in(l, (size_t)(r - l), &count) : (count = 1, 0);
        out->kind = M4_MULTIPLE;
        out->cycles = 1 + count;
        out->branch = (starts(m, "ldm") || starts(m, "pop")) && ((list >> PC) & 1);
    } else if (starts(m, "ldr")) {
        out->kind = M4_LOAD;
        out->dest = first;
        out->cycles = 2;
        if (prev->kind == M4_LOAD && !(prev->dest != NONE && ((addr >> prev->dest) & 1)))
            out->cycles = 1;
        if (first == PC)
            out->branch = 1;
    } else if (starts(m, "str")) {
        /* an immediate offset or a post-index: the data phase overlaps the next instruction */
        int reg_offset = lb && rb && (regs_in(lb, (size_t)(rb - lb), &count), count > 1);
        out->kind = M4_STORE;
        out->cycles = reg_offset && prev->kind != M4_LOAD ? 2 : 1;
    } else if (starts(m, "vldm") || starts(m, "vstm") || starts(m, "vpush") || starts(m, "vpop")) {
        out->kind = M4_MULTIPLE;
        out->cycles = 1 + fpu_words(ops);
    } else if (starts(m, "vldr") || starts(m, "vstr")) {
        out->kind = M4_DOUBLE; /* not pipelined with core loads in the model */
        out->cycles = 2;
    } else if (starts(m, "vmla") || starts(m, "vmls") || starts(m, "vnmla") || starts(m, "vnmls")
               || starts(m, "vfma") || starts(m, "vfms") || starts(m, "vfnma") || starts(m, "vfnms")) {
        out->cycles = 3;
    } else if (starts(m, "vdiv") || starts(m, "vsqrt")) {
        out->cycles = 14;
    } else if (starts(m, "sdiv") || starts(m, "udiv")) {
        out->cycles = 12;
        out->dest = first;
    } else if (is_op(m, "b") || is_op(m, "bl") || is_op(m, "blx") || is_op(m, "bx")
               || starts(m, "cbz") || starts(m, "cbnz")) {
        out->kind = M4_BRANCH;
        out->branch = 1;
    } else if (starts(m, "tbb") || starts(m, "tbh")) {
        out->kind = M4_BRANCH;
        out->cycles = 3; /* the load (2) and the add (1); the refill when taken */
        out->branch = 1;
    } else if (starts(m, "cmp") || starts(m, "cmn") || starts(m, "tst") || starts(m, "teq")
               || starts(m, "it") || starts(m, "nop") || starts(m, "v")) {
        /* no core register result (VMOV to a core register is rare in the kernels) */
    } else {
        out->dest = first;
        if (first == PC)
            out->branch = 1;
    }

    /* an address computed by the instruction just before: one stall cycle */
    if ((out->kind == M4_LOAD || out->kind == M4_STORE || out->kind == M4_DOUBLE)
        && prev->kind == M4_DATA && prev->dest != NONE && ((addr >> prev->dest) & 1))
        out->cycles += 1;
}

int m4_unaligned(unsigned size, uint64_t addr)
{
    if (size == 2)
        return (int)(addr & 1);
    if (size == 4)
        return (addr & 1) ? 2 : (int)((addr >> 1) & 1);
    return 0;
}
