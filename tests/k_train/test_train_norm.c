/* RMSNorm forward/backward, SwiGLU forward/backward and the elementwise ops
 * (add, axpy, scale) against the C references on odd sizes, under the native
 * profile and every built-in overlay; finite-difference checks of the
 * references' backward against double-precision forwards. */
#include "train_common.h"

/* ---- finite differences (double forward, loss = sum(y * R)) ---------------- */

static double rms_loss(const double *x, const double *w, const float *R, int64_t rows, int64_t C, double eps)
{
    double L = 0;
    for (int64_t i = 0; i < rows; i++) {
        double s = 0;
        for (int64_t j = 0; j < C; j++)
            s += x[i * C + j] * x[i * C + j];
        double r = 1.0 / sqrt(s / C + eps);
        for (int64_t j = 0; j < C; j++)
            L += x[i * C + j] * r * w[j] * R[i * C + j];
    }
    return L;
}

static void fd_rmsnorm(void)
{
    const int64_t rows = 3, C = 7;
    const float eps = 1e-5f;
    float *x = tc_rand(rows * C, -2, 2), *w = tc_rand(C, 0.5f, 1.5f), *R = tc_rand(rows * C, -1, 1);
    float y[21], rstd[3], dx[21], dw[7];
    fp_ref_rmsnorm_fwd(y, rstd, x, w, rows, C, eps);
    fp_ref_rmsnorm_bwd(dx, dw, R, x, w, rstd, rows, C, 0);
    double xd[21], wd[7], fdx[21], fdw[7], h = 1e-5;
    for (int i = 0; i < rows * C; i++)
        xd[i] = x[i];
    for (int j = 0; j < C; j++)
        wd[j] = w[j];
    for (int i = 0; i < rows * C; i++) {
        double o = xd[i];
        xd[i] = o + h;
        double lp = rms_loss(xd, wd, R, rows, C, eps);
        xd[i] = o - h;
        double lm = rms_loss(xd, wd, R, rows, C, eps);
        xd[i] = o;
        fdx[i] = (lp - lm) / (2 * h);
    }
    for (int j = 0; j < C; j++) {
        double o = wd[j];
        wd[j] = o + h;
        double lp = rms_loss(xd, wd, R, rows, C, eps);
        wd[j] = o - h;
        double lm = rms_loss(xd, wd, R, rows, C, eps);
        wd[j] = o;
        fdw[j] = (lp - lm) / (2 * h);
    }
    tc_fd("rmsnorm ref dx", fdx, dx, rows * C, 1e-5);
    tc_fd("rmsnorm ref dw", fdw, dw, C, 1e-5);
    free(x);
    free(w);
    free(R);
}

static void fd_swiglu(void)
{
    const int n = 33;
    float *g = tc_rand(n, -4, 4), *u = tc_rand(n, -2, 2), *dh = tc_rand(n, -1, 1);
    float dg[33], du[33];
    double fdg[33], fdu[33], h = 1e-5;
    fp_ref_swiglu_bwd(dg, du, dh, g, u, n);
    for (int i = 0; i < n; i++) {
        double gi = g[i], ui = u[i];
#define SW(a, b) ((a) / (1.0 + exp(-(a))) * (b))
        fdg[i] = dh[i] * (SW(gi + h, ui) - SW(gi - h, ui)) / (2 * h);
        fdu[i] = dh[i] * (SW(gi, ui + h) - SW(gi, ui - h)) / (2 * h);
#undef SW
    }
    tc_fd("swiglu ref dgate", fdg, dg, n, 1e-5);
    tc_fd("swiglu ref dup", fdu, du, n, 1e-5);
    free(g);
    free(u);
    free(dh);
}

/* ---- device vs reference ------------------------------------------------------ */

