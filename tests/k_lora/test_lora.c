/* LoRA forward (two-step) and backward (dA, dB, dx without forming B A) against
 * the C references, with W in f32, f16 and bf16, on sizes that are not multiples
 * of any matmul tile, under every profile, and split along K (the GPUs' path,
 * forced here); finite differences of the reference backward against a
 * double-precision forward; shape errors. Each case names the matmul variant
 * its W product ran. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_lora.h"
#include "fedproxy/ops_train.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

static float *rnd(size_t n, float a)
{
    float *p = malloc((n ? n : 1) * 4);
    for (size_t i = 0; i < n; i++)
        p[i] = fp_test_uniform(-a, a);
    return p;
}

static fp_tensor *dev(fp_ctx *ctx, fp_dtype dt, int64_t r, int64_t c, const void *data)
{
    fp_tensor *t = NULL;
    int64_t sh[2] = {r, c};
    CHECK_OK(fp_tensor_new(&t, ctx, dt, 2, sh));
    if (!t)
        exit(1);
    if (data)
        CHECK_OK(fp_tensor_upload(t, data, t->nbytes));
    return t;
}

static float *down(const fp_tensor *t)
{
    float *h = malloc(t->nbytes);
    CHECK_OK(fp_tensor_download(h, t->nbytes, t));
    return h;
}

static void cmp(const char *what, const float *got, const float *ref, size_t n)
{
    double e = fp_test_nmse(got, ref, n), m = fp_test_maxerr(got, ref, n);
    printf("    %-12s n=%-7zu nmse %.3g maxerr %.3g\n", what, n, e, m);
    CHECKF(e <= 1e-7, "%s: nmse %g", what, e);
}

/* loss = sum(y * R) in double */
static double lora_loss(const double *x, const double *W, const double *A, const double *B, const float *R,
                        int N, int in, int out, int r, double alpha)
{
    double L = 0;
    for (int t = 0; t < N; t++)
        for (int o = 0; o < out; o++) {
            double y = 0;
            for (int i = 0; i < in; i++)
                y += x[t * in + i] * W[o * in + i];
            for (int k = 0; k < r; k++) {
                double u = 0;
                for (int i = 0; i < in; i++)
                    u += x[t * in + i] * A[k * in + i];
                y += alpha / r * u * B[o * r + k];
            }
            L += y * R[t * out + o];
        }
    return L;
}

static void fd_check(void)
{
    enum { N = 3, IN = 5, OUT = 4, R = 2 };
    const float alpha = 3.0f;
    float *x = rnd(N * IN, 1), *W = rnd(OUT * IN, 1), *A = rnd(R * IN, 1), *B = rnd(OUT * R, 1), *dy = rnd(N * OUT, 1);
    float y[N * OUT], u[N * R], dx[N * IN], dA[R * IN], dB[OUT * R];
    fp_ref_lora_fwd(y, u, x, W, FP_F32, A, B, N, IN, OUT, R, alpha);
    fp_ref_lora_bwd(dx, dA, dB, dy, x, u, W, FP_F32, A, B, N, IN, OUT, R, alpha, 0);
    double xd[N * IN], Wd[OUT * IN], Ad[R * IN], Bd[OUT * R];
    for (int i = 0; i < N * IN; i++) xd[i] = x[i];
    for (int i = 0; i < OUT * IN; i++) Wd[i] = W[i];
    for (int i = 0; i < R * IN; i++) Ad[i] = A[i];
    for (int i = 0; i < OUT * R; i++) Bd[i] = B[i];
    struct { const char *name; double *v; int n; const float *g; } ps[] = {
        {"lora ref dx", xd, N * IN, dx}, {"lora ref dA", Ad, R * IN, dA}, {"lora ref dB", Bd, OUT * R, dB}};
    for (int p = 0; p < 3; p++) {
        double fd[64], h = 1e-5, me = 0, mb = 1;
        for (int i = 0; i < ps[p].n; i++) {
            double o = ps[p].v[i];
            ps[p].v[i] = o + h;
            double lp = lora_loss(xd, Wd, Ad, Bd, dy, N, IN, OUT, R, alpha);
            ps[p].v[i] = o - h;
            double lm = lora_loss(xd, Wd, Ad, Bd, dy, N, IN, OUT, R, alpha);
            ps[p].v[i] = o;
            fd[i] = (lp - lm) / (2 * h);
            me = fmax(me, fabs(fd[i] - ps[p].g[i]));
            mb = fmax(mb, fabs(fd[i]));
        }
        printf("    fd %-12s max rel err %.3g\n", ps[p].name, me / mb);
        CHECKF(me <= 1e-5 * mb, "%s: fd error %g", ps[p].name, me);
    }
    /* the forward output itself vs the double loss's definition */
    double L = 0;
    for (int i = 0; i < N * OUT; i++)
        L += (double)y[i] * dy[i];
    CHECK(fabs(L - lora_loss(xd, Wd, Ad, Bd, dy, N, IN, OUT, R, alpha)) < 1e-4);
    free(x); free(W); free(A); free(B); free(dy);
}

