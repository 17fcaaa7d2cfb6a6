/* Distillation: the host KD and hidden-state losses against their
 * definitions and finite differences; fp_model_backward_ex's extra gradients
 * (on the logits and on residuals) against central differences of the whole
 * objective through the device forward; and a few distillation steps on a
 * tiny model lower the KD objective on a fixed batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/engine_fixture.h"
#include "proxy_fixture.h"

static void host_losses(void)
{
    enum { n = 3, V = 5 };
    float s[n * V], t[n * V], g[n * V];
    for (int i = 0; i < n * V; i++) {
        s[i] = 2.0f * fp_test_normal();
        t[i] = 2.0f * fp_test_normal();
    }
    const float T = 1.7f;
    /* the definition, written out: T^2 mean_rows sum_v p_t (log p_t - log p_s) */
    double want = 0;
    for (int r = 0; r < n; r++) {
        double zs = 0, zt = 0;
        for (int v = 0; v < V; v++) {
            zs += exp(s[r * V + v] / (double)T);
            zt += exp(t[r * V + v] / (double)T);
        }
        for (int v = 0; v < V; v++) {
            double pt = exp(t[r * V + v] / (double)T) / zt, ps = exp(s[r * V + v] / (double)T) / zs;
            want += pt * log(pt / ps);
        }
    }
    want *= (double)T * T / n;
    double got = fp_proxy_kd_loss(g, s, t, n, V, T, 1.0f);
    CHECKF(fabs(got - want) < 1e-12 * fmax(1.0, want), "KD %.15g, definition %.15g", got, want);
    CHECK(fp_proxy_kd_loss(NULL, t, t, n, V, T, 1.0f) == 0.0);
    /* gradient: central differences (float inputs, h = 1e-2) */
    for (int i = 0; i < n * V; i++) {
        float keep = s[i];
        s[i] = keep + 1e-2f;
        double up = fp_proxy_kd_loss(NULL, s, t, n, V, T, 1.0f);
        s[i] = keep - 1e-2f;
        double dn = fp_proxy_kd_loss(NULL, s, t, n, V, T, 1.0f);
        s[i] = keep;
        double fd = (up - dn) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f));
        CHECKF(fabs(fd - g[i]) < 1e-4, "KD gradient %d: %g, finite difference %g", i, (double)g[i], fd);
    }
    /* scale multiplies the gradient only */
    float g2[n * V];
    CHECK(fp_proxy_kd_loss(g2, s, t, n, V, T, 3.0f) == got);
    CHECK(fabsf(g2[4] - 3.0f * g[4]) <= 1e-6f * fabsf(g2[4]));
    /* hidden NMSE */
    double num = 0, den = 0;
    for (int i = 0; i < n * V; i++) {
        num += ((double)s[i] - t[i]) * ((double)s[i] - t[i]);
        den += (double)t[i] * t[i];
    }
    got = fp_proxy_hidden_loss(g, s, t, n * V, 1.0f);
    CHECK(fabs(got - num / den) < 1e-14);
    for (int i = 0; i < n * V; i += 3) {
        float keep = s[i];
        s[i] = keep + 1e-2f;
        double up = fp_proxy_hidden_loss(NULL, s, t, n * V, 1.0f);
        s[i] = keep - 1e-2f;
        double dn = fp_proxy_hidden_loss(NULL, s, t, n * V, 1.0f);
        s[i] = keep;
        double fd = (up - dn) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f));
        CHECKF(fabs(fd - g[i]) < 1e-5, "hidden gradient %d: %g, finite difference %g", i, (double)g[i], fd);
    }
}

/* ---- backward_ex on the device ---------------------------------------------- */

enum { BB = 1, TT = 5, NN = BB * TT };
static const fp_llama_config GC = {.hidden = 12, .layers = 2, .heads = 3, .kv_heads = 1, .head_dim = 4,
                                   .intermediate = 16, .vocab = 17, .rms_eps = 1e-5f, .rope_theta = 10000.0f};
static const float KDW = 0.7f, HW = 0.3f, TEMP = 1.5f;

typedef struct objective {
    int32_t ids[NN], tg[NN];
    float tl[NN * 17];            /* fixed "teacher" logits */
    float ht[2][NN * 12];         /* fixed targets for the residuals entering layer 1 and the final one */
} objective;

