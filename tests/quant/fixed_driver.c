/* Test driver for runtime_c/nncc_fixed.h: each function applies one helper elementwise, so
 * tests/quant/test_fixed_point.py can compare it with the numpy mirror on whole arrays. */
#include "nncc_fixed.h"

void t_srdhm(const int32_t *a, const int32_t *b, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_srdhm(a[i], b[i]);
}

void t_rdbpot(const int32_t *x, const int32_t *e, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_rdbpot(x[i], (int)e[i]);
}

void t_mul_qm(const int32_t *x, const int32_t *m, const int32_t *s, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_mul_qm(x[i], m[i], s[i]);
}

void t_shift_round(const int32_t *x, const int32_t *s, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_shift_round(x[i], s[i]);
}

void t_requantize(const int32_t *x, const int32_t *m, const int32_t *s, int32_t zp, int32_t lo,
                  int32_t hi, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_requantize(x[i], m[i], s[i], zp, lo, hi);
}

void t_requantize_r8(const int32_t *x, const int32_t *m, const int32_t *s, int32_t zp, int32_t lo,
                     int32_t hi, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_requantize_r8(x[i], m[i], s[i], zp, lo, hi);
}

void t_mul_r0_30(const int32_t *x, const int32_t *m, const int32_t *r, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_mul_r0_30(x[i], m[i], (int)r[i]);
}

void t_q8_30(const int32_t *x, const int32_t *m, const int32_t *r, int32_t zp, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_q8_30(2 * x[i], m[i], nncc_q8_rz((int)r[i], zp), (int)r[i]);
}

void t_requantize_shift(const int32_t *x, const int32_t *s, int32_t zp, int32_t lo, int32_t hi,
                        int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_requantize_shift(x[i], s[i], zp, lo, hi);
}

void t_dshift_round(const int32_t *x, const int32_t *n, const int32_t *e, int32_t *y, int c)
{
    int i;
    for (i = 0; i < c; ++i) y[i] = nncc_dshift_round(x[i], n[i], e[i]);
}

void t_requantize_dshift(const int32_t *x, const int32_t *n, const int32_t *e, int32_t zp, int32_t lo,
                         int32_t hi, int32_t *y, int c)
{
    int i;
    for (i = 0; i < c; ++i) y[i] = nncc_requantize_dshift(x[i], n[i], e[i], zp, lo, hi);
}

void t_div_round(const int32_t *x, int32_t d, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_div_round(x[i], d);
}

void t_quantize(const float *x, float scale, int32_t zp, int32_t *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_quantize_f32(x[i], scale, zp, -128, 127);
}

void t_dequantize(const int32_t *q, float scale, int32_t zp, float *y, int n)
{
    int i;
    for (i = 0; i < n; ++i) y[i] = nncc_dequantize_f32(q[i], scale, zp);
}
