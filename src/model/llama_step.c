/* Forward and backward of the device transformer, recorded into one stream
 * (model.h). Full fine-tuning: gradients of every parameter; LoRA: gradients
 * of the adapters only, the base frozen. Gradients are accumulated (+=). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "llama_internal.h"

enum { TQ = 0, TK, TV, TO, TG, TU, TD };

#define TRY(x)                                                                                    \
    do {                                                                                          \
        int rc_ = (x);                                                                            \
        if (rc_)                                                                                  \
            return rc_;                                                                           \
    } while (0)

static fp_tensor *PV(fp_model *m, int i) { return i >= 0 ? m->p[i].view : NULL; }
static fp_tensor *GV(fp_model *m, int i) { return (i >= 0 && !m->lora_on) ? m->p[i].gview : NULL; }
static int lora_ix(fp_model *m, int64_t l, int t) { return m->lora_on ? m->lix[l][t] : -1; }

/* y [N, out] = x W^T (+ b) (+ LoRA: u = x A^T kept for the backward, y += s u B^T).
 * Every product goes through llm_matmul, so the frozen W may be f16/bf16. */
/* the dropout scratch of the plan seen as [N, in] */
static fp_tensor *xd_for(fp_model *m, int64_t in)
{
    llm_plan *pl = &m->plan;
    return in == m->cfg.hidden ? pl->xd_C : in == m->cfg.intermediate ? pl->xd_I : pl->xd_qd;
}

int llm_lin_fwd(fp_model *m, fp_stream *s, fp_tensor *y, const fp_tensor *x, int64_t N, const fp_tensor *ones,
                int64_t l, int t, int wi, int bi, fp_tensor *u, int drop)
{
    const fp_param_info *w = &m->p[wi].info;
    int64_t out = w->rows, in = w->cols;
    int li = lora_ix(m, l, t);
    TRY(llm_matmul(s, y, x, 0, PV(m, wi), 1, N, out, in, 1.0f, 0.0f));
    if (li >= 0) {
        int64_t r = m->lc.rank;
        float sc = m->lc.alpha / (float)r;
        const fp_tensor *xa = x;
        if (drop) { /* the adapter sees dropout(x) */
            fp_tensor *xd = xd_for(m, in);
            TRY(llm_dropout(m, s, xd, x, m->plan.drop_ctr, (uint32_t)(l * LLM_NT + t)));
            xa = xd;
        }
        TRY(llm_matmul(s, u, xa, 0, m->lp[li].view, 1, N, r, in, 1.0f, 0.0f));
        TRY(llm_matmul(s, y, u, 0, m->lp[li + 1].view, 1, N, out, r, sc, 1.0f));
    }
    if (bi >= 0)
        TRY(llm_matmul(s, y, ones, 0, PV(m, bi), 0, N, out, 1, 1.0f, 1.0f));
    return 0;
}

static int lin_fwd(fp_model *m, fp_stream *s, fp_tensor *y, const fp_tensor *x, int64_t l, int t, int wi, int bi,
                   fp_tensor *u)
{
    return llm_lin_fwd(m, s, y, x, m->plan.N, m->plan.ones, l, t, wi, bi, u, m->plan.drop);
}

