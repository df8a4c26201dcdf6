/* insn_marks.c - QEMU TCG plugin for `nncc bench`: counts the guest instructions executed (one
 * inline add per translated block, no per-instruction callback) and logs the running total each
 * time the instruction at a `mark=ADDRESS` argument executes. Differences between consecutive
 * marks give the instructions executed in between, exactly.
 *   gcc -O2 -shared -fPIC insn_marks.c -o libinsn_marks.so
 *   qemu-system-arm ... -plugin ./libinsn_marks.so,mark=0x1234 -d plugin -D marks.log
 * Plugin API version 1 (QEMU 7.2). Debian ships QEMU with plugin support but without
 * qemu-plugin.h, so the few declarations used are written out here; they must match the API
 * version of the QEMU that loads the plugin. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

#define MAX_MARKS 8
static uint64_t total; /* the MCU machines have one vCPU: a plain counter is enough */
static uint64_t marks[MAX_MARKS];
static int nmarks;

static void on_mark(unsigned int vcpu, void *udata)
{
    char buf[96];
    (void)vcpu;
    snprintf(buf, sizeof buf, "insn_marks: pc=0x%" PRIx64 " total=%" PRIu64 "\n",
             (uint64_t)(uintptr_t)udata, total);
    qemu_plugin_outs(buf);
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    int m;
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
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
    snprintf(buf, sizeof buf, "insn_marks: exit total=%" PRIu64 "\n", total);
    qemu_plugin_outs(buf);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc && nmarks < MAX_MARKS; i++)
        if (strncmp(argv[i], "mark=", 5) == 0)
            marks[nmarks++] = strtoull(argv[i] + 5, NULL, 0);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
