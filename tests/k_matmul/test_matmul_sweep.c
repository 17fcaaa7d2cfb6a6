/* Slow, hand-run sweep: large shapes (2048^3, the engine shapes) with every
 * runnable variant, heavy ones included, checked on sampled rows against a
 * double-precision reference (a full 2048^3 reference would take minutes). */
#include "mm_common.h"

static void big(fp_ctx *ctx, int64_t M, int64_t N, int64_t K, int tb, const char *variant)
{
    fp_matmul_desc d = mm_d(M, N, K, 0, tb);
    d.variant = variant;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
    for (int64_t i = 0; i < M * K; i++) a[i] = fp_test_uniform(-1, 1);
    for (int64_t i = 0; i < K * N; i++) b[i] = fp_test_uniform(-1, 1);
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    int64_t sa[2] = {M, K}, sb[2] = {tb ? N : K, tb ? K : N}, sc[2] = {M, N};
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 2, sa));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 2, sb));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 2, sc));
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_tensor_upload(A, a, sizeof(float) * M * K));
    CHECK_OK(fp_tensor_upload(B, b, sizeof(float) * K * N));
    double t0 = mm_now();
    CHECK_OK(fp_matmul(s, C, A, B, &d));
    CHECK_OK(fp_stream_run(s));
    double t = mm_now() - t0;
    CHECK_OK(fp_tensor_download(c, sizeof(float) * M * N, C));
    double num = 0, den = 0;
    for (int r = 0; r < 16; r++) {
        int64_t m = (r * 7919) % M;
        for (int64_t n = 0; n < N; n++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)a[m * K + k] * (tb ? b[n * K + k] : b[k * N + n]);
            num += (c[m * N + n] - acc) * (c[m * N + n] - acc);
            den += acc * acc;
        }
    }
    double e = num / (den > 0 ? den : 1);
    printf("  %-10s %lldx%lldx%lld %s: nmse %.2e, %.2f s incl. compile\n", d.chosen ? d.chosen : "?", (long long)M,
           (long long)N, (long long)K, tb ? "NT" : "NN", e, t);
    CHECKF(e <= MM_NMSE_F32, "%s nmse %g", d.chosen, e);
    fp_stream_free(s);
    fp_tensor_free(A); fp_tensor_free(B); fp_tensor_free(C);
    free(a); free(b); free(c);
}

int main(void)
{
    fp_test_seed(5);
    fp_ctx *ctx = fp_test_ctx("");
    big(ctx, 2048, 2048, 2048, 0, NULL);
    big(ctx, 1024, 1408, 512, 1, NULL);
    big(ctx, 1024, 8192, 512, 1, NULL);
    for (int i = 0; fp_matmul_variant_names[i]; i++)
        if (fp_matmul_variant_ok(ctx, fp_matmul_variant_names[i]))
            big(ctx, 515, 520, 516, i & 1, fp_matmul_variant_names[i]);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_matmul_sweep");
}