static void rmsnorm_case(fp_ctx *ctx, fp_stream *s, int64_t rows, int64_t C)
{
    const float eps = 1e-6f;
    float *x = tc_rand(rows * C, -3, 3), *w = tc_rand(C, -1.5f, 1.5f), *dy = tc_rand(rows * C, -1, 1);
    float *dw0 = tc_rand(C, -1, 1);
    float *y = malloc(rows * C * 4), *rstd = malloc(rows * 4), *dx = malloc(rows * C * 4), *dw = malloc(C * 4);
    fp_ref_rmsnorm_fwd(y, rstd, x, w, rows, C, eps);
    memcpy(dw, dw0, C * 4);
    fp_ref_rmsnorm_bwd(dx, dw, dy, x, w, rstd, rows, C, 1);
    fp_tensor *tx = tc_f32(ctx, rows, C, x), *tw = tc_f32_1d(ctx, C, w), *tdy = tc_f32(ctx, rows, C, dy);
    fp_tensor *ty = tc_f32(ctx, rows, C, NULL), *tr = tc_f32_1d(ctx, rows, NULL), *tdx = tc_f32(ctx, rows, C, NULL);
    fp_tensor *tdw = tc_f32_1d(ctx, C, dw0);
    CHECK_OK(fp_rmsnorm_fwd(s, ty, tr, tx, tw, eps));
    char vf[64];
    snprintf(vf, sizeof vf, "%s", fp_train_last_pipeline());
    CHECK_OK(fp_rmsnorm_bwd(s, tdx, tdw, tdy, tx, tw, tr, 1));
    CHECK_OK(fp_stream_run(s));
    printf("  rmsnorm %lldx%lld [%s, %s]\n", (long long)rows, (long long)C, vf, fp_train_last_pipeline());
    float *gy = tc_down(ty), *gr = tc_down(tr), *gdx = tc_down(tdx), *gdw = tc_down(tdw);
    tc_cmp("rmsnorm y", gy, y, rows * C, 1e-7);
    tc_cmp("rmsnorm rstd", gr, rstd, rows, 1e-7);
    if (C == 1) {
        /* dx = r w dy (1 - r^2 x^2) is ~0 for C = 1 (cancellation): bound the error by the terms' scale */
        double me = fp_test_maxerr(gdx, dx, rows), sc = 0;
        for (int64_t i = 0; i < rows; i++)
            sc = fmax(sc, fabs(rstd[i] * w[0] * dy[i]));
        printf("    rmsnorm dx (C=1, cancels)          maxerr %.3g of scale %.3g\n", me, sc);
        CHECKF(me <= 1e-6 * sc, "rmsnorm dx C=1: %g vs scale %g", me, sc);
    } else {
        tc_cmp("rmsnorm dx", gdx, dx, rows * C, 1e-7);
    }
    tc_cmp("rmsnorm dw (accumulated)", gdw, dw, C, 1e-7);
    fp_tensor *ts[] = {tx, tw, tdy, ty, tr, tdx, tdw};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    float *hs[] = {x, w, dy, dw0, y, rstd, dx, dw, gy, gr, gdx, gdw};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        free(hs[i]);
}

static void swiglu_eltwise_case(fp_ctx *ctx, fp_stream *s, int64_t n)
{
    float *g = tc_rand(n, -5, 5), *u = tc_rand(n, -2, 2), *dh = tc_rand(n, -1, 1);
    float *h = malloc(n * 4), *dg = malloc(n * 4), *du = malloc(n * 4);
    fp_ref_swiglu_fwd(h, g, u, n);
    fp_ref_swiglu_bwd(dg, du, dh, g, u, n);
    fp_tensor *tg = tc_f32_1d(ctx, n, g), *tu = tc_f32_1d(ctx, n, u), *tdh = tc_f32_1d(ctx, n, dh);
    fp_tensor *th = tc_f32_1d(ctx, n, NULL), *tdg = tc_f32_1d(ctx, n, NULL), *tdu = tc_f32_1d(ctx, n, NULL);
    CHECK_OK(fp_swiglu_fwd(s, th, tg, tu));
    CHECK_OK(fp_swiglu_bwd(s, tdg, tdu, tdh, tg, tu));
    CHECK_OK(fp_stream_run(s));
    printf("  swiglu n=%lld [%s]\n", (long long)n, fp_train_last_pipeline());
    float *gh = tc_down(th), *gdg = tc_down(tdg), *gdu = tc_down(tdu);
    tc_cmp("swiglu h", gh, h, n, 1e-7);
    tc_cmp("swiglu dgate", gdg, dg, n, 1e-7);
    tc_cmp("swiglu dup", gdu, du, n, 1e-7);
    free(gh);
    free(gdg);
    free(gdu);

    /* add, axpy (residual accumulate), scale: y = g + u; y += 0.5 dh; y *= -3 */
    float *ref = malloc(n * 4);
    for (int64_t i = 0; i < n; i++)
        ref[i] = ((g[i] + u[i]) + 0.5f * dh[i]) * -3.0f;
    CHECK_OK(fp_add(s, th, tg, tu));
    CHECK_OK(fp_axpy(s, th, 0.5f, tdh));
    CHECK_OK(fp_scale(s, th, -3.0f));
    CHECK_OK(fp_stream_run(s));
    gh = tc_down(th);
    tc_cmp("add + axpy + scale", gh, ref, n, 1e-12);
    free(gh);
    free(ref);
    fp_tensor *ts[] = {tg, tu, tdh, th, tdg, tdu};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    free(g);
    free(u);
    free(dh);
    free(h);
    free(dg);
    free(du);
}

