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

#endif /* NNCC_RUNTIME_H */
