/* Global gradient norm (two-stage, several odd-sized tensors), clipping on the
 * device, AdamW (vs the reference over several steps, and step 1 vs its closed
 * form) with and without the fused clip scale, and SGD; on a CPU device both
 * through texel reads (its default) and, with FP_TEXEL_READS=0, storage. */
#include "train_common.h"

/* the vec4 body each op family last ran (fp_train_last_pipeline) */
static char ran_norm[64], ran_adamw[64], ran_sgd[64];

static void norm_clip(fp_ctx *ctx, fp_stream *s)
{
    const int64_t sizes[] = {1, 7, 1000, 100003, 33};
    enum { K = 5 };
    float *h[K];
    fp_tensor *t[K];
    for (int k = 0; k < K; k++) {
        h[k] = tc_rand(sizes[k], -1, 1);
        t[k] = tc_f32_1d(ctx, sizes[k], h[k]);
    }
    double ref = fp_ref_grad_norm((const float *const *)h, sizes, K);
    int64_t ws = fp_grad_norm_work_size(ctx, (const fp_tensor *const *)t, K);
    fp_tensor *work = tc_f32_1d(ctx, ws, NULL), *out = tc_f32_1d(ctx, 2, NULL);
    float max_norm = (float)(ref / 4);
    CHECK_OK(fp_grad_norm(s, out, work, (const fp_tensor *const *)t, K, max_norm));
    char v[64];
    snprintf(v, sizeof v, "%s", fp_train_last_pipeline());
    snprintf(ran_norm, sizeof ran_norm, "%s", v);
    CHECK_OK(fp_grad_clip(s, t, K, out));
    CHECK_OK(fp_stream_run(s));
    float *o = tc_down(out);
    printf("  grad_norm %d tensors, %lld partials [%s]: %.9g vs %.9g (rel %.3g)\n", K, (long long)ws, v, o[0], ref,
           fabs(o[0] - ref) / ref);
    /* f32 partial sums with Kahan compensation: 1e-6 relative is the f32 floor */
    CHECKF(fabs(o[0] - ref) <= 1e-6 * ref, "norm %g vs %g", o[0], ref);
    double scale = fmin(1.0, max_norm / (ref + 1e-6));
    CHECKF(fabs(o[1] - scale) <= 1e-6 * scale, "clip scale %g vs %g", o[1], scale);
    for (int k = 0; k < K; k++) {
        float *g = tc_down(t[k]);
        float *r = malloc(sizes[k] * 4);
        for (int64_t i = 0; i < sizes[k]; i++)
            r[i] = h[k][i] * o[1];
        tc_cmp("clipped grads", g, r, sizes[k], 1e-12);
        free(g);
        free(r);
    }
    /* norm below max_norm: scale exactly 1; no tensors: norm 0 */
    CHECK_OK(fp_grad_norm(s, out, work, (const fp_tensor *const *)t, K, 1e30f));
    CHECK_OK(fp_stream_run(s));
    free(o);
    o = tc_down(out);
    CHECK(o[1] == 1.0f);
    CHECK_OK(fp_grad_norm(s, out, work, (const fp_tensor *const *)t, 0, 1.0f));
    CHECK_OK(fp_stream_run(s));
    free(o);
    o = tc_down(out);
    CHECK(o[0] == 0.0f && o[1] == 1.0f);
    fp_tensor *small = tc_f32_1d(ctx, 1, NULL);
    if (ws > 1)
        CHECK_ERR(fp_grad_norm(s, out, small, (const fp_tensor *const *)t, K, 1.0f), FP_ESHAPE);
    CHECK_ERR(fp_grad_clip(s, t, K, small), FP_ESHAPE);
    fp_tensor_free(small);
    free(o);
    for (int k = 0; k < K; k++) {
        fp_tensor_free(t[k]);
        free(h[k]);
    }
    fp_tensor_free(work);
    fp_tensor_free(out);
}