static void errors(fp_ctx *ctx, fp_stream *s)
{
    fp_tensor *x = tc_f32(ctx, 3, 7, NULL), *w = tc_f32_1d(ctx, 6, NULL), *r = tc_f32_1d(ctx, 3, NULL);
    fp_tensor *y = tc_f32(ctx, 3, 7, NULL), *w7 = tc_f32_1d(ctx, 7, NULL), *r2 = tc_f32_1d(ctx, 2, NULL);
    int64_t sh = 21;
    fp_tensor *xi = tc_new(ctx, FP_I32, 1, &sh, NULL);
    CHECK_ERR(fp_rmsnorm_fwd(s, y, r, x, w, 1e-5f), FP_ESHAPE);
    CHECK_ERR(fp_rmsnorm_fwd(s, y, r2, x, w7, 1e-5f), FP_ESHAPE);
    CHECK_ERR(fp_rmsnorm_bwd(s, y, w, y, x, w7, r, 0), FP_ESHAPE);
    CHECK_ERR(fp_swiglu_fwd(s, y, x, w7), FP_ESHAPE);
    CHECK_ERR(fp_swiglu_fwd(s, y, xi, x), FP_ESHAPE);
    CHECK_ERR(fp_add(s, y, x, w), FP_ESHAPE);
    CHECK_ERR(fp_axpy(s, y, 1.0f, r), FP_ESHAPE);
    CHECK_ERR(fp_scale(s, xi, 1.0f), FP_ESHAPE);
    fp_tensor *ts[] = {x, w, r, y, w7, r2, xi};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
}

int main(void)
{
    fp_test_seed(11);
    fd_rmsnorm();
    fd_swiglu();
    static const int64_t cases[][2] = {{1, 1}, {3, 7}, {5, 64}, {2, 1000}, {2, 2048}, {33, 513}};
    for (int pi = 0; tc_profile(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(tc_profile(pi));
        fp_stream *s;
        CHECK_OK(fp_stream_new(&s, ctx));
        /* automatic choice, then each reduction variant forced */
        static const char *modes[] = {NULL, "sg", "sh", "rs"};
        for (int m = 0; m < 4; m++) {
            CHECK_OK(fp_train_force_reduce(modes[m]));
            printf(" reduction variant: %s\n", modes[m] ? modes[m] : "auto");
            for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
                if (m == 0 || c % 2 == 1 || c == 4)
                    rmsnorm_case(ctx, s, cases[c][0], cases[c][1]);
        }
        CHECK_OK(fp_train_force_reduce(NULL));
        CHECK_ERR(fp_train_force_reduce("bogus"), FP_EINVAL);
        swiglu_eltwise_case(ctx, s, 1);
        swiglu_eltwise_case(ctx, s, 1001);
        if (pi == 0)
            errors(ctx, s);
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_train_norm");
}
