/* nncc runtime: the few helpers shared by all generated code. Copied into each project.
 * Plain C99, no libc beyond <stdint.h>/<stddef.h>/<math.h>; no malloc, no globals. */
#ifndef NNCC_RUNTIME_H
#define NNCC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "nncc weights blobs are little-endian; this target is big-endian"
#endif

/* Status codes returned by NAME_run(). */
#define NNCC_OK 0
#define NNCC_GUARD_FAILED 1000 /* + the layer's position in run(): an NNCC_GUARD build only */

#ifdef NNCC_GUARD
/* The NNCC_GUARD build's check of the memory plan (NAME.c): the arena copied before the first
   layer, then after each layer every byte outside the ranges it may write compared with the
   copy, and the copy brought up to date inside them. ranges: [begin, end) pairs in increasing
   order, ended by 0, 0. Returns 0 when a byte outside them changed. */
static inline void nncc_guard_start(unsigned char *copy, const unsigned char *arena, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i)
        copy[i] = arena[i];
}

static inline int nncc_guard_check(unsigned char *copy, const unsigned char *arena, size_t n,
                                   const uint32_t *ranges)
{
    size_t i = 0;
    for (;; ranges += 2) {
        const size_t stop = ranges[1] ? ranges[0] : n;
        for (; i < stop; ++i)
            if (copy[i] != arena[i])
                return 0;
        if (!ranges[1])
            return 1;
        for (; i < ranges[1]; ++i)
            copy[i] = arena[i];
    }
}
#endif

static inline float nncc_maxf(float a, float b) { return a > b ? a : b; }
static inline float nncc_minf(float a, float b) { return a < b ? a : b; }
static inline int nncc_maxi(int a, int b) { return a > b ? a : b; }
static inline int nncc_mini(int a, int b) { return a < b ? a : b; }

/* e^x from float +, -, * only (Cody-Waite reduction, Cephes polynomial; under 2 ulp), so that
 * every target computes the same bits as the host when built with -ffp-contract=off. libm's
 * expf differs between C libraries (newlib on cores without a double FPU uses an older
 * algorithm), which made Softmax outputs differ by 1 ulp between a Cortex-M4 and the host. */
static inline float nncc_expf(float x)
{
    union { float f; uint32_t u; } scale;
    float t, r, y;
    int k;
    if (x != x)
        return x + x;
    if (x > 88.72283935546875f)
        return 1e38f * 1e38f; /* +inf */
    if (x < -103.972084045410f)
        return 0.0f;
    t = x * 1.44269504088896341f;
    k = (int)(t < 0.0f ? t - 0.5f : t + 0.5f);
    r = x - (float)k * 0.693359375f;      /* 0.693359375 has 9 bits: k * it is exact */
    r = r - (float)k * -2.12194440e-4f;
    y = ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
             + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) + r) + 1.0f;
    if (k > 127) { /* 2^128 is not a float: scale twice */
        y *= 2.0f;
        k -= 1;
    }
    if (k < -126) { /* subnormal result: same */
        scale.u = (uint32_t)(127 - 64) << 23;
        y *= scale.f;
        k += 64;
    }
    scale.u = (uint32_t)(k + 127) << 23;
    return y * scale.f;
}

/* Shared float micro-kernels: one copy serves every layer (the kernels around them have their
 * shapes baked in, which would multiply the code of these hot loops by the number of layers).
 * `unused`: a model that calls none does not warn; noinline: one copy, not one per call. */
#if defined(__GNUC__)
#define NNCC_KERNEL static __attribute__((unused, noinline))
#else
#define NNCC_KERNEL static
#endif

/* Whether the assembly loops that take 14 registers (r7 and r9 among them) can build: GCC and
 * Clang leave every one free when optimizing, unless told to keep a frame pointer
 * (-fno-omit-frame-pointer) or to reserve one (-msingle-pic-base, -ffixed-r9), which no macro
 * reveals: such a build defines NNCC_NO_ASM14 (the firmware Makefile does so itself). Then these
 * loops give way to their C forms, as at -O0. */
#if defined(__OPTIMIZE__) && !defined(NNCC_NO_ASM14)
#define NNCC_ASM14 1
#else
#define NNCC_ASM14 0
#endif

/* A kernel helper that only unusual layers call (compiled for size, not speed). */
#if defined(__GNUC__)
#define NNCC_COLD static __attribute__((unused, noinline, cold))
#else
#define NNCC_COLD static
#endif

/* A kernel's driver whose loops run per pixel or per row, around helpers that run per MAC:
 * compiled for size (gcc), as the 8 KB code budget of the MCU targets prefers. */
#if defined(__GNUC__) && !defined(__clang__)
#define NNCC_DRIVER __attribute__((optimize("Os")))
#else
#define NNCC_DRIVER
#endif

/* A function whose short fill and copy loops stay loops: a libc memset / memcpy call would cost
 * more than the few bytes it moves, and the firmware links no libc string code otherwise. */
#if defined(__GNUC__) && !defined(__clang__)
#define NNCC_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NNCC_NO_LIBCALLS
#endif

/* acc[j] += sum over i < n, in order, of x[i * xs] * w[j * wj + i], for j < 4: four dot
 * products sharing each x load (1x1 convolutions, Gemm). The weights run contiguously, so
 * each load post-increments its pointer. */
NNCC_KERNEL void nncc_dot4(float *acc, const float *x, int xs, const float *w, int wj, int n)
{
    const float *w1 = w + wj, *w2 = w1 + wj, *w3 = w2 + wj;
    float a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int i;
    for (i = 0; i < n; ++i) {
        const float xv = *x;
        a0 += xv * w[i];
        a1 += xv * w1[i];
        a2 += xv * w2[i];
        a3 += xv * w3[i];
        x += xs;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* nncc_dot4 for two output pixels at once (the second's inputs xp further on), strided
 * weights: acc[4 * q + j] += sum over i < n, in order, of x[q * xp + i * xs] * w[j * wj + i * ws].
 * Each of the 6 loads feeds 2 or 4 of the 8 MACs. */
NNCC_KERNEL void nncc_dot4x2(float *acc, const float *x, int xs, int xp, const float *w, int wj, int ws,
                             int n)
{
    const float *xb = x + xp;
    const float *w1 = w + wj, *w2 = w1 + wj, *w3 = w2 + wj;
    float a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    float b0 = acc[4], b1 = acc[5], b2 = acc[6], b3 = acc[7];
    int i;
    for (i = 0; i < n; ++i) {
        const float xv = *x, yv = *xb;
        const float v0 = *w, v1 = *w1, v2 = *w2, v3 = *w3;
        a0 += xv * v0;
        a1 += xv * v1;
        a2 += xv * v2;
        a3 += xv * v3;
        b0 += yv * v0;
        b1 += yv * v1;
        b2 += yv * v2;
        b3 += yv * v3;
        x += xs;
        xb += xs;
        w += ws;
        w1 += ws;
        w2 += ws;
        w3 += ws;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = b0;
    acc[5] = b1;
    acc[6] = b2;
    acc[7] = b3;
}

#endif /* NNCC_RUNTIME_H */