static void adamw(fp_ctx *ctx, fp_stream *s, int64_t n)
{
    fp_adamw_params hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f, .step = 1};
    float *p = tc_rand(n, -1, 1), *g = tc_rand(n, -1, 1), *zero = calloc(n, 4);
    float *rp = malloc(n * 4), *rm = calloc(n, 4), *rv = calloc(n, 4);
    memcpy(rp, p, n * 4);
    fp_tensor *tp = tc_f32_1d(ctx, n, p), *tg = tc_f32_1d(ctx, n, g), *tm = tc_f32_1d(ctx, n, zero);
    fp_tensor *tv = tc_f32_1d(ctx, n, zero), *gs = tc_f32_1d(ctx, 2, (float[2]){0, 0.5f});
    /* step 1 from m = v = 0: closed form p - lr (g/(|g| + eps) + wd p) */
    CHECK_OK(fp_adamw_step(s, tp, tg, tm, tv, &hp, NULL));
    CHECK_OK(fp_stream_run(s));
    printf("  adamw n=%lld [%s]\n", (long long)n, fp_train_last_pipeline());
    snprintf(ran_adamw, sizeof ran_adamw, "%s", fp_train_last_pipeline());
    float *gp = tc_down(tp), *cf = malloc(n * 4);
    for (int64_t i = 0; i < n; i++)
        cf[i] = (float)(p[i] - 1e-2 * ((double)g[i] / (fabs(g[i]) + 1e-8) + 0.1 * p[i]));
    tc_cmp("adamw step 1 vs closed form", gp, cf, n, 1e-7);
    fp_ref_adamw_step(rp, g, rm, rv, n, &hp, 1.0f);
    /* steps 2..5 with new gradients, the last two with a device clip scale of 0.5 */
    for (uint32_t t = 2; t <= 5; t++) {
        float *gn = tc_rand(n, -1, 1);
        CHECK_OK(fp_tensor_upload(tg, gn, n * 4));
        hp.step = t;
        CHECK_OK(fp_adamw_step(s, tp, tg, tm, tv, &hp, t >= 4 ? gs : NULL));
        CHECK_OK(fp_stream_run(s));
        fp_ref_adamw_step(rp, gn, rm, rv, n, &hp, t >= 4 ? 0.5f : 1.0f);
        free(gn);
    }
    free(gp);
    gp = tc_down(tp);
    float *gm = tc_down(tm), *gv = tc_down(tv);
    tc_cmp("adamw p after 5 steps", gp, rp, n, 1e-7);
    tc_cmp("adamw m", gm, rm, n, 1e-7);
    tc_cmp("adamw v", gv, rv, n, 1e-7);
    /* SGD with the clip scale */
    memcpy(rp, gp, n * 4);
    CHECK_OK(fp_sgd_step(s, tp, tg, 0.1f, 0.01f, gs));
    CHECK_OK(fp_stream_run(s));
    snprintf(ran_sgd, sizeof ran_sgd, "%s", fp_train_last_pipeline());
    float *gg = tc_down(tg);
    fp_ref_sgd_step(rp, gg, n, 0.1f, 0.01f, 0.5f);
    free(gp);
    gp = tc_down(tp);
    tc_cmp("sgd p", gp, rp, n, 1e-7);
    hp.step = 0;
    CHECK_ERR(fp_adamw_step(s, tp, tg, tm, tv, &hp, NULL), FP_EINVAL);
    hp.step = 1;
    CHECK_ERR(fp_adamw_step(s, tp, tg, tm, tv, &hp, tg), FP_ESHAPE);
    fp_tensor *wrong = tc_f32_1d(ctx, n + 1, NULL);
    CHECK_ERR(fp_adamw_step(s, tp, tg, wrong, tv, &hp, NULL), FP_ESHAPE);
    CHECK_ERR(fp_sgd_step(s, tp, wrong, 0.1f, 0, NULL), FP_ESHAPE);
    fp_tensor *ts[] = {tp, tg, tm, tv, gs, wrong};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    float *hs[] = {p, g, zero, rp, rm, rv, gp, cf, gm, gv, gg};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        free(hs[i]);
}

int main(void)
{
    fp_test_seed(99);
    for (int pi = 0; tc_profile(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(tc_profile(pi));
        fp_stream *s;
        CHECK_OK(fp_stream_new(&s, ctx));
        norm_clip(ctx, s);
        adamw(ctx, s, 1);
        adamw(ctx, s, 1001);
        /* a CPU device reads through texels by default (fp_ops_texel_reads); once more on storage */
        const fp_profile *pf = fp_ctx_profile(ctx);
        if (pi == 0 && fp_profile_is_cpu(pf) && pf->texel_buffers && !getenv("FP_TEXEL_READS")) {
            CHECKF(strstr(ran_norm, "gradnorm_sumsq_tex_vec4") && strstr(ran_adamw, "adamw_tex_vec4") &&
                       strstr(ran_sgd, "sgd_gs_tex_vec4"),
                   "CPU device: texel bodies expected, ran %s, %s, %s", ran_norm, ran_adamw, ran_sgd);
            setenv("FP_TEXEL_READS", "0", 1);
            norm_clip(ctx, s);
            adamw(ctx, s, 1001);
            CHECKF(strstr(ran_norm, "gradnorm_sumsq_vec4") && strstr(ran_adamw, "adamw_vec4") &&
                       strstr(ran_sgd, "sgd_gs_vec4"),
                   "FP_TEXEL_READS=0: storage bodies expected, ran %s, %s, %s", ran_norm, ran_adamw, ran_sgd);
            unsetenv("FP_TEXEL_READS");
        }
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_train_optim");
}
