/* nncc fixed-point helpers for quantized kernels. Copied into each project; C99, integer only
 * except the two float converters at the graph boundary.
 *
 * Mirrored bit for bit by nncc/quant/fixed_point.py (tests/quant/test_fixed_point.py asserts
 * equality). The requantization is TFLite's / CMSIS-NN's: a real multiplier 0 < M is stored as
 * (m, shift) with M = m * 2^(shift - 31), m in [2^30, 2^31); y = RDBPOT(SRDHM(x << left, m),
 * right). Right shifts of negative values assume an arithmetic shift (gcc, clang, armcc). */
#ifndef NNCC_FIXED_H
#define NNCC_FIXED_H

#include <stdint.h>
#include <string.h> /* memcpy of a few bytes: unaligned loads and stores, inlined by the compiler */
#include <math.h>

/* v clamped to [lo, hi]. */
static inline int32_t nncc_clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* v clamped to the int32 range (used for the zero point addition, which may overflow). */
static inline int32_t nncc_sat_i64(int64_t v)
{
    return v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : (int32_t)v);
}

/* round(a * b / 2^31), ties away from zero, for every pair but INT32_MIN * INT32_MIN (whose
 * result does not fit). */
static inline int32_t nncc_srdhm_nosat(int32_t a, int32_t b)
{
    /* TFLite's (ab + nudge) / 2^31, truncating, with nudge 2^30 for ab >= 0 and 1 - 2^30 for
       ab < 0, is floor((ab + 2^30) / 2^31) in both cases: one multiply-accumulate and a shift
       (also on ARMv6-M, where this form runs faster than the division) */
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* The same with INT32_MIN * INT32_MIN saturated to INT32_MAX: TFLite
 * SaturatingRoundingDoublingHighMul. */
static inline int32_t nncc_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return nncc_srdhm_nosat(a, b);
}

