/* Block influence against the independent double-precision reference: the
 * reference has no hidden-state output, so the residual entering layer l is
 * read from a reference model truncated to its first l layers whose final
 * norm weight is 1 and whose LM head is the identity on the first C logits:
 * those logits are x / rms(x), the residual up to a positive factor per token
 * — cosines are unchanged by it. fp_model_hidden is compared with the same
 * normalised residuals, and the scores with 1 - mean cos computed here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/engine_fixture.h"
#include "fedproxy/proxy.h"

enum { L = 4, B = 2, T = 7, N = B * T };

static const fp_llama_config CFG = {.hidden = 16, .layers = L, .heads = 4, .kv_heads = 2, .head_dim = 4,
                                    .intermediate = 24, .vocab = 40, .rms_eps = 1e-5f, .rope_theta = 10000.0f};

/* the reference's normalised residual entering layer l (l = L: the final one), [N, C] */
static void ref_resid(double *out, const double *pd, int l, const int32_t *ids)
{
    ref_cfg full = eng_ref_cfg(&CFG), tr = full;
    tr.layers = l;
    static ref_tensor_info fi[REF_MAX_TENSORS], ti[REF_MAX_TENSORS];
    int64_t nf, nt;
    int cf = ref_param_layout(&full, fi, REF_MAX_TENSORS, &nf);
    int ct = ref_param_layout(&tr, ti, REF_MAX_TENSORS, &nt);
    double *tp = calloc((size_t)nt, sizeof *tp);
    for (int i = 0; i < ct; i++)
        for (int j = 0; j < cf; j++)
            if (!strcmp(ti[i].name, fi[j].name))
                memcpy(tp + ti[i].offset, pd + fi[j].offset, (size_t)ti[i].numel * sizeof *tp);
    int32_t tg[N];
    for (int i = 0; i < N; i++)
        tg[i] = -100;
    double *lg = malloc((size_t)N * CFG.vocab * sizeof *lg);
    ref_llama_run(&tr, tp, NULL, NULL, ids, tg, B, T, lg, NULL, NULL);
    for (int n = 0; n < N; n++)
        memcpy(out + n * CFG.hidden, lg + n * CFG.vocab, (size_t)CFG.hidden * sizeof *out);
    free(lg);
    free(tp);
}

static double cosd(const double *a, const double *b, int64_t C)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t k = 0; k < C; k++) {
        ab += a[k] * b[k];
        aa += a[k] * a[k];
        bb += b[k] * b[k];
    }
    return ab / sqrt(aa * bb);
}

int main(void)
{
    fp_test_seed(21);
    fp_ctx *ctx = fp_test_ctx(NULL);
    int64_t np = fp_llama_param_count(&CFG), C = CFG.hidden;
    float *p = malloc((size_t)np * sizeof *p);
    double *pd = malloc((size_t)np * sizeof *pd);
    eng_random_params(&CFG, p, pd, np);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    /* final norm 1 and an identity head on the first C logits (see the top) */
    for (int i = 0; i < fp_model_tensor_count(m, 0); i++) {
        fp_param_info pi;
        CHECK_OK(fp_model_tensor_info(m, 0, i, &pi));
        if (!strcmp(pi.name, "model.norm.weight"))
            for (int64_t j = 0; j < pi.numel; j++)
                p[pi.offset + j] = 1.0f, pd[pi.offset + j] = 1.0;
        if (!strcmp(pi.name, "lm_head.weight"))
            for (int64_t r = 0; r < pi.rows; r++)
                for (int64_t c = 0; c < pi.cols; c++)
                    p[pi.offset + r * C + c] = (float)(r == c), pd[pi.offset + r * C + c] = (double)(r == c);
    }
    CHECK_OK(fp_model_upload(m, 0, p, np));
    int32_t ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)(fp_test_u32() % CFG.vocab);

    double scores[L];
    CHECK_OK(fp_proxy_block_influence(scores, m, ids, N, T, B));

    /* reference residuals: layer 0 is the embedding, normalised like the others */
    double *r[L + 1];
    for (int l = 0; l <= L; l++) {
        r[l] = malloc((size_t)(N * C) * sizeof *r[l]);
        if (l > 0) {
            ref_resid(r[l], pd, l, ids);
            continue;
        }
        for (int n = 0; n < N; n++) {
            const double *e = pd + ids[n] * C;
            double ms = 0;
            for (int64_t k = 0; k < C; k++)
                ms += e[k] * e[k];
            for (int64_t k = 0; k < C; k++)
                r[0][n * C + k] = e[k] / sqrt(ms / (double)C + CFG.rms_eps);
        }
    }
    /* fp_model_hidden (the last forward is the block influence's) = the reference's, normalised */
    float *h = malloc((size_t)(N * C) * sizeof *h);
    for (int l = 0; l <= L; l++) {
        CHECK_OK(fp_model_hidden(m, l, h, N * C));
        double num = 0, den = 0;
        for (int n = 0; n < N; n++) {
            double ms = 0;
            for (int64_t k = 0; k < C; k++)
                ms += (double)h[n * C + k] * h[n * C + k];
            double inv = 1.0 / sqrt(ms / (double)C + CFG.rms_eps);
            for (int64_t k = 0; k < C; k++) {
                double d = h[n * C + k] * inv - r[l][n * C + k];
                num += d * d;
                den += r[l][n * C + k] * r[l][n * C + k];
            }
        }
        CHECKF(num / den < 1e-9, "hidden %d: NMSE %g against the reference", l, num / den);
    }
    /* the scores */
    for (int l = 0; l < L; l++) {
        double cs = 0;
        for (int n = 0; n < N; n++)
            cs += cosd(r[l] + n * C, r[l + 1] + n * C, C);
        double want = 1.0 - cs / N;
        CHECKF(fabs(scores[l] - want) < 1e-5, "layer %d: block influence %.8f, reference %.8f", l, scores[l], want);
        CHECKF(want > 1e-3, "layer %d: reference influence %g too small to be a test", l, want);
    }
    /* errors: fewer tokens than a window; an inference plan has no inner residuals */
    CHECK_ERR(fp_proxy_block_influence(scores, m, ids, T - 1, T, 1), FP_EINVAL);
    int32_t badid[T];
    memcpy(badid, ids, sizeof badid);
    badid[3] = (int32_t)CFG.vocab;
    CHECK_ERR(fp_proxy_block_influence(scores, m, badid, T, T, 1), FP_EINVAL);
    CHECK_OK(fp_model_plan(m, 1, T, FP_PLAN_INFERENCE, 0));
    CHECK_OK(fp_model_step_host(m, ids, NULL, 1, T, 0, NULL));
    CHECK_ERR(fp_model_hidden(m, 1, h, T * C), FP_ESTATE);
    CHECK_OK(fp_model_hidden(m, L, h, T * C));

    for (int l = 0; l <= L; l++)
        free(r[l]);
    free(h);
    free(p);
    free(pd);
    fp_model_free(m);
    fp_test_ctx_done(ctx);
    return fp_test_report("proxy_influence");
}
