/* Test driver for the int64 requantization of runtime_c/nncc_fixed.h (int16 activations):
 * elementwise, so tests/quant/test_int16.py compares it with nncc/quant/int16.py on arrays. */
#include "nncc_fixed.h"

void t_requantize64(const int64_t *acc, const int32_t *m, const int32_t *s, int32_t zp,
                    int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_requantize64(acc[i], m[i], s[i], zp, -32768, 32767);
}

void t_requantize64_shift(const int64_t *acc, const int32_t *s, int32_t zp, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_requantize64_shift(acc[i], s[i], zp, -32768, 32767);
}