/* x / 2^exponent rounded to nearest, ties away from zero; exponent in [0, 62]. */
static inline int64_t nncc_rdbpot64(int64_t x, int exponent)
{
    const int64_t mask = ((int64_t)1 << exponent) - 1;
    const int64_t remainder = x & mask;
    const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* The same for int32, exponent in [0, 31]. TFLite RoundingDivideByPOT. */
static inline int32_t nncc_rdbpot(int32_t x, int exponent)
{
    /* 32-bit arithmetic (a 32-bit core runs 64-bit shifts as several instructions each): the
       low `exponent` bits of x are the same either way, and x >> exponent + 1 cannot overflow
       (the +1 needs exponent >= 1). */
    const uint32_t mask = ((uint32_t)1 << exponent) - 1u;
    const uint32_t remainder = (uint32_t)x & mask;
    const uint32_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^shift clamped to int32; shift in [0, 31]. */
static inline int32_t nncc_sat_lshift(int32_t x, int shift)
{
    return nncc_sat_i64((int64_t)x * ((int64_t)1 << shift));
}

/* x * M with (m, shift) from quantize_multiplier(M). A left shift (M >= 1) saturates. */
static inline int32_t nncc_mul_qm(int32_t x, int32_t m, int32_t shift)
{
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    return nncc_rdbpot(nncc_srdhm(nncc_sat_lshift(x, left), m), right);
}

/* x * 2^-shift: rounding right shift (ties away from zero) for shift >= 0, saturating left
 * shift below. The only operation of the shift-only requantization (--scaling shift). */
static inline int32_t nncc_shift_round(int32_t x, int32_t shift)
{
    if (shift >= 0) {
        return nncc_rdbpot(x, shift > 31 ? 31 : (int)shift);
    }
    return nncc_sat_lshift(x, shift < -31 ? 31 : (int)-shift);
}

/* x * 2^-n * (1 + t 2^-d) with t = sign(e), d = |e| (e = 0: x * 2^-n), rounded to nearest
 * (ties away from zero) and saturated: the multiplier 2^-n +- 2^-(n + d) of --scaling
 * double-shift. v = (x << d) + t x is exact in int64 (d <= 31); then a rounding right shift by
 * n + d (<= 62), or a saturating left shift when n + d < 0. Shifts and adds only: the left shift
 * goes through uint64_t (a signed one of a negative value is undefined). */
static inline int32_t nncc_dshift_round(int32_t x, int32_t n, int32_t e)
{
    const int d = e < 0 ? (e < -31 ? 31 : (int)-e) : (e > 31 ? 31 : (int)e);
    const int64_t xs = (int64_t)((uint64_t)(int64_t)x << d);
    const int64_t v = e > 0 ? xs + x : (e < 0 ? xs - x : xs);
    const int32_t r = n + d;
    if (r >= 0) {
        return nncc_sat_i64(nncc_rdbpot64(v, r > 62 ? 62 : (int)r));
    }
    return nncc_sat_lshift(nncc_sat_i64(v), r < -31 ? 31 : (int)-r);
}

/* acc -> clamp(acc * M + zp, lo, hi): the end of every quantized conv / gemm. lo and hi are the
 * output type's range, narrowed by a fused ReLU / ReLU6. */
static inline int32_t nncc_requantize(int32_t acc, int32_t m, int32_t shift, int32_t zp,
                                      int32_t lo, int32_t hi)
{
    return nncc_clamp_i32(nncc_sat_i64((int64_t)nncc_mul_qm(acc, m, shift) + zp), lo, hi);
}

/* nncc_rdbpot() for right >= 1 and x > INT32_MIN, in five instructions: ties away from zero
 * are ties up for t = x - 1 (x < 0) or x (x >= 0), and floor((t + 2^(right-1)) / 2^right) is
 * t >> right plus bit right - 1 of t, with no sum to overflow. */
static inline int32_t nncc_rdbpot_r1(int32_t x, int right)
{
    const int32_t t = x + (x >> 31);
    return (t >> right) + ((t >> (right - 1)) & 1);
}

/* nncc_mul_qm() for shift <= -1 (a right shift: the usual case) and 0 <= m, right = -shift:
 * nncc_srdhm() never saturates for 0 <= m < 2^31 nor gives INT32_MIN, so nncc_rdbpot_r1()
 * applies. */
static inline int32_t nncc_mul_r1(int32_t acc, int32_t m, int right)
{
    return nncc_rdbpot_r1(nncc_srdhm_nosat(acc, m), right);
}

/* nncc_srdhm() and nncc_mul_r1() for |acc| < 2^30 and 0 <= m: floor((acc m + 2^30) / 2^31) is
 * floor((2 acc m + 2^31) / 2^32), the rounded high word of 2 acc * m: one instruction (SMMULR)
 * on cores with the DSP extension. */
#if defined(__ARM_FEATURE_DSP)
static inline int32_t nncc_smmulr(int32_t a, int32_t m)
{
    int32_t x;
    __asm__("smmulr %0, %1, %2" : "=r"(x) : "r"(a), "r"(m));
    return x;
}
#endif

static inline int32_t nncc_srdhm_30(int32_t acc, int32_t m)
{
#if defined(__ARM_FEATURE_DSP)
    return nncc_smmulr(acc * 2, m);
#else
    return nncc_srdhm_nosat(acc, m);
#endif
}

/* nncc_rdbpot_r1() of |x| <= 2^30 in three instructions, with rz = 2^(right - 1): x - 1 + rz
 * cannot overflow. rz may carry a multiple of 2^right more, which comes out whole (a zero
 * point: nncc_q8_rz()). */
static inline int32_t nncc_rdbpot_rz(int32_t x, int32_t rz, int right)
{
    return (x + (x >> 31) + rz) >> right;
}

/* rz of nncc_rdbpot_rz() that also adds the zero point zp: 2^(right - 1) + zp 2^right. */
static inline int32_t nncc_q8_rz(int right, int32_t zp)
{
    return (1 << (right - 1)) + zp * (1 << right);
}

/* |2 acc| < 2^31 and m < 2^31 keep |x| < 2^30: nncc_rdbpot_rz() applies. */
static inline int32_t nncc_mul_r1_30(int32_t acc, int32_t m, int right)
{
    return nncc_rdbpot_rz(nncc_srdhm_30(acc, m), 1 << (right - 1), right);
}

/* The same for right >= 0 (right 0: no rounding shift). */
static inline int32_t nncc_mul_r0_30(int32_t acc, int32_t m, int right)
{
    return right ? nncc_mul_r1_30(acc, m, right) : nncc_srdhm_30(acc, m);
}

/* nncc_requantize() for the same multipliers and an int8 output (zp, lo, hi within +-255), with
 * the per-channel numbers hoisted by the caller: lo_zp = lo - zp, hi_zp = hi - zp. The clamp
 * comes before zp is added, so nothing can overflow and no saturation is needed. */
static inline int32_t nncc_requantize_r8h(int32_t acc, int32_t m, int right, int32_t zp,
                                          int32_t lo_zp, int32_t hi_zp)
{
    return nncc_clamp_i32(nncc_mul_r1(acc, m, right), lo_zp, hi_zp) + zp;
}

/* The same with the numbers as nncc_requantize() takes them (any shift, int8 output). */
static inline int32_t nncc_requantize_r8(int32_t acc, int32_t m, int32_t shift, int32_t zp,
                                         int32_t lo, int32_t hi)
{
    if (m < 0 || shift >= 0) { /* never a quantize_multiplier() value / no right shift */
        return nncc_requantize(acc, m, shift, zp, lo, hi);
    }
    return nncc_requantize_r8h(acc, m, (int)-shift, zp, lo - zp, hi - zp);
}

/* The same with a power-of-two scale: acc * 2^-shift + zp, clamped. */
static inline int32_t nncc_requantize_shift(int32_t acc, int32_t shift, int32_t zp, int32_t lo,
                                            int32_t hi)
{
    return nncc_clamp_i32(nncc_sat_i64((int64_t)nncc_shift_round(acc, shift) + zp), lo, hi);
}

/* int16-activation kernels (nncc/quant/int16.py, which mirrors these): int64 accumulator,
 * |acc| < 2^47. v * 2^-total rounded half up for total > 0; else v clamped to +-2^31 and shifted
 * left (the result is clamped to 16 bits anyway). */
static inline int64_t nncc_round_shift64(int64_t v, int32_t total)
{
    if (total > 0) {
        const int t = total > 62 ? 62 : (int)total;
        return (v + ((int64_t)1 << (t - 1))) >> t;
    }
    v = v < -((int64_t)1 << 31) ? -((int64_t)1 << 31) : (v > ((int64_t)1 << 31) ? ((int64_t)1 << 31) : v);
    return v * ((int64_t)1 << (total < -31 ? 31 : -total));
}

static inline int32_t nncc_clamp_i64(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

/* acc * M + zp, clamped: M's multiplier rounded to 16 bits (<= 2^15), so acc * rm < 2^62, as
 * TFLite's 16x8 kernels requantize their int64 accumulators. */
static inline int32_t nncc_requantize64(int64_t acc, int32_t m, int32_t shift, int32_t zp,
                                        int32_t lo, int32_t hi)
{
    const int64_t rm = ((int64_t)m + ((int64_t)1 << 15)) >> 16;
    return nncc_clamp_i64(nncc_round_shift64(acc * rm, 15 - shift) + zp, lo, hi);
}

/* The same with a power-of-two scale: acc * 2^-shift + zp, clamped. */
static inline int32_t nncc_requantize64_shift(int64_t acc, int32_t shift, int32_t zp, int32_t lo,
                                              int32_t hi)
{
    return nncc_clamp_i64(nncc_round_shift64(acc, shift) + zp, lo, hi);
}

/* The same with a double-shift multiplier (nncc_dshift_round). */
static inline int32_t nncc_requantize_dshift(int32_t acc, int32_t n, int32_t e, int32_t zp,
                                             int32_t lo, int32_t hi)
{
    return nncc_clamp_i32(nncc_sat_i64((int64_t)nncc_dshift_round(acc, n, e) + zp), lo, hi);
}

/* Integer division rounded to nearest, ties away from zero (d > 0): average pooling. */
static inline int32_t nncc_div_round(int32_t n, int32_t d)
{
    return n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
}

/* n / d rounded to nearest, ties to even (d > 0): average pooling of imported QDQ models, as
 * onnxruntime rounds. Floor division first, so no right shift or division of a negative value
 * depends on the compiler. */
static inline int32_t nncc_div_round_even(int32_t n, int32_t d)
{
    int32_t q = n / d;
    int32_t r = n - q * d;
    if (r < 0) { /* C truncates toward zero: make it floor */
        q -= 1;
        r += d;
    }
    if (2 * (int64_t)r > d || (2 * (int64_t)r == d && (q & 1) != 0)) {
        q += 1;
    }
    return q;
}

/* float -> q = clamp(round(x / scale) + zp, lo, hi), ties away from zero, NaN -> zp. The float
 * operations are those of fixed_point.quantize_float, in the same order. */
static inline int32_t nncc_quantize_f32(float x, float scale, int32_t zp, int32_t lo, int32_t hi)
{
    float v = x / scale;
    v = v >= 0.0f ? floorf(v + 0.5f) : ceilf(v - 0.5f);
    v = v + (float)zp;
    if (v != v) {
        return zp;
    }
    if (v < (float)lo) {
        v = (float)lo;
    }
    if (v > (float)hi) {
        v = (float)hi;
    }
    return (int32_t)v;
}

/* q -> (q - zp) * scale, in float. */
static inline float nncc_dequantize_f32(int32_t q, float scale, int32_t zp)
{
    return (float)(q - zp) * scale;
}

#if defined(__ARM_FEATURE_DSP)
/* Cores with the DSP extension (Cortex-M4/M7/M33): the int8 kernels' inner loops use its SIMD
 * instructions (ACLE intrinsics), on int16 pairs: SXTB16 widens bytes 0 and 2 of a word (with
 * ROR #8, bytes 1 and 3), SXTAB16 adds a pair to them, SMLAD adds both products of two pairs.
 * The rotated forms are one instruction each, which gcc does not fuse from a C rotate. */
#include <arm_acle.h>

static inline uint32_t nncc_ld16(const int8_t *p) /* unaligned, little-endian */
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t nncc_ld32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint32_t nncc_sxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline uint32_t nncc_sxtab16_ror8(uint32_t a, uint32_t v)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}

#endif

/* The ARMv6-M assembly (nncc_smmlar(), the int8 kernels') is written in unified syntax. GCC
 * reads Thumb-1 inline assembly in divided syntax unless built with -masm-syntax-unified (which
 * defines __ARM_ASM_SYNTAX_UNIFIED__), so there a block switches to unified and back; Clang
 * reads unified only. */
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__) && !defined(__clang__) \
    && !defined(__ARM_ASM_SYNTAX_UNIFIED__)
#define NNCC_T1_BEGIN ".syntax unified\n\t"
#define NNCC_T1_END "\n\t.syntax divided"
#else
#define NNCC_T1_BEGIN ""
#define NNCC_T1_END ""
#endif

/* SMMLAR: h + the rounded high word of a * m (one instruction with the DSP extension;
 * elsewhere the high word plus bit 31 of the low one, which is what adding 2^31 carries). With
 * m >= 0 the product's sign is a's, or the product is 0: nncc_rdbpot_rz() of the high word x is
 * (nncc_smmlar(a, m, rz) + (a >> 31)) >> right, as x + rz - 1 and x + rz shift to the same
 * value when x = 0 (rz = 2^(right - 1) + a multiple of 2^right, right >= 1); with right 0 and
 * rz 0, a's sign must not be added. */
static inline int32_t nncc_smmlar(int32_t a, int32_t m, int32_t h)
{
#if defined(__ARM_FEATURE_DSP)
    int32_t x;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(x) : "r"(a), "r"(m), "r"(h));
    return x;
#elif defined(__ARM_ARCH_6M__) && defined(__GNUC__)
    /* no 32 x 32 -> 64 multiply (GCC would call __aeabi_lmul): the high word from four 16 x 16
       products, each exact in 32 bits. a m + 2^31 = ah mh 2^32 + (y1 + y2) 2^16 + x + 2^31 with
       y1 = ah ml, y2 = al mh, x = al ml; below 2^32 only the low halves of y1, y2, the high half
       of x and 2^31 can carry (x's low half cannot), so their sum c's bits 16.. are the carry.
       24 instructions (GCC's form of the same in C took about 34); t2: x, then c. */
    int32_t t0, t1, t2;
    __asm__(NNCC_T1_BEGIN
            "uxth %[t0], %[a]\n\t" /* al */
            "asrs %[a], %[a], #16\n\t" /* ah */
            "uxth %[t1], %[m]\n\t" /* ml */
            "asrs %[m], %[m], #16\n\t" /* mh */
            "movs %[t2], %[t0]\n\t"
            "muls %[t2], %[t1], %[t2]\n\t" /* x */
            "muls %[t1], %[a], %[t1]\n\t" /* y1 */
            "muls %[t0], %[m], %[t0]\n\t" /* y2 */
            "muls %[a], %[m], %[a]\n\t" /* ah mh */
            "adds %[a], %[a], %[h]\n\t"
            "lsrs %[t2], %[t2], #16\n\t"
            "uxth %[m], %[t1]\n\t"
            "adds %[t2], %[t2], %[m]\n\t"
            "uxth %[m], %[t0]\n\t"
            "adds %[t2], %[t2], %[m]\n\t"
            "movs %[m], #128\n\t"
            "lsls %[m], %[m], #8\n\t"
            "adds %[t2], %[t2], %[m]\n\t"
            "lsrs %[t2], %[t2], #16\n\t" /* c >> 16 */
            "asrs %[t1], %[t1], #16\n\t"
            "asrs %[t0], %[t0], #16\n\t"
            "adds %[a], %[a], %[t1]\n\t"
            "adds %[a], %[a], %[t0]\n\t"
            "adds %[a], %[a], %[t2]" NNCC_T1_END
            : [a] "+l"(a), [m] "+l"(m), [h] "+l"(h), [t0] "=&l"(t0), [t1] "=&l"(t1), [t2] "=&l"(t2)
            :
            : "cc");
    return a;
#else
    const int64_t x = (int64_t)a * m;
    return (int32_t)((uint32_t)h + (uint32_t)(x >> 32) + ((uint32_t)x >> 31));
#endif
}

