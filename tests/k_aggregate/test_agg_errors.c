/* Shape errors are errors (with messages), and the device's NaN/Inf behaviour
 * matches the documented one: non-finite norms, clip leaving NaN clients alone,
 * medians ordering infinities, quantisation unbiased on average. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

static fp_tensor *mk(fp_ctx *ctx, fp_dtype dt, int ndim, int64_t a, int64_t b)
{
    int64_t shp[2] = {a, b};
    fp_tensor *t = NULL;
    CHECK_OK(fp_tensor_new(&t, ctx, dt, ndim, shp));
    return t;
}

static void shapes(fp_ctx *ctx, fp_stream *s)
{
    fp_tensor *X = mk(ctx, FP_F32, 2, 4, 10), *Xu = mk(ctx, FP_U32, 2, 4, 10), *x1 = mk(ctx, FP_F32, 1, 10, 0);
    fp_tensor *v9 = mk(ctx, FP_F32, 1, 9, 0), *w4 = mk(ctx, FP_F32, 1, 4, 0), *w3 = mk(ctx, FP_F32, 1, 3, 0);
    fp_tensor *u10 = mk(ctx, FP_U32, 1, 10, 0), *X200 = mk(ctx, FP_F32, 2, 200, 3), *o3 = mk(ctx, FP_F32, 1, 3, 0);
    fp_tensor *work = mk(ctx, FP_F32, 1, 1, 0);
    fp_agg_qparams qp = {.clip = 1, .scale_bits = 8};
    CHECK_ERR(fp_agg_wsum(s, v9, X, w4, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_wsum(s, x1, X, w3, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_wsum(s, x1, Xu, w4, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_wsum(s, x1, x1, w4, 0), FP_ESHAPE); /* X must be 2-D */
    CHECK_ERR(fp_agg_axpy(s, v9, x1, 1.0f), FP_ESHAPE);
    CHECK_ERR(fp_agg_ring_sum(s, x1, Xu, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_ring_sum(s, u10, X, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_ring_add(s, u10, x1), FP_ESHAPE);
    CHECK_ERR(fp_agg_ring_sub(s, x1, u10), FP_ESHAPE);
    CHECK_ERR(fp_agg_quantize(s, u10, v9, &qp), FP_ESHAPE);
    CHECK_ERR(fp_agg_quantize(s, x1, x1, &qp), FP_ESHAPE);
    qp.clip = -1;
    CHECK_ERR(fp_agg_quantize(s, u10, x1, &qp), FP_EINVAL);
    CHECK_ERR(fp_agg_dequantize(s, v9, u10, 8, 1.0f), FP_ESHAPE);
    CHECK_ERR(fp_agg_dequantize(s, x1, u10, 31, 1.0f), FP_EINVAL);
    CHECK_ERR(fp_agg_norms(s, w3, X, work), FP_ESHAPE);
    CHECK_ERR(fp_agg_norms(s, w4, X, work), FP_ESHAPE); /* work too small */
    CHECK_ERR(fp_agg_norms(s, w4, X, NULL), FP_ESHAPE);
    CHECK_ERR(fp_agg_clip(s, X, w3, 1.0f), FP_ESHAPE);
    CHECK_ERR(fp_agg_clip(s, X, w4, 0.0f), FP_EINVAL);
    CHECK_ERR(fp_agg_median(s, v9, X, NULL), FP_ESHAPE);
    CHECK_ERR(fp_agg_trimmed_mean(s, x1, X, 2, NULL), FP_EINVAL);
    CHECK_ERR(fp_agg_ties_trim(s, X, w3), FP_ESHAPE);
    CHECK_ERR(fp_agg_ties_masked(s, x1, v9, X, x1, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_ties_masked(s, x1, x1, X, v9, 0), FP_ESHAPE);
    CHECK_ERR(fp_agg_ties_mean(s, x1, x1, v9), FP_ESHAPE);
    CHECK_ERR(fp_agg_wsum(NULL, x1, X, w4, 0), FP_EINVAL);
    CHECK_ERR(fp_agg_wsum(s, x1, NULL, w4, 0), FP_EINVAL);
    fp_tensor *all[] = {X, Xu, x1, v9, w4, w3, u10, X200, o3, work};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        fp_tensor_free(all[i]);
}

static void nonfinite(fp_ctx *ctx, fp_stream *s)
{
    /* 3 clients x 1001: client 1 has a NaN, client 2 an Inf */
    const int64_t K = 3, D = 1001;
    float *X = malloc(K * D * 4);
    for (int64_t i = 0; i < K * D; i++)
        X[i] = 0.01f * (float)((i % 17) - 8);
    X[1 * D + 500] = NAN;
    X[2 * D + 3] = INFINITY;
    fp_tensor *tX = mk(ctx, FP_F32, 2, K, D), *tn = mk(ctx, FP_F32, 1, K, 0), *to = mk(ctx, FP_F32, 1, D, 0);
    fp_tensor *tw = mk(ctx, FP_F32, 1, fp_agg_norms_worksize(ctx, K, D), 0);
    CHECK_OK(fp_tensor_upload(tX, X, K * D * 4));
    CHECK_OK(fp_agg_norms(s, tn, tX, tw));
    CHECK_OK(fp_stream_run(s));
    printf("  variant norms=%s\n", fp_agg_last_variant());
    float n[3], r[3];
    CHECK_OK(fp_tensor_download(n, sizeof n, tn));
    fp_agg_norms_ref(r, X, K, D);
    CHECKF(isfinite(n[0]) && fabsf(n[0] - r[0]) <= 1e-6f * r[0], "norm %g vs %g", n[0], r[0]);
    CHECKF(isnan(n[1]), "NaN client's norm is %g", n[1]);
    CHECKF(isinf(n[2]) && n[2] > 0, "Inf client's norm is %g", n[2]);
    /* clip to half of client 0's norm: client 0 scaled, NaN client untouched, Inf client -> c/Inf = 0 scale */
    CHECK_OK(fp_agg_clip(s, tX, tn, n[0] * 0.5f));
    CHECK_OK(fp_stream_run(s));
    float *Y = malloc(K * D * 4);
    CHECK_OK(fp_tensor_download(Y, K * D * 4, tX));
    CHECKF(fabsf(Y[7] - 0.5f * X[7]) <= 1e-6f * fabsf(X[7]), "clipped %g vs %g", Y[7], X[7]);
    CHECK(isnan(Y[D + 500]) && Y[D + 7] == X[D + 7]);
    /* median with infinities: column 3 = {x, x', +Inf} with K = 3 -> the larger finite value */
    CHECK_OK(fp_tensor_upload(tX, X, K * D * 4));
    CHECK_OK(fp_agg_median(s, to, tX, NULL));
    CHECK_OK(fp_stream_run(s));
    printf("  variant median=%s\n", fp_agg_last_variant());
    float *o = malloc(D * 4), *ro = malloc(D * 4);
    CHECK_OK(fp_tensor_download(o, D * 4, to));
    fp_agg_median_ref(ro, X, K, D);
    CHECK(o[3] == ro[3] && isfinite(o[3]));
    int same = 1;
    for (int64_t d = 0; d < D; d++)
        same &= d == 500 || o[d] == ro[d]; /* coordinate 500 has a NaN: unspecified */
    CHECK(same);
    free(X);
    free(Y);
    free(o);
    free(ro);
    fp_tensor_free(tX);
    fp_tensor_free(tn);
    fp_tensor_free(to);
    fp_tensor_free(tw);
}

static void many_clients(fp_ctx *ctx, fp_stream *s)
{
    /* K = 200 clients (radix select, no limit on K), with ties and infinities */
    const int64_t K = 200, D = 37;
    float *X = malloc(K * D * 4), *o = malloc(D * 4), *r = malloc(D * 4);
    for (int64_t i = 0; i < K * D; i++)
        X[i] = (float)((int)(fp_test_u32() % 21) - 10) * 0.25f; /* many equal values */
    X[5] = INFINITY;
    X[D + 5] = -INFINITY;
    fp_tensor *tX = mk(ctx, FP_F32, 2, K, D), *to = mk(ctx, FP_F32, 1, D, 0);
    CHECK_OK(fp_tensor_upload(tX, X, K * D * 4));
    for (uint32_t b = 0; b < 100; b += 33) {
        CHECK_OK(fp_agg_trimmed_mean(s, to, tX, b, NULL));
        CHECK_OK(fp_stream_run(s));
        CHECK_OK(fp_tensor_download(o, D * 4, to));
        fp_agg_trimmed_mean_ref(r, X, K, D, b);
        int ok = 1;
        for (int64_t d = 0; d < D; d++)
            ok &= b == 0 && d == 5 ? isnan(o[d]) == isnan(r[d]) : fabsf(o[d] - r[d]) <= 1e-6f * (1 + fabsf(r[d]));
        CHECKF(ok, "trimmed mean K=200 b=%u", b);
    }
    CHECK_OK(fp_agg_median(s, to, tX, NULL));
    CHECK_OK(fp_stream_run(s));
    printf("  variant median(K=200)=%s\n", fp_agg_last_variant());
    CHECK_OK(fp_tensor_download(o, D * 4, to));
    fp_agg_median_ref(r, X, K, D);
    CHECK(!memcmp(o, r, D * 4));
    free(X);
    free(o);
    free(r);
    fp_tensor_free(tX);
    fp_tensor_free(to);
}

static void unbiased(fp_ctx *ctx, fp_stream *s)
{
    /* the device's quantisation of one value repeated n times averages to it */
    const int64_t n = 65537;
    float *x = malloc(n * 4);
    uint32_t *q = malloc(n * 4);
    fp_tensor *tx = mk(ctx, FP_F32, 1, n, 0), *tq = mk(ctx, FP_U32, 1, n, 0);
    const float vals[3] = {0.3f, -0.7f, 0.001f};
    for (int v = 0; v < 3; v++) {
        for (int64_t i = 0; i < n; i++)
            x[i] = vals[v];
        CHECK_OK(fp_tensor_upload(tx, x, n * 4));
        fp_agg_qparams p = {.clip = 1.0f, .scale_bits = 0, .seed = 77 + (uint64_t)v, .index0 = 0};
        CHECK_OK(fp_agg_quantize(s, tq, tx, &p));
        CHECK_OK(fp_stream_run(s));
        CHECK_OK(fp_tensor_download(q, n * 4, tq));
        double m = 0;
        for (int64_t i = 0; i < n; i++)
            m += (int32_t)q[i];
        m /= (double)n;
        double fr = vals[v] - floor(vals[v]), sd = sqrt(fr * (1 - fr) / (double)n);
        CHECKF(fabs(m - vals[v]) < 5 * sd + 1e-6, "device mean %g for %g (sd %g)", m, (double)vals[v], sd);
    }
    free(x);
    free(q);
    fp_tensor_free(tx);
    fp_tensor_free(tq);
}

int main(void)
{
    const char *profiles[16] = {""};
    int np = 1;
    for (int i = 0; fp_overlay_builtin_names[i] && np < 16; i++)
        profiles[np++] = fp_overlay_builtin_names[i];
    for (int i = 0; i < np; i++) {
        fp_ctx *ctx = fp_test_ctx(profiles[i]);
        fp_stream *s = NULL;
        CHECK_OK(fp_stream_new(&s, ctx));
        if (s) {
            shapes(ctx, s);
            nonfinite(ctx, s);
            many_clients(ctx, s);
            unbiased(ctx, s);
        }
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_agg_errors");
}