/* dx (= or +=, per dx_acc) dy W (+ LoRA: + s g A with g = dy B); dW, db, dA, dB += for the trained set. */
static int lin_bwd(fp_model *m, fp_stream *s, fp_tensor *dx, int dx_acc, const fp_tensor *dy, const fp_tensor *x,
                   int64_t l, int t, int wi, int bi, const fp_tensor *u)
{
    llm_plan *pl = &m->plan;
    const fp_param_info *w = &m->p[wi].info;
    int64_t out = w->rows, in = w->cols, N = pl->N;
    int li = lora_ix(m, l, t);
    TRY(llm_matmul(s, dx, dy, 0, PV(m, wi), 0, N, in, out, 1.0f, dx_acc ? 1.0f : 0.0f));
    if (li >= 0) {
        int64_t r = m->lc.rank;
        float sc = m->lc.alpha / (float)r;
        TRY(llm_matmul(s, pl->lg, dy, 0, m->lp[li + 1].view, 0, N, r, out, 1.0f, 0.0f));      /* g = dy B */
        TRY(llm_matmul(s, m->lp[li + 1].gview, dy, 1, u, 0, out, r, N, sc, 1.0f));          /* dB += s dy^T u */
        if (pl->drop) {
            /* dA += s g^T dropout(x) (the mask regenerated); dx += dropout(s g A) */
            fp_tensor *xd = xd_for(m, in);
            uint32_t salt = (uint32_t)(l * LLM_NT + t);
            TRY(llm_dropout(m, s, xd, x, pl->drop_ctr, salt));
            TRY(llm_matmul(s, m->lp[li].gview, pl->lg, 1, xd, 0, r, in, N, sc, 1.0f));
            TRY(llm_matmul(s, xd, pl->lg, 0, m->lp[li].view, 0, N, in, r, sc, 0.0f));
            TRY(llm_dropout(m, s, xd, xd, pl->drop_ctr, salt));
            TRY(fp_axpy(s, dx, 1.0f, xd));
        } else {
            TRY(llm_matmul(s, m->lp[li].gview, pl->lg, 1, x, 0, r, in, N, sc, 1.0f));       /* dA += s g^T x */
            TRY(llm_matmul(s, dx, pl->lg, 0, m->lp[li].view, 0, N, in, r, sc, 1.0f));       /* dx += s g A */
        }
    }
    fp_tensor *dW = GV(m, wi);
    if (dW)
        TRY(llm_matmul(s, dW, dy, 1, x, 0, out, in, N, 1.0f, 1.0f));
    fp_tensor *db = GV(m, bi);
    if (db)
        TRY(llm_matmul(s, db, pl->ones, 1, dy, 0, 1, out, N, 1.0f, 1.0f));
    return 0;
}