/* nncc_requantize_r8h() of the full int8 range for |acc| < 2^30, 0 <= m, 1 <= right <= 22, from
 * a2 = 2 acc and rz = nncc_q8_rz(right, zp): the zero point joins the rounding term (a multiple
 * of 2^right shifts out exactly; |x| <= 2^30 and |rz| < 2^30 cannot overflow). */
static inline int32_t nncc_q8_30(int32_t a2, int32_t m, int32_t rz, int right)
{
#if defined(__ARM_FEATURE_DSP)
    return __ssat((nncc_smmlar(a2, m, rz) + (a2 >> 31)) >> right, 8);
#else
    return nncc_clamp_i32((nncc_smmlar(a2, m, rz) + (a2 >> 31)) >> right, -128, 127);
#endif
}

/* The sum of n int8 (n < 2^23): a global average pool's plane, a depthwise channel's weights.
 * With the DSP extension 4 a step: USADA8 adds a word's bytes as unsigned, each flipped by its
 * top bit to x + 128. */
static inline int32_t nncc_sum_i8(const int8_t *x, int n)
{
    int32_t s = 0;
    int i = 0;
#if defined(__ARM_FEATURE_DSP)
    uint32_t u = 0;
    for (; i + 4 <= n; i += 4) {
        u = __usada8(nncc_ld32(x + i) ^ 0x80808080u, 0, u);
    }
    s = (int32_t)(u - 128u * (uint32_t)i);
#endif
    for (; i < n; ++i) {
        s += x[i];
    }
    return s;
}

#endif /* NNCC_FIXED_H */
