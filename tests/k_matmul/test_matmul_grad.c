/* Matmul's backward is matmul: for L = sum(W .* (A*B)), dA = W*B^T and
 * dB = A^T*W. Checks (1) the C reference's backward (fp_matmul_ref with the
 * transposed layouts) against central differences of a double-precision forward,
 * (2) the device backward (fp_matmul, trans flags, beta = 1 accumulation onto a
 * previous gradient) against the reference backward. Also shape errors and the
 * chunked path past a small storage range (a JSON overlay). Cheap: labelled asan. */
#include "mm_common.h"

enum { M = 3, N = 4, K = 5 };

static double loss(const double *a, const double *b, const double *w)
{
    double l = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double c = 0;
            for (int k = 0; k < K; k++)
                c += a[m * K + k] * b[k * N + n];
            l += w[m * N + n] * c;
        }
    return l;
}

static void grad_check(void)
{
    float a[M * K], b[K * N], w[M * N], ga[M * K], gb[K * N];
    double ad[M * K], bd[K * N], wd[M * N];
    for (int i = 0; i < M * K; i++) ad[i] = a[i] = fp_test_uniform(-1, 1);
    for (int i = 0; i < K * N; i++) bd[i] = b[i] = fp_test_uniform(-1, 1);
    for (int i = 0; i < M * N; i++) wd[i] = w[i] = fp_test_uniform(-1, 1);
    /* reference backward */
    fp_matmul_desc da = mm_d(M, K, N, 0, 1); /* dA[MxK] = W[MxN] * B^T (B stored KxN) */
    fp_matmul_desc db = mm_d(K, N, M, 1, 0); /* dB[KxN] = A^T (A stored MxK) * W[MxN] */
    fp_matmul_ref(ga, w, b, &da);
    fp_matmul_ref(gb, a, w, &db);
    const double h = 1e-6;
    double worst = 0;
    for (int i = 0; i < M * K; i++) {
        double s = ad[i];
        ad[i] = s + h; double lp = loss(ad, bd, wd);
        ad[i] = s - h; double lm = loss(ad, bd, wd);
        ad[i] = s;
        double fd = (lp - lm) / (2 * h), e = fabs(fd - ga[i]) / (1e-3 + fabs(fd));
        if (e > worst) worst = e;
    }
    for (int i = 0; i < K * N; i++) {
        double s = bd[i];
        bd[i] = s + h; double lp = loss(ad, bd, wd);
        bd[i] = s - h; double lm = loss(ad, bd, wd);
        bd[i] = s;
        double fd = (lp - lm) / (2 * h), e = fabs(fd - gb[i]) / (1e-3 + fabs(fd));
        if (e > worst) worst = e;
    }
    printf("reference backward vs central differences: worst relative error %.2e\n", worst);
    CHECKF(worst < 1e-5, "fd mismatch %g", worst);
}

static void device_grad(fp_ctx *ctx)
{
    /* odd, bigger shapes through the device, accumulating (beta 1) */
    fp_matmul_desc d = mm_d(13, 11, 9, 0, 1); /* dA = dC * B^T */
    d.beta = 1.0f;
    mm_case(ctx, d, FP_F32, "dA=dC*B^T");
    d = mm_d(11, 9, 13, 1, 0); /* dB = A^T * dC */
    d.beta = 1.0f;
    mm_case(ctx, d, FP_F32, "dB=A^T*dC");
    d = mm_d(M, K, N, 0, 1);
    mm_case(ctx, d, FP_F32, "tiny dA");
    d = mm_d(K, N, M, 1, 0);
    mm_case(ctx, d, FP_F32, "tiny dB");
}

static void shape_errors(fp_ctx *ctx)
{
    fp_tensor *A = NULL, *B = NULL, *C = NULL, *H = NULL, *I = NULL;
    fp_stream *s = NULL;
    int64_t sa[2] = {4, 6}, sb[2] = {6, 5}, sc[2] = {4, 5}, sbad[2] = {7, 5};
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 2, sa));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 2, sb));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 2, sc));
    CHECK_OK(fp_tensor_new(&H, ctx, FP_F32, 2, sbad));
    CHECK_OK(fp_tensor_new(&I, ctx, FP_I32, 2, sb));
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_matmul_desc d = mm_d(4, 5, 6, 0, 0);
    CHECK_OK(fp_matmul(s, C, A, B, &d));
    CHECK_ERR(fp_matmul(s, C, A, H, &d), FP_ESHAPE);       /* B is 7x5, K is 6 */
    CHECK_ERR(fp_matmul(s, C, A, I, &d), FP_ESHAPE);       /* B dtype */
    CHECK_ERR(fp_matmul(s, A, C, B, &d), FP_ESHAPE);       /* swapped */
    d = mm_d(4, 5, 6, 0, 1);
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_ESHAPE);       /* B^T needs 5x6 */
    d = mm_d(4, 5, 6, 0, 0);
    d.batch = 2;
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_ESHAPE);       /* not enough elements */
    d = mm_d(4, 5, 6, 0, 0);
    d.lda = 3;
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_ESHAPE);       /* lda < K */
    d = mm_d(-1, 5, 6, 0, 0);
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_EINVAL);
    CHECK_ERR(fp_matmul(s, C, NULL, B, &d), FP_EINVAL);
    CHECK_OK(fp_stream_run(s));
    fp_stream_free(s);
    fp_tensor_free(A); fp_tensor_free(B); fp_tensor_free(C); fp_tensor_free(H); fp_tensor_free(I);
}

static void chunked(void)
{
    /* an overlay capping the storage range at 64 KiB: A (300x64 f32, 75 KiB) and C
     * (300x72, 84 KiB) are processed in row chunks */
    char path[512];
    snprintf(path, sizeof path, "%s/range.json", fp_test_tmpdir("mm_range"));
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"name\": \"range64k\", \"storage_range\": 65536}", f);
    fclose(f);
    fp_ctx *ctx = fp_test_ctx(path);
    CHECK(fp_ctx_profile(ctx)->storage_range == 65536);
    mm_case(ctx, mm_d(300, 72, 64, 0, 0), FP_F32, "chunked");
    mm_case(ctx, mm_d(301, 33, 37, 0, 1), FP_F16, "chunked f16");
    /* B too big for the range: a clear refusal */
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    int64_t sa[2] = {4, 200}, sb[2] = {200, 100}, sc[2] = {4, 100};
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 2, sa));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 2, sb));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 2, sc));
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_matmul_desc d = mm_d(4, 100, 200, 0, 0);
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_EUNSUPPORTED);
    printf("  refusal: %s\n", fp_errmsg());
    fp_stream_free(s);
    fp_tensor_free(A); fp_tensor_free(B); fp_tensor_free(C);
    fp_test_ctx_done(ctx);
}

int main(void)
{
    fp_test_seed(7);
    grad_check();
    fp_ctx *ctx = fp_test_ctx("");
    device_grad(ctx);
    shape_errors(ctx);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("minimal");
    device_grad(ctx);
    fp_test_ctx_done(ctx);
    chunked();
    return fp_test_report("test_matmul_grad");
}