int fp_model_forward(fp_model *m, fp_stream *s, const fp_tensor *ids, const fp_tensor *targets)
{
    if (!m || !s || !ids)
        return fp_seterr(FP_EINVAL, "model forward: NULL argument");
    llm_plan *pl = &m->plan;
    if (!pl->arena)
        return fp_seterr(FP_ESTATE, "model forward: no plan (call fp_model_plan first)");
    if (ids->dtype != FP_I32 || fp_tensor_numel(ids) != pl->N)
        return fp_seterr(FP_ESHAPE, "model forward: ids must be i32 with B*T = %lld elements (plan %lld x %lld), got %s[%lld]",
                         (long long)pl->N, (long long)pl->B, (long long)pl->T, fp_dtype_name(ids->dtype),
                         (long long)fp_tensor_numel(ids));
    if (targets && (targets->dtype != FP_I32 || fp_tensor_numel(targets) != pl->N))
        return fp_seterr(FP_ESHAPE, "model forward: targets must be i32 with %lld elements, got %s[%lld]",
                         (long long)pl->N, fp_dtype_name(targets->dtype), (long long)fp_tensor_numel(targets));
    const fp_llama_config *c = &m->cfg;
    pl->have_forward = 0;
    pl->drop = pl->training == 1 && m->lora_on && m->drop_p > 0;
    if (pl->drop)
        pl->drop_ctr = m->drop_ctr++;
    fp_rope_desc rd = {.theta = c->rope_theta, .start_pos = 0};
    fp_attn_desc ad = {.scale = 0.0f, .causal = 1};
    TRY(fp_embedding_fwd(s, pl->la[0].resid, PV(m, m->embed), ids));
    for (int64_t l = 0; l < c->layers; l++) {
        llm_layer_act *A = &pl->la[l];
        const llm_layer_ix *ix = &m->L[l];
        fp_tensor *next = l + 1 < c->layers ? pl->la[l + 1].resid : pl->resid_final;
        TRY(fp_rmsnorm_fwd(s, A->a, A->rstd1, A->resid, PV(m, ix->attn_norm), c->rms_eps));
        TRY(lin_fwd(m, s, A->q, A->a, l, TQ, ix->wq, ix->bq, A->u[TQ]));
        TRY(lin_fwd(m, s, A->k, A->a, l, TK, ix->wk, ix->bk, A->u[TK]));
        TRY(lin_fwd(m, s, A->v, A->a, l, TV, ix->wv, ix->bv, A->u[TV]));
        TRY(fp_rope(s, A->q4, A->q4, &rd));
        TRY(fp_rope(s, A->k4, A->k4, &rd));
        TRY(fp_attention_forward(s, A->o4, A->lse, A->q4, A->k4, A->v4, &ad));
        TRY(lin_fwd(m, s, pl->tmp, A->o, l, TO, ix->wo, -1, A->u[TO]));
        TRY(fp_add(s, A->mid, A->resid, pl->tmp));
        TRY(fp_rmsnorm_fwd(s, A->m, A->rstd2, A->mid, PV(m, ix->mlp_norm), c->rms_eps));
        TRY(lin_fwd(m, s, A->gate, A->m, l, TG, ix->wg, -1, A->u[TG]));
        TRY(lin_fwd(m, s, A->up, A->m, l, TU, ix->wu, -1, A->u[TU]));
        TRY(fp_swiglu_fwd(s, A->h, A->gate, A->up));
        TRY(lin_fwd(m, s, pl->tmp, A->h, l, TD, ix->wd, -1, A->u[TD]));
        TRY(fp_add(s, next, A->mid, pl->tmp));
    }
    TRY(fp_rmsnorm_fwd(s, pl->f, pl->rstdf, pl->resid_final, PV(m, m->final_norm), c->rms_eps));
    TRY(llm_matmul(s, pl->logits, pl->f, 0, PV(m, m->head), 1, pl->N, c->vocab, c->hidden, 1.0f, 0.0f));
    if (targets)
        TRY(fp_softmax_ce_fwd(s, pl->losses, pl->lse_ce, pl->stats, pl->logits, targets));
    pl->ids = ids;
    pl->targets = targets;
    pl->have_forward = 1;
    pl->acts_valid = 1;
    return 0;
}

int fp_model_backward(fp_model *m, fp_stream *s, float dloss) { return fp_model_backward_ex(m, s, dloss, NULL, NULL); }

/* an extra gradient must be an f32 tensor of exactly rows x cols elements */
static int check_extra(const fp_tensor *t, int64_t rows, int64_t cols, const char *what, int64_t l)
{
    if (!t)
        return 0;
    if (t->dtype != FP_F32 || fp_tensor_numel(t) != rows * cols)
        return fp_seterr(FP_ESHAPE, "model backward: %s %lld must be f32 with %lld x %lld elements, got %s[%lld]",
                         what, (long long)l, (long long)rows, (long long)cols, fp_dtype_name(t->dtype),
                         (long long)fp_tensor_numel(t));
    return 0;
}

