/* RoPE on the device vs the C reference (forward, backward = inverse
 * rotation, in place), and the GPU backward against central differences of
 * the reference forward, under the native profile and every built-in overlay. */
#include <math.h>

#include "attn_common.h"

typedef struct rcase {
    int ndim;
    int64_t B, T, H, D, pos0;
    float theta;
} rcase;

static void run_case(fp_ctx *ctx, const rcase *c)
{
    int64_t n = c->B * c->T * c->H * c->D;
    int64_t s4[4] = {c->B, c->T, c->H, c->D}, s3[3] = {c->T, c->H, c->D};
    const int64_t *shape = c->ndim == 4 ? s4 : s3;
    float *x = rnd(n, 1.0f), *ref = malloc(sizeof(float) * (size_t)n), *refb = malloc(sizeof(float) * (size_t)n);
    fp_rope_ref(ref, x, c->B, c->T, c->H, c->D, c->pos0, c->theta, 0);
    fp_rope_ref(refb, x, c->B, c->T, c->H, c->D, c->pos0, c->theta, 1);
    fp_tensor *tx = dev(ctx, c->ndim, shape, x), *ty = dev(ctx, c->ndim, shape, NULL);
    fp_tensor *tz = dev(ctx, c->ndim, shape, x);
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_rope_desc d = {c->theta, c->pos0};
    CHECK_OK(fp_rope(s, ty, tx, &d));
    CHECK_OK(fp_rope_backward(s, tx, tx, &d)); /* in place, after ty has read tx */
    CHECK_OK(fp_rope(s, tz, tz, &d));          /* in place forward */
    CHECK_OK(fp_stream_run(s));
    float *y = down(ty), *xb = down(tx), *z = down(tz);
    char what[160];
    snprintf(what, sizeof what, "rope B=%lld T=%lld H=%lld D=%lld pos0=%lld", (long long)c->B, (long long)c->T,
             (long long)c->H, (long long)c->D, (long long)c->pos0);
    cmp(what, y, ref, (size_t)n, 1e-9);
    cmp("rope in place", z, ref, (size_t)n, 1e-9);
    cmp("rope backward (inverse)", xb, refb, (size_t)n, 1e-9);

    /* finite differences of the reference forward, in double: d/dx sum(w * rope(x)) */
    if (n <= 512) {
        float *w = rnd(n, 1.0f);
        fp_tensor *tw = dev(ctx, c->ndim, shape, w);
        CHECK_OK(fp_rope_backward(s, tw, tw, &d));
        CHECK_OK(fp_stream_run(s));
        float *g = down(tw);
        double *x64 = malloc(sizeof(double) * (size_t)n), *y64 = malloc(sizeof(double) * (size_t)n);
        float *num = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++)
            x64[i] = x[i];
        for (int64_t i = 0; i < n; i++) {
            double keep = x64[i], lp = 0, lm = 0;
            x64[i] = keep + 1e-4;
            fp_rope_ref64(y64, x64, c->B, c->T, c->H, c->D, c->pos0, c->theta, 0);
            for (int64_t j = 0; j < n; j++)
                lp += w[j] * y64[j];
            x64[i] = keep - 1e-4;
            fp_rope_ref64(y64, x64, c->B, c->T, c->H, c->D, c->pos0, c->theta, 0);
            for (int64_t j = 0; j < n; j++)
                lm += w[j] * y64[j];
            x64[i] = keep;
            num[i] = (float)((lp - lm) / 2e-4);
        }
        cmp("rope GPU backward vs finite differences", g, num, (size_t)n, 1e-9);
        free(w), free(g), free(x64), free(y64), free(num);
        fp_tensor_free(tw);
    }
    fp_stream_free(s);
    fp_tensor_free(tx), fp_tensor_free(ty), fp_tensor_free(tz);
    free(x), free(ref), free(refb), free(y), free(xb), free(z);
}

int main(void)
{
    static const rcase cases[] = {
        {4, 2, 7, 3, 16, 0, 10000.0f},
        {3, 1, 33, 2, 40, 5, 10000.0f},
        {4, 1, 100, 1, 64, 1000, 500000.0f},
        {4, 1, 1, 1, 2, 0, 10000.0f},
        {3, 1, 3, 2, 8, 3, 10000.0f},
    };
    for (int pi = 0; profile_at(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(profile_at(pi));
        fp_test_seed(100 + (uint64_t)pi);
        printf("profile '%s': variant rope_f32 (wg 64)\n", profile_at(pi));
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_case(ctx, &cases[i]);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_attn_rope");
}