/* J = LM + KDW KD(logits, tl) + HW (NMSE(h_1, ht0) + NMSE(h_L, ht1)); gradients of the extras into the tensors */
static double eval_J(fp_model *m, const objective *ob, fp_tensor *dlog, fp_tensor *dh1, fp_tensor *dhL)
{
    float loss = 0;
    CHECK_OK(fp_model_step_host(m, ob->ids, ob->tg, BB, TT, 0, &loss));
    float lg[NN * 17], h[NN * 12], g[NN * 17], gh[NN * 12];
    CHECK_OK(fp_tensor_download(lg, sizeof lg, fp_model_logits(m)));
    double J = loss + KDW * fp_proxy_kd_loss(g, lg, ob->tl, NN, 17, TEMP, KDW);
    if (dlog)
        CHECK_OK(fp_tensor_upload(dlog, g, sizeof g));
    CHECK_OK(fp_model_hidden(m, 1, h, NN * 12));
    J += HW * fp_proxy_hidden_loss(gh, h, ob->ht[0], NN * 12, HW);
    if (dh1)
        CHECK_OK(fp_tensor_upload(dh1, gh, sizeof gh));
    CHECK_OK(fp_model_hidden(m, 2, h, NN * 12));
    J += HW * fp_proxy_hidden_loss(gh, h, ob->ht[1], NN * 12, HW);
    if (dhL)
        CHECK_OK(fp_tensor_upload(dhL, gh, sizeof gh));
    return J;
}

static void backward_ex_fd(fp_ctx *ctx)
{
    int64_t np = fp_llama_param_count(&GC);
    float *p = malloc((size_t)np * sizeof *p), *g = malloc((size_t)np * sizeof *g);
    double *pd = malloc((size_t)np * sizeof *pd);
    eng_random_params(&GC, p, pd, np);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &GC));
    CHECK_OK(fp_model_upload(m, 0, p, np));
    CHECK_OK(fp_model_plan(m, BB, TT, FP_PLAN_TRAINING, 0));
    objective ob;
    for (int i = 0; i < NN; i++) {
        ob.ids[i] = (int32_t)(fp_test_u32() % 17);
        ob.tg[i] = (int32_t)(fp_test_u32() % 17);
    }
    for (int i = 0; i < NN * 17; i++)
        ob.tl[i] = 2.0f * fp_test_normal();
    for (int i = 0; i < NN * 12; i++) {
        ob.ht[0][i] = fp_test_normal();
        ob.ht[1][i] = fp_test_normal();
    }
    int64_t nv = NN * 17, nc = NN * 12;
    fp_tensor *dlog = NULL, *dh[3] = {NULL, NULL, NULL};
    CHECK_OK(fp_tensor_new(&dlog, ctx, FP_F32, 1, &nv));
    CHECK_OK(fp_tensor_new(&dh[1], ctx, FP_F32, 1, &nc));
    CHECK_OK(fp_tensor_new(&dh[2], ctx, FP_F32, 1, &nc));
    /* analytic: forward, host extras, backward_ex */
    fp_tensor *tid = NULL, *ttg = NULL;
    int64_t n = NN;
    CHECK_OK(fp_tensor_new(&tid, ctx, FP_I32, 1, &n));
    CHECK_OK(fp_tensor_new(&ttg, ctx, FP_I32, 1, &n));
    CHECK_OK(fp_tensor_upload(tid, ob.ids, sizeof ob.ids));
    CHECK_OK(fp_tensor_upload(ttg, ob.tg, sizeof ob.tg));
    fp_stream *s = NULL;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_model_forward(m, s, tid, ttg));
    CHECK_OK(fp_stream_run(s));
    fp_stream_free(s);
    /* eval_J's own forward recomputes the same values; it fills the extras */
    (void)eval_J(m, &ob, dlog, dh[1], dh[2]);
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_model_forward(m, s, tid, ttg));
    CHECK_OK(fp_model_zero_grads(m));
    const fp_tensor *const dhx[3] = {NULL, dh[1], dh[2]};
    CHECK_OK(fp_model_backward_ex(m, s, 1.0f, dlog, dhx));
    CHECK_OK(fp_stream_run(s));
    fp_stream_free(s);
    CHECK_OK(fp_model_download_grads(m, g, np));
    /* shape errors are refused */
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_model_forward(m, s, tid, ttg));
    CHECK_ERR(fp_model_backward_ex(m, s, 1.0f, dh[1], NULL), FP_ESHAPE);
    const fp_tensor *const badh[3] = {NULL, dlog, NULL};
    CHECK_ERR(fp_model_backward_ex(m, s, 1.0f, NULL, badh), FP_ESHAPE);
    fp_stream_free(s);
    /* central differences on a spread of parameters, each tensor's largest-gradient entry */
    int checked = 0;
    for (int ti = 0; ti < fp_model_tensor_count(m, 0); ti++) {
        fp_param_info pi;
        CHECK_OK(fp_model_tensor_info(m, 0, ti, &pi));
        int64_t best = pi.offset;
        for (int64_t j = pi.offset; j < pi.offset + pi.numel; j++)
            if (fabsf(g[j]) > fabsf(g[best]))
                best = j;
        float keep = p[best];
        const float h = 1e-2f;
        p[best] = keep + h;
        CHECK_OK(fp_model_upload(m, 0, p, np));
        double up = eval_J(m, &ob, NULL, NULL, NULL);
        p[best] = keep - h;
        CHECK_OK(fp_model_upload(m, 0, p, np));
        double dn = eval_J(m, &ob, NULL, NULL, NULL);
        p[best] = keep;
        double fd = (up - dn) / ((double)(keep + h) - (double)(keep - h));
        double rel = fabs(fd - g[best]) / (fabs(fd) + fabs(g[best]) + 1e-3);
        CHECKF(rel < 2e-2, "%s[%lld]: gradient %g, finite difference %g", pi.name, (long long)(best - pi.offset),
               (double)g[best], fd);
        checked++;
    }
    CHECK(checked == fp_model_tensor_count(m, 0));
    CHECK_OK(fp_model_upload(m, 0, p, np));
    fp_tensor_free(tid);
    fp_tensor_free(ttg);
    fp_tensor_free(dlog);
    fp_tensor_free(dh[1]);
    fp_tensor_free(dh[2]);
    fp_model_free(m);
    free(p);
    free(pd);
    free(g);
}

