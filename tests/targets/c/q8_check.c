/* Checks nncc_smmlar() against the 64-bit product over the whole int32 range (its edges, and
 * uniform draws), then nncc_q8_30() (the shared int8 kernels' requantization of a layer flagged
 * q8), in the form the target compiles (DSP, ARMv6-M), against nncc_requantize(), the general
 * form, over
 * its whole stated domain: |acc| < 2^30, 0 <= m < 2^31, 1 <= right <= 22, every int8 zero
 * point, the full int8 clamp. The ends of each range are drawn often. Exit status 0 when all
 * agree; else the first disagreement is printed. */
#include <stdint.h>

#include "nncc_fixed.h"
#include "semihost.h"

#define DRAWS 200000

static uint32_t state = 2463534242u;

static uint32_t next(void) /* xorshift32 */
{
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

/* a value in [0, hi] (hi = 2^k - 1): hi or 0 one time in eight, else of a random bit length, so
 * that every magnitude is drawn as often (most outputs of uniform draws would saturate) */
static int32_t draw(int32_t hi)
{
    const uint32_t u = next();
    if ((u & 7) == 0) {
        return (u & 8) ? hi : 0;
    }
    return (int32_t)(next() & (uint32_t)hi & ((2u << (u >> 27)) - 1u));
}

/* the same in [-hi, hi] */
static int32_t draw_signed(int32_t hi)
{
    const int32_t v = draw(hi);
    return (next() & 1u) ? -v : v;
}

static void put_int(char *buf, int32_t v)
{
    char tmp[12];
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    int n = 0, i = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        buf[i++] = '-';
    }
    while (n) {
        buf[i++] = tmp[--n];
    }
    buf[i++] = ' ';
    buf[i] = 0;
}

/* nncc_smmlar() against the 64-bit product, for any int32 a, m, h */
static int smmlar_ok(int32_t a, int32_t m, int32_t h)
{
    const int64_t p = (int64_t)a * m + 0x80000000LL;
    return nncc_smmlar(a, m, h) == (int32_t)((uint32_t)h + (uint32_t)(p >> 32));
}

static const int32_t EDGES[] = {INT32_MIN, INT32_MIN + 1, -65536, -32768, -1, 0, 1, 32767, 32768, 65535,
                                65536, INT32_MAX};

int main(void)
{
    int k, i, j;
    for (i = 0; i < 12; ++i) { /* the edges of a and m, with h at its own */
        for (j = 0; j < 12; ++j) {
            for (k = 0; k < 12; k += 5) {
                if (!smmlar_ok(EDGES[i], EDGES[j], EDGES[k])) {
                    nncc_sh_puts("q8_check: nncc_smmlar() differs at an edge\n");
                    nncc_sh_exit(1);
                }
            }
        }
    }
    for (k = 0; k < DRAWS; ++k) { /* uniform over the whole int32 range */
        if (!smmlar_ok((int32_t)next(), (int32_t)next(), (int32_t)next())) {
            nncc_sh_puts("q8_check: nncc_smmlar() differs\n");
            nncc_sh_exit(1);
        }
    }
    for (k = 0; k < DRAWS; ++k) {
        const int32_t acc = draw_signed((1 << 30) - 1);
        /* the multipliers of real layers are in [2^30, 2^31), half of the draws */
        const int32_t m = (next() & 1u) ? draw(INT32_MAX) : (int32_t)(0x40000000u | (uint32_t)draw(0x3fffffff));
        const int right = 1 + (int)(next() % 22u), zp = (int)(next() % 256u) - 128;
        const int32_t rz = nncc_q8_rz(right, zp);
        const int32_t got = nncc_q8_30(2 * acc, m, rz, right);
        const int32_t want = nncc_requantize(acc, m, -right, zp, -128, 127);
        if (got != want) {
            char line[80];
            const int32_t vals[6] = {acc, m, right, zp, got, want};
            int i;
            nncc_sh_puts("q8_check: differs (acc m right zp got want): ");
            for (i = 0; i < 6; ++i) {
                put_int(line, vals[i]);
                nncc_sh_puts(line);
            }
            nncc_sh_puts("\n");
            nncc_sh_exit(1);
        }
    }
    nncc_sh_puts("q8_check: OK\n");
    nncc_sh_exit(0);
}