int fp_model_backward_ex(fp_model *m, fp_stream *s, float dloss, const fp_tensor *dlogits_extra,
                         const fp_tensor *const *dhidden_extra)
{
    if (!m || !s)
        return fp_seterr(FP_EINVAL, "model backward: NULL argument");
    llm_plan *pl = &m->plan;
    if (pl->training != 1 || !m->grad_arena)
        return fp_seterr(FP_ESTATE, "model backward: the plan was made without training = 1");
    if (!pl->have_forward || !pl->targets)
        return fp_seterr(FP_ESTATE, "model backward: record a forward with targets first");
    const fp_llama_config *c = &m->cfg;
    TRY(check_extra(dlogits_extra, pl->N, c->vocab, "dlogits_extra", 0));
    for (int64_t l = 0; dhidden_extra && l <= c->layers; l++)
        TRY(check_extra(dhidden_extra[l], pl->N, c->hidden, "dhidden_extra", l));
    fp_rope_desc rd = {.theta = c->rope_theta, .start_pos = 0};
    fp_attn_desc ad = {.scale = 0.0f, .causal = 1};
    int full = !m->lora_on;
    int64_t N = pl->N, C = c->hidden, V = c->vocab;
    /* logits -> dlogits in place */
    TRY(fp_softmax_ce_bwd(s, pl->logits, pl->logits, pl->targets, pl->lse_ce, pl->stats, dloss));
    if (dlogits_extra)
        TRY(fp_axpy(s, pl->logits, 1.0f, dlogits_extra));
    if (full)
        TRY(llm_matmul(s, m->p[m->head].gview, pl->logits, 1, pl->f, 0, V, C, N, 1.0f, 1.0f));
    TRY(llm_matmul(s, pl->tmp, pl->logits, 0, PV(m, m->head), 0, N, C, V, 1.0f, 0.0f));
    TRY(fp_rmsnorm_bwd(s, pl->dres, GV(m, m->final_norm), pl->tmp, pl->resid_final, PV(m, m->final_norm),
                       pl->rstdf, 1));
    /* dres is now d/d(final residual); after layer l's backward it is d/d(residual entering l) */
    if (dhidden_extra && dhidden_extra[c->layers])
        TRY(fp_axpy(s, pl->dres, 1.0f, dhidden_extra[c->layers]));
    for (int64_t l = c->layers - 1; l >= 0; l--) {
        llm_layer_act *A = &pl->la[l];
        const llm_layer_ix *ix = &m->L[l];
        /* MLP */
        TRY(lin_bwd(m, s, pl->dh, 0, pl->dres, A->h, l, TD, ix->wd, -1, A->u[TD]));
        TRY(fp_swiglu_bwd(s, pl->dgate, pl->dup, pl->dh, A->gate, A->up));
        TRY(lin_bwd(m, s, pl->dm, 0, pl->dgate, A->m, l, TG, ix->wg, -1, A->u[TG]));
        TRY(lin_bwd(m, s, pl->dm, 1, pl->dup, A->m, l, TU, ix->wu, -1, A->u[TU]));
        TRY(fp_rmsnorm_bwd(s, pl->dtmp, GV(m, ix->mlp_norm), pl->dm, A->mid, PV(m, ix->mlp_norm), A->rstd2, 1));
        TRY(fp_axpy(s, pl->dres, 1.0f, pl->dtmp));
        /* attention */
        TRY(lin_bwd(m, s, pl->dO, 0, pl->dres, A->o, l, TO, ix->wo, -1, A->u[TO]));
        TRY(fp_attention_backward(s, pl->dq4, pl->dk4, pl->dv4, pl->dO4, A->q4, A->k4, A->v4, A->o4, A->lse, &ad));
        TRY(fp_rope_backward(s, pl->dq4, pl->dq4, &rd));
        TRY(fp_rope_backward(s, pl->dk4, pl->dk4, &rd));
        TRY(lin_bwd(m, s, pl->dm, 0, pl->dq, A->a, l, TQ, ix->wq, ix->bq, A->u[TQ]));
        TRY(lin_bwd(m, s, pl->dm, 1, pl->dk, A->a, l, TK, ix->wk, ix->bk, A->u[TK]));
        TRY(lin_bwd(m, s, pl->dm, 1, pl->dv, A->a, l, TV, ix->wv, ix->bv, A->u[TV]));
        TRY(fp_rmsnorm_bwd(s, pl->dtmp, GV(m, ix->attn_norm), pl->dm, A->resid, PV(m, ix->attn_norm), A->rstd1, 1));
        TRY(fp_axpy(s, pl->dres, 1.0f, pl->dtmp));
        if (dhidden_extra && dhidden_extra[l])
            TRY(fp_axpy(s, pl->dres, 1.0f, dhidden_extra[l]));
    }
    if (full)
        TRY(fp_embedding_bwd(s, m->p[m->embed].gview, pl->dres, pl->ids, pl->emb_work));
    return 0;
}

