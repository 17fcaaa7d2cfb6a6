/* Shared helpers of the matmul tests: run one case on the device through
 * fp_matmul and compare with fp_matmul_ref. */
#ifndef MM_COMMON_H
#define MM_COMMON_H

#include "fedproxy/ops_matmul.h"
#include "fedproxy/safetensors.h"
#include "fp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double mm_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define MM_NMSE_F32 5e-4 /* f32 (and f16/bf16 B against the reference on the same rounded weights) */
#define MM_NMSE_F16_VS_F32 1e-5 /* f16 weights against the unrounded f32 product (2^-11 relative rounding) */
#define MM_NMSE_BF16_VS_F32 1e-3 /* bf16 weights (2^-8 relative rounding) */

static inline int64_t mm_elems(int64_t batch, int64_t stride, int64_t rows, int64_t ld)
{
    return (batch - 1) * stride + rows * ld;
}

/* d.texel of the last mm_case that ran (-1: it did not run) */
static int mm_last_texel = -1;

/* Runs d on random data (B in dtype bt) and checks it against fp_matmul_ref.
 * Prints the case; returns the variant fp_matmul reported (d.chosen, a static
 * string; NULL if it did not run). */
static inline const char *mm_case(fp_ctx *ctx, fp_matmul_desc d, fp_dtype bt, const char *tag)
{
    int64_t M = d.M, N = d.N, K = d.K, batch = d.batch > 0 ? d.batch : 1;
    int64_t ar = d.trans_a ? K : M, ac = d.trans_a ? M : K, br = d.trans_b ? N : K, bc = d.trans_b ? K : N;
    int64_t lda = d.lda ? d.lda : ac, ldb = d.ldb ? d.ldb : bc, ldc = d.ldc ? d.ldc : N;
    int64_t sa = d.stride_a ? d.stride_a : ar * ac, sb = d.stride_b ? d.stride_b : br * bc;
    int64_t sc = d.stride_c ? d.stride_c : M * N;
    int64_t na = mm_elems(batch, sa, ar, lda), nb = mm_elems(batch, sb, br, ldb), nc = mm_elems(batch, sc, M, ldc);
    if (na < 1) na = 1;
    if (nb < 1) nb = 1;
    if (nc < 1) nc = 1;
    float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb), *c0 = malloc(sizeof(float) * nc);
    float *ref = malloc(sizeof(float) * nc), *ref32 = malloc(sizeof(float) * nc), *out = malloc(sizeof(float) * nc);
    uint16_t *b16 = malloc(sizeof(uint16_t) * nb);
    for (int64_t i = 0; i < na; i++) a[i] = fp_test_uniform(-1, 1);
    for (int64_t i = 0; i < nb; i++) {
        b[i] = fp_test_uniform(-1, 1);
        if (bt == FP_F16) b16[i] = fp_f32_to_f16(b[i]);
        if (bt == FP_BF16) b16[i] = fp_f32_to_bf16(b[i]);
    }
    for (int64_t i = 0; i < nc; i++) c0[i] = fp_test_uniform(-1, 1);
    memcpy(ref, c0, sizeof(float) * nc);
    memcpy(ref32, c0, sizeof(float) * nc);
    if (bt == FP_F32) {
        fp_matmul_ref(ref, a, b, &d);
    } else {
        fp_matmul_ref_b16(ref, a, b16, bt, &d);
        fp_matmul_ref(ref32, a, b, &d);
    }
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    const char *ran = NULL;
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 1, &na));
    CHECK_OK(fp_tensor_new(&B, ctx, bt, 1, &nb));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 1, &nc));
    CHECK_OK(fp_stream_new(&s, ctx));
    if (!A || !B || !C || !s)
        goto done;
    CHECK_OK(fp_tensor_upload(A, a, sizeof(float) * na));
    CHECK_OK(fp_tensor_upload(B, bt == FP_F32 ? (void *)b : (void *)b16, (size_t)nb * fp_dtype_size(bt)));
    CHECK_OK(fp_tensor_upload(C, c0, sizeof(float) * nc));
    double t0 = mm_now();
    int rc = fp_matmul(s, C, A, B, &d);
    ran = rc ? NULL : d.chosen;
    mm_last_texel = rc ? -1 : d.texel;
    CHECKF(rc == 0, "%s: fp_matmul: %s", tag, fp_errmsg());
    if (rc)
        goto done;
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(out, sizeof(float) * nc, C));
    double ms = (mm_now() - t0) * 1e3;
    double e = fp_test_nmse(out, ref, nc), mx = fp_test_maxerr(out, ref, nc);
    printf("  %-14s %-10s%s M=%lld N=%lld K=%lld b=%lld %s%s B=%s a=%g b=%g: nmse %.2e max %.2e (%.0f ms)\n", tag,
           d.chosen ? d.chosen : "?", d.texel == 4 ? " tex4" : d.texel == 1 ? " tex1" : "", (long long)M,
           (long long)N, (long long)K, (long long)batch, d.trans_a ? "T" : "N", d.trans_b ? "T" : "N",
           fp_dtype_name(bt), d.alpha, d.beta, e, mx, ms);
    CHECKF(e <= MM_NMSE_F32 && mx < 1e-2 * (1 + sqrt((double)K)), "%s %s M=%lld N=%lld K=%lld: nmse %g max %g", tag,
           d.chosen, (long long)M, (long long)N, (long long)K, e, mx);
    if (bt != FP_F32) {
        double e32 = fp_test_nmse(out, ref32, nc);
        double lim = bt == FP_F16 ? MM_NMSE_F16_VS_F32 : MM_NMSE_BF16_VS_F32;
        CHECKF(e32 <= lim, "%s %s vs f32 product: nmse %g > %g", tag, fp_dtype_name(bt), e32, lim);
    }
done:
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
    free(a); free(b); free(c0); free(ref); free(ref32); free(out); free(b16);
    return ran;
}

static inline fp_matmul_desc mm_d(int64_t M, int64_t N, int64_t K, int ta, int tb)
{
    fp_matmul_desc d = fp_matmul_desc_make(M, N, K);
    d.trans_a = ta;
    d.trans_b = tb;
    return d;
}

#endif
