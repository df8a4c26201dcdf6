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

#endif /* NNCC_RUNTIME_H */
