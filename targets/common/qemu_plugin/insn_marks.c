/* insn_marks.c - QEMU TCG plugin for `nncc bench`: counts the guest instructions executed (one
 * inline add per translated block, no per-instruction callback) and logs the running total each
 * time the instruction at a `mark=ADDRESS` argument executes. Differences between consecutive
 * marks give the instructions executed in between, exactly.
 * With `timing=cortex-m4` it also keeps a cycle total from the static model of m4_timing.c: each
 * translated block's cost is summed once at translation, and a callback per executed block adds it,
 * plus the refill of a taken branch (the previous block ended in a branch and this block is not its
 * fall-through), and a callback per single load or store adds the penalty of an unaligned access.
 * QEMU also ends blocks without a branch (a long straight run, cut where its translation buffer
 * fills: sooner with this plugin's callbacks); the core sees one run, so a block entered by such a
 * fall-through has its first instruction costed after the previous block's last one, not as after
 * a branch.
 *   gcc -O2 -shared -fPIC insn_marks.c m4_timing.c -o libinsn_marks.so
 *   qemu-system-arm ... -plugin ./libinsn_marks.so,mark=0x1234[,timing=cortex-m4] -d plugin -D marks.log
 * Plugin API version 1 (QEMU 7.2). Debian ships QEMU with plugin support but without
 * qemu-plugin.h, so the few declarations used are written out here; they must match the API
 * version of the QEMU that loads the plugin. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m4_timing.h"

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                         void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

#define MAX_MARKS 8
static uint64_t total; /* the MCU machines have one vCPU: a plain counter is enough */
static uint64_t marks[MAX_MARKS];
static int nmarks;
static int timing;      /* timing=cortex-m4 given */
static uint64_t cycles; /* the model's total */

struct block {
    uint64_t pc, fall;    /* first instruction; the one after the last */
    uint64_t cycles;      /* no branch taken, the first instruction as after a branch */
    int branch;           /* the last instruction may write the PC */
    struct m4_insn last;  /* the last instruction */
    char *first;          /* the first one's disassembly */
    int first_cycles;     /* its cost after a branch */
    int fall_delta;       /* its cost after the code before it, less first_cycles (fall_known) */
    int fall_known;
};
static struct block *last_block;

static void on_block(unsigned int vcpu, void *udata)
{
    struct block *b = udata;
    (void)vcpu;
    if (last_block && last_block->branch && b->pc != last_block->fall)
        cycles += M4_REFILL;
    cycles += b->cycles;
    if (last_block && !last_block->branch && b->pc == last_block->fall) {
        /* the same code always comes before pc: its cost is worked out once */
        if (!b->fall_known) {
            struct m4_insn cur;
            m4_cost(b->first, &cur, &last_block->last);
            b->fall_delta = cur.cycles - b->first_cycles;
            b->fall_known = 1;
        }
        cycles += (uint64_t)(int64_t)b->fall_delta;
    }
    last_block = b;
}

/* A data access: the penalty of an unaligned one (its address is known only now). */
static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    (void)vcpu;
    (void)udata;
    cycles += (uint64_t)m4_unaligned(1u << qemu_plugin_mem_size_shift(info), vaddr);
}

/* The block's cost; blocks live as long as QEMU may run them, so they are never freed. */
static void add_timing(struct qemu_plugin_tb *tb, size_t n)
{
    struct block *b = calloc(1, sizeof *b);
    struct m4_insn prev = {0, M4_BRANCH, -1, 0}, cur = prev;
    size_t i;
    if (!b)
        abort();
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        char *text = qemu_plugin_insn_disas(insn);
        m4_cost(text ? text : "", &cur, &prev);
        if (i == 0) {
            b->first = strdup(text ? text : "");
            b->first_cycles = cur.cycles;
            if (!b->first)
                abort();
        }
        free(text);
        b->cycles += (uint64_t)cur.cycles;
        if (cur.kind == M4_LOAD || cur.kind == M4_STORE)
            qemu_plugin_register_vcpu_mem_cb(insn, on_mem, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
        prev = cur;
        if (i == 0)
            b->pc = qemu_plugin_insn_vaddr(insn);
        if (i + 1 == n)
            b->fall = qemu_plugin_insn_vaddr(insn) + qemu_plugin_insn_size(insn);
    }
    b->branch = cur.branch;
    b->last = cur;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void on_mark(unsigned int vcpu, void *udata)
{
    char buf[128];
    (void)vcpu;
    snprintf(buf, sizeof buf, "insn_marks: pc=0x%" PRIx64 " total=%" PRIu64 " cycles=%" PRIu64 "\n",
             (uint64_t)(uintptr_t)udata, total, cycles);
    qemu_plugin_outs(buf);
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    int m;
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    if (timing && n)
        add_timing(tb, n);
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        for (m = 0; m < nmarks; m++)
            if (pc == marks[m])
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                                       (void *)(uintptr_t)pc);
    }
}

static void on_exit_cb(qemu_plugin_id_t id, void *p)
{
    char buf[64];
    (void)id;
    (void)p;
    snprintf(buf, sizeof buf, "insn_marks: exit total=%" PRIu64 " cycles=%" PRIu64 "\n", total, cycles);
    qemu_plugin_outs(buf);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc && nmarks < MAX_MARKS; i++)
        if (strncmp(argv[i], "mark=", 5) == 0)
            marks[nmarks++] = strtoull(argv[i] + 5, NULL, 0);
        else if (strcmp(argv[i], "timing=cortex-m4") == 0)
            timing = 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
