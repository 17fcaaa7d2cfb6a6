/* C reference of fp_matmul: double accumulation, same layouts as the device. */
#include "fedproxy/ops_matmul.h"
#include "fedproxy/safetensors.h"

#include <stddef.h>

typedef float (*getb_fn)(const void *B, size_t i);
static float getb_f32(const void *B, size_t i) { return ((const float *)B)[i]; }
static float getb_f16(const void *B, size_t i) { return fp_f16_to_f32(((const uint16_t *)B)[i]); }
static float getb_bf16(const void *B, size_t i) { return fp_bf16_to_f32(((const uint16_t *)B)[i]); }

static void ref(float *C, const float *A, const void *B, getb_fn gb, const fp_matmul_desc *d)
{
    int64_t M = d->M, N = d->N, K = d->K, batch = d->batch > 0 ? d->batch : 1;
    int64_t lda = d->lda ? d->lda : (d->trans_a ? M : K);
    int64_t ldb = d->ldb ? d->ldb : (d->trans_b ? K : N);
    int64_t ldc = d->ldc ? d->ldc : N;
    int64_t sa = d->stride_a ? d->stride_a : M * K, sb = d->stride_b ? d->stride_b : K * N;
    int64_t sc = d->stride_c ? d->stride_c : M * N;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double acc = 0.0;
                for (int64_t k = 0; k < K; k++) {
                    double a = A[b * sa + (d->trans_a ? k * lda + m : m * lda + k)];
                    double bv = gb(B, (size_t)(b * sb + (d->trans_b ? n * ldb + k : k * ldb + n)));
                    acc += a * bv;
                }
                float *c = &C[b * sc + m * ldc + n];
                double r = (double)d->alpha * acc;
                if (d->beta != 0.0f)
                    r += (double)d->beta * *c;
                *c = (float)r;
            }
}

void fp_matmul_ref(float *C, const float *A, const float *B, const fp_matmul_desc *d)
{
    ref(C, A, B, getb_f32, d);
}

void fp_matmul_ref_b16(float *C, const float *A, const uint16_t *B, fp_dtype b_dtype, const fp_matmul_desc *d)
{
    ref(C, A, B, b_dtype == FP_BF16 ? getb_bf16 : getb_f16, d);
}