/* ---- a few distillation steps ------------------------------------------------- */

static double kd_on(fp_model *student, fp_model *teacher, const int32_t *ids, int64_t B, int64_t T, float temp)
{
    int64_t V = fp_model_cfg(student)->vocab, n = B * T * V;
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    CHECK_OK(fp_model_plan(teacher, B, T, FP_PLAN_INFERENCE, 0));
    CHECK_OK(fp_model_step_host(teacher, ids, NULL, B, T, 0, NULL));
    CHECK_OK(fp_tensor_download(a, (size_t)n * sizeof *a, fp_model_logits(teacher)));
    CHECK_OK(fp_model_plan(student, B, T, FP_PLAN_INFERENCE, 0));
    CHECK_OK(fp_model_step_host(student, ids, NULL, B, T, 0, NULL));
    CHECK_OK(fp_tensor_download(b, (size_t)n * sizeof *b, fp_model_logits(student)));
    double kd = fp_proxy_kd_loss(NULL, b, a, B * T, V, temp, 1.0f);
    free(a);
    free(b);
    return kd;
}

static void distill_steps(fp_ctx *ctx)
{
    pfx f;
    pfx_init(&f, "proxy_distill", 6, ctx);
    fp_model *llm = NULL, *proxy = NULL;
    CHECK_OK(fp_model_load_dir(&llm, ctx, f.llm));
    fp_proxy_map map;
    CHECK_OK(fp_proxy_select(&map, NULL, 6, 2, 2, 0, "uniform")); /* layers 0, 1, 4, 5 */
    CHECK_OK(fp_proxy_build(&proxy, llm, &map));
    char path[1400];
    snprintf(path, sizeof path, "%s/tokenizer.json", f.llm);
    fp_tokenizer *tok = NULL;
    CHECK_OK(fp_tokenizer_load(&tok, path));
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(fp_tokenizer_encode(&ids, &n, tok, PFX_TEXT, sizeof PFX_TEXT - 1, 0));
    fp_tokenizer_free(tok);
    CHECK(n > 40);
    fp_compress_opts o;
    fp_compress_opts_default(&o);
    o.distill_steps = 12;
    o.batch = 2;
    o.seq = 16;
    o.lr = 3e-3f;
    o.kd_weight = 5.0f; /* the random LLM's LM loss (~ln V) would dominate at weight 1 */
    o.quiet = 1;
    double before = kd_on(proxy, llm, ids, 2, 16, o.temperature);
    fp_proxy_distill_info info;
    CHECK_OK(fp_proxy_distill(&info, proxy, llm, &map, ids, (int64_t)n, &o));
    double after = kd_on(proxy, llm, ids, 2, 16, o.temperature);
    printf("distill: KD on a fixed batch %.4f -> %.4f after %d steps (final objective %.4f)\n", before, after,
           info.steps, info.final_loss);
    CHECK(info.steps == 12 && isfinite(info.final_loss) && info.kd_weight == 5.0f && info.temperature == 2.0f);
    CHECKF(after < 0.8 * before, "KD %g -> %g: distillation did not lower it", before, after);
    /* bad inputs */
    int32_t badv = (int32_t)f.cfg.vocab;
    ids[3] = badv;
    CHECK_ERR(fp_proxy_distill(&info, proxy, llm, &map, ids, (int64_t)n, &o), FP_EINVAL);
    CHECK_ERR(fp_proxy_distill(&info, proxy, llm, &map, ids, 10, &o), FP_EINVAL);
    CHECK_ERR(fp_proxy_distill(&info, llm, llm, &map, ids, (int64_t)n, &o), FP_EINVAL); /* map does not fit */
    free(ids);
    fp_model_free(proxy);
    fp_model_free(llm);
    pfx_done(&f);
}

int main(void)
{
    fp_test_seed(9);
    host_losses();
    fp_ctx *ctx = fp_test_ctx(NULL);
    backward_ex_fd(ctx);
    distill_steps(ctx);
    fp_test_ctx_done(ctx);
    return fp_test_report("proxy_distill");
}