int fp_model_loss(const fp_model *m, float *loss, int64_t *n_valid)
{
    if (!m || !m->plan.stats)
        return fp_seterr(FP_ESTATE, "model loss: no plan");
    float st[2];
    TRY(fp_tensor_download(st, sizeof st, m->plan.stats));
    if (loss)
        *loss = st[0];
    if (n_valid)
        *n_valid = (int64_t)st[1];
    return 0;
}

int fp_model_hidden(const fp_model *m, int64_t layer, float *out, int64_t n)
{
    if (!m || !out)
        return fp_seterr(FP_EINVAL, "model hidden: NULL argument");
    const llm_plan *pl = &m->plan;
    if (!pl->acts_valid)
        return fp_seterr(FP_ESTATE, "model hidden: no forward has run on the current plan");
    if (layer < 0 || layer > m->cfg.layers)
        return fp_seterr(FP_EINVAL, "model hidden: layer %lld outside 0..%lld", (long long)layer,
                         (long long)m->cfg.layers);
    if (layer < m->cfg.layers && !pl->training)
        return fp_seterr(FP_ESTATE, "model hidden: an inference plan keeps only the final residual (layer %lld); "
                                    "plan with training = 1 or 2 for layer %lld", (long long)m->cfg.layers,
                         (long long)layer);
    if (n != pl->N * m->cfg.hidden)
        return fp_seterr(FP_ESHAPE, "model hidden: %lld elements given, the residual has %lld x %lld", (long long)n,
                         (long long)pl->N, (long long)m->cfg.hidden);
    const fp_tensor *t = layer < m->cfg.layers ? pl->la[layer].resid : pl->resid_final;
    return fp_tensor_download(out, (size_t)n * sizeof(float), t);
}

const fp_tensor *fp_model_hidden_tensor(const fp_model *m, int64_t layer)
{
    if (!m || !m->plan.arena || layer < 0 || layer > m->cfg.layers || (layer < m->cfg.layers && !m->plan.training))
        return NULL;
    return layer < m->cfg.layers ? m->plan.la[layer].resid : m->plan.resid_final;
}

const fp_tensor *fp_model_logits(const fp_model *m) { return m ? m->plan.logits : NULL; }
const fp_tensor *fp_model_token_losses(const fp_model *m) { return m ? m->plan.losses : NULL; }

int fp_model_step_host(fp_model *m, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T, int backward,
                       float *loss)
{
    if (!m || !ids || (backward && !targets))
        return fp_seterr(FP_EINVAL, "model step: NULL argument");
    llm_plan *pl = &m->plan;
    if (!pl->arena || pl->B != B || pl->T != T)
        return fp_seterr(FP_ESTATE, "model step: the plan is for %lld x %lld, not %lld x %lld", (long long)pl->B,
                         (long long)pl->T, (long long)B, (long long)T);
    fp_tensor *tid = NULL, *ttg = NULL;
    fp_stream *s = NULL;
    int64_t n = B * T;
    int rc = fp_tensor_new(&tid, m->ctx, FP_I32, 1, &n);
    if (!rc && targets)
        rc = fp_tensor_new(&ttg, m->ctx, FP_I32, 1, &n);
    if (!rc)
        rc = fp_tensor_upload(tid, ids, (size_t)n * 4);
    if (!rc && targets)
        rc = fp_tensor_upload(ttg, targets, (size_t)n * 4);
    if (!rc && backward)
        rc = fp_model_zero_grads(m);
    if (!rc)
        rc = fp_stream_new(&s, m->ctx);
    if (!rc)
        rc = fp_model_forward(m, s, tid, ttg);
    if (!rc && backward)
        rc = fp_model_backward(m, s, 1.0f);
    if (!rc)
        rc = fp_stream_run(s);
    if (!rc && targets && loss)
        rc = fp_model_loss(m, loss, NULL);
    pl->have_forward = 0; /* the id/target tensors die here */
    pl->ids = pl->targets = NULL;
    fp_stream_free(s);
    fp_tensor_free(tid);
    fp_tensor_free(ttg);
    return rc;
}