/* want: the prefix the W product's variant must have ("" any, never empty) */
static void lora_case_want(fp_ctx *ctx, fp_stream *s, int64_t N, int64_t in, int64_t out, int64_t r, fp_dtype wt,
                           const char *want)
{
    const float alpha = 2.0f * (float)r;
    float *x = rnd(N * in, 1), *Wf = rnd(out * in, 0.5f), *A = rnd(r * in, 0.5f), *B = rnd(out * r, 0.5f);
    float *dy = rnd(N * out, 1), *dA0 = rnd(r * in, 1), *dB0 = rnd(out * r, 1);
    void *W = Wf;
    uint16_t *W16 = NULL;
    if (wt != FP_F32) {
        W16 = malloc(out * in * 2);
        fp_ref_convert(W16, wt, Wf, FP_F32, out * in);
        W = W16;
    }
    float *y = malloc(N * out * 4), *u = malloc(N * r * 4), *dx = malloc(N * in * 4);
    float *dA = malloc(r * in * 4), *dB = malloc(out * r * 4);
    fp_ref_lora_fwd(y, u, x, W, wt, A, B, N, in, out, r, alpha);
    memcpy(dA, dA0, r * in * 4);
    memcpy(dB, dB0, out * r * 4);
    fp_ref_lora_bwd(dx, dA, dB, dy, x, u, W, wt, A, B, N, in, out, r, alpha, 1);
    fp_tensor *tx = dev(ctx, FP_F32, N, in, x), *tW = dev(ctx, wt, out, in, W), *tA = dev(ctx, FP_F32, r, in, A);
    fp_tensor *tB = dev(ctx, FP_F32, out, r, B), *ty = dev(ctx, FP_F32, N, out, NULL), *tu = dev(ctx, FP_F32, N, r, NULL);
    fp_tensor *tdy = dev(ctx, FP_F32, N, out, dy), *tdx = dev(ctx, FP_F32, N, in, NULL);
    fp_tensor *tdA = dev(ctx, FP_F32, r, in, dA0), *tdB = dev(ctx, FP_F32, out, r, dB0), *tg = dev(ctx, FP_F32, N, r, NULL);
    CHECK_OK(fp_lora_fwd(s, ty, tu, tx, tW, tA, tB, alpha));
    CHECK_OK(fp_lora_bwd(s, tdx, tdA, tdB, tg, tdy, tx, tu, tW, tA, tB, alpha, 1));
    CHECK_OK(fp_stream_run(s));
    const char *ran = fp_lora_last_pipeline();
    printf("  lora N=%lld in=%lld out=%lld r=%lld W %s [%s]\n", (long long)N, (long long)in, (long long)out,
           (long long)r, fp_dtype_name(wt), ran);
    CHECKF(ran[0] && strstr(ran, want), "N=%lld: ran '%s', expected a matmul variant with '%s'", (long long)N, ran,
           want);
    float *gy = down(ty), *gu = down(tu), *gdx = down(tdx), *gdA = down(tdA), *gdB = down(tdB);
    cmp("y", gy, y, N * out);
    cmp("u", gu, u, N * r);
    cmp("dx", gdx, dx, N * in);
    cmp("dA (acc)", gdA, dA, r * in);
    cmp("dB (acc)", gdB, dB, out * r);
    if (N == 7 && wt == FP_F32) {
        CHECK_ERR(fp_lora_fwd(s, ty, tu, tx, tW, tB, tA, alpha), FP_ESHAPE);
        CHECK_ERR(fp_lora_fwd(s, tu, ty, tx, tW, tA, tB, alpha), FP_ESHAPE);
        CHECK_ERR(fp_lora_bwd(s, tdx, tdB, tdA, tg, tdy, tx, tu, tW, tA, tB, alpha, 0), FP_ESHAPE);
        CHECK_ERR(fp_lora_bwd(s, tdx, tdA, tdB, tg, tx, tx, tu, tW, tA, tB, alpha, 0), FP_ESHAPE);
        /* dx may be skipped */
        CHECK_OK(fp_lora_bwd(s, NULL, tdA, tdB, tg, tdy, tx, tu, tW, tA, tB, alpha, 0));
        CHECK_OK(fp_stream_run(s));
    }
    fp_tensor *ts[] = {tx, tW, tA, tB, ty, tu, tdy, tdx, tdA, tdB, tg};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    float *hs[] = {x, Wf, A, B, dy, dA0, dB0, y, u, dx, dA, dB, gy, gu, gdx, gdA, gdB};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        free(hs[i]);
    free(W16);
}

static void lora_case(fp_ctx *ctx, fp_stream *s, int64_t N, int64_t in, int64_t out, int64_t r, fp_dtype wt)
{
    lora_case_want(ctx, s, N, in, out, r, wt, "");
}

int main(void)
{
    fp_test_seed(42);
    fd_check();
    for (int pi = 0; pi == 0 || fp_overlay_builtin_names[pi - 1]; pi++) {
        fp_ctx *ctx = fp_test_ctx(pi ? fp_overlay_builtin_names[pi - 1] : "");
        fp_stream *s;
        CHECK_OK(fp_stream_new(&s, ctx));
        lora_case(ctx, s, 1, 1, 1, 1, FP_F32);
        lora_case(ctx, s, 7, 33, 17, 3, FP_F32);
        lora_case(ctx, s, 7, 33, 17, 3, FP_F16);
        lora_case(ctx, s, 65, 100, 70, 16, FP_BF16);
        if (pi == 0) {
            lora_case(ctx, s, 33, 257, 129, 8, FP_F16);
            lora_case(ctx, s, 33, 64, 64, 16, FP_F32);
            /* split along K, as GPUs do for the rank-r products and short outputs:
             * K not a multiple of the chunk (in 257, out 129, N 33 over 3 chunks) */
            setenv("FP_MATMUL_SPLITK", "3", 1);
            lora_case_want(ctx, s, 33, 257, 129, 8, FP_F32, "+splitk3");
            lora_case_want(ctx, s, 33, 257, 129, 8, FP_BF16, "+splitk3");
            unsetenv("FP_MATMUL_SPLITK");
        }
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_lora");
}
