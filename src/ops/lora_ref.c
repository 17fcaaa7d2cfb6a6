/* Plain-C LoRA references (include/fedproxy/ops_lora.h), double accumulation. */
#include <stdlib.h>

#include "fedproxy/ops_lora.h"
#include "fedproxy/ops_train.h"

static double wv(const void *W, fp_dtype wt, int64_t i)
{
    if (wt == FP_F16)
        return fp_ref_f16_to_f32(((const uint16_t *)W)[i]);
    if (wt == FP_BF16)
        return fp_ref_bf16_to_f32(((const uint16_t *)W)[i]);
    return ((const float *)W)[i];
}

void fp_ref_lora_fwd(float *y, float *u, const float *x, const void *W, fp_dtype wt, const float *A,
                     const float *B, int64_t N, int64_t in, int64_t out, int64_t r, float alpha)
{
    double sc = (double)alpha / (double)r;
    for (int64_t t = 0; t < N; t++) {
        const float *xt = x + t * in;
        for (int64_t k = 0; k < r; k++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++)
                s += (double)xt[i] * A[k * in + i];
            u[t * r + k] = (float)s;
        }
        for (int64_t o = 0; o < out; o++) {
            double s = 0, l = 0;
            for (int64_t i = 0; i < in; i++)
                s += (double)xt[i] * wv(W, wt, o * in + i);
            for (int64_t k = 0; k < r; k++)
                l += (double)u[t * r + k] * B[o * r + k];
            y[t * out + o] = (float)(s + sc * l);
        }
    }
}

void fp_ref_lora_bwd(float *dx, float *dA, float *dB, const float *dy, const float *x, const float *u,
                     const void *W, fp_dtype wt, const float *A, const float *B, int64_t N, int64_t in,
                     int64_t out, int64_t r, float alpha, int accumulate)
{
    double sc = (double)alpha / (double)r;
    double *g = calloc((size_t)(N * r), sizeof *g);
    if (!g)
        abort();
    for (int64_t t = 0; t < N; t++)
        for (int64_t k = 0; k < r; k++) {
            double s = 0;
            for (int64_t o = 0; o < out; o++)
                s += (double)dy[t * out + o] * B[o * r + k];
            g[t * r + k] = s;
        }
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < r; k++) {
            double s = 0;
            for (int64_t t = 0; t < N; t++)
                s += (double)dy[t * out + o] * u[t * r + k];
            dB[o * r + k] = (float)((accumulate ? dB[o * r + k] : 0.0) + sc * s);
        }
    for (int64_t k = 0; k < r; k++)
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t t = 0; t < N; t++)
                s += g[t * r + k] * x[t * in + i];
            dA[k * in + i] = (float)((accumulate ? dA[k * in + i] : 0.0) + sc * s);
        }
    if (dx)
        for (int64_t t = 0; t < N; t++)
            for (int64_t i = 0; i < in; i++) {
                double s = 0, l = 0;
                for (int64_t o = 0; o < out; o++)
                    s += (double)dy[t * out + o] * wv(W, wt, o * in + i);
                for (int64_t k = 0; k < r; k++)
                    l += g[t * r + k] * A[k * in + i];
                dx[t * in + i] = (float)(s + sc * l);
            }
    free(g);
}
