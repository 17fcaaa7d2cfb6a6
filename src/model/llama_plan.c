/* The activation plan: every buffer a (B, T) forward and backward needs, laid
 * out once in one device allocation (views on 256-byte boundaries), sized
 * before anything is allocated and checked against the device's memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "llama_internal.h"

typedef struct cursor {
    int64_t off;      /* bytes */
    fp_tensor *arena; /* NULL: count only */
    llm_plan *pl;
    int rc;
} cursor;

static fp_tensor *take_at(cursor *c, int64_t off_bytes, fp_dtype dt, int nd, int64_t d0, int64_t d1, int64_t d2,
                          int64_t d3)
{
    if (!c->arena || c->rc)
        return NULL;
    int64_t shape[4] = {d0, d1, d2, d3};
    fp_tensor *t = NULL;
    c->rc = fp_tensor_view(&t, c->arena, off_bytes / 4, dt, nd, shape);
    if (c->rc)
        return NULL;
    llm_plan *pl = c->pl;
    if (pl->nviews == pl->cap) {
        int cap = pl->cap ? pl->cap * 2 : 64;
        fp_tensor **v = realloc(pl->views, (size_t)cap * sizeof *v);
        if (!v) {
            fp_tensor_free(t);
            c->rc = fp_seterr(FP_ENOMEM, "model plan: out of host memory");
            return NULL;
        }
        pl->views = v;
        pl->cap = cap;
    }
    pl->views[pl->nviews++] = t;
    return t;
}

static fp_tensor *take(cursor *c, fp_dtype dt, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t n = d0 * (nd > 1 ? d1 : 1) * (nd > 2 ? d2 : 1) * (nd > 3 ? d3 : 1);
    int64_t at = c->off;
    c->off += llm_align_elems(n) * 4; /* every dtype used here is 4 bytes */
    return take_at(c, at, dt, nd, d0, d1, d2, d3);
}

/* Lays out (or counts) the plan. pl receives the views when c->arena is set. */
static void layout(cursor *c, const fp_llama_config *cf, const fp_lora_config *lc, const int (*lix)[LLM_NT],
                   int64_t B, int64_t T, int training, llm_plan *pl)
{
    int64_t N = B * T, C = cf->hidden, Hq = cf->heads, Hkv = cf->kv_heads, D = cf->head_dim, I = cf->intermediate;
    int64_t qd = Hq * D, kd = Hkv * D, V = cf->vocab, r = lc ? lc->rank : 0;
    for (int64_t l = 0; l < cf->layers; l++) {
        llm_layer_act A;
        memset(&A, 0, sizeof A);
        if (!training && l > 0) {
            /* inference keeps nothing for a backward: every layer reuses layer 0's
             * buffers (the residual is updated in place: layer l's output is
             * layer l+1's input) */
            if (pl && pl->la)
                pl->la[l] = pl->la[0];
            continue;
        }
        A.resid = take(c, FP_F32, 2, N, C, 0, 0);
        A.a = take(c, FP_F32, 2, N, C, 0, 0);
        A.rstd1 = take(c, FP_F32, 1, N, 0, 0, 0);
        int64_t at = c->off;
        A.q = take(c, FP_F32, 2, N, qd, 0, 0);
        A.q4 = take_at(c, at, FP_F32, 4, B, T, Hq, D);
        at = c->off;
        A.k = take(c, FP_F32, 2, N, kd, 0, 0);
        A.k4 = take_at(c, at, FP_F32, 4, B, T, Hkv, D);
        at = c->off;
        A.v = take(c, FP_F32, 2, N, kd, 0, 0);
        A.v4 = take_at(c, at, FP_F32, 4, B, T, Hkv, D);
        at = c->off;
        A.o = take(c, FP_F32, 2, N, qd, 0, 0);
        A.o4 = take_at(c, at, FP_F32, 4, B, T, Hq, D);
        A.lse = take(c, FP_F32, 3, B, Hq, T, 0);
        A.mid = take(c, FP_F32, 2, N, C, 0, 0);
        A.m = take(c, FP_F32, 2, N, C, 0, 0);
        A.rstd2 = take(c, FP_F32, 1, N, 0, 0, 0);
        A.gate = take(c, FP_F32, 2, N, I, 0, 0);
        A.up = take(c, FP_F32, 2, N, I, 0, 0);
        A.h = take(c, FP_F32, 2, N, I, 0, 0);
        for (int t = 0; t < LLM_NT && lc; t++)
            if ((lc->targets & (1u << t)) && llm_lora_has_layer(lc, l))
                A.u[t] = take(c, FP_F32, 2, N, r, 0, 0);
        (void)lix;
        if (pl && pl->la)
            pl->la[l] = A;
    }
    fp_tensor *resid_final = take(c, FP_F32, 2, N, C, 0, 0);
    fp_tensor *f = take(c, FP_F32, 2, N, C, 0, 0);
    fp_tensor *rstdf = take(c, FP_F32, 1, N, 0, 0, 0);
    fp_tensor *logits = take(c, FP_F32, 2, N, V, 0, 0);
    fp_tensor *losses = take(c, FP_F32, 1, N, 0, 0, 0);
    fp_tensor *lse_ce = take(c, FP_F32, 1, N, 0, 0, 0);
    fp_tensor *stats = take(c, FP_F32, 1, 2, 0, 0, 0);
    fp_tensor *ones = take(c, FP_F32, 1, N, 0, 0, 0);
    fp_tensor *tmp = take(c, FP_F32, 2, N, C, 0, 0);
    if (pl) {
        pl->resid_final = resid_final;
        pl->f = f;
        pl->rstdf = rstdf;
        pl->logits = logits;
        pl->losses = losses;
        pl->lse_ce = lse_ce;
        pl->stats = stats;
        pl->ones = ones;
        pl->tmp = tmp;
    }
    if (training != 1) /* inference, or activations kept without a backward (FP_PLAN_ACTIVATIONS) */
        return;
    fp_tensor *dres = take(c, FP_F32, 2, N, C, 0, 0);
    fp_tensor *dtmp = take(c, FP_F32, 2, N, C, 0, 0);
    fp_tensor *dm = take(c, FP_F32, 2, N, C, 0, 0);
    fp_tensor *dh = take(c, FP_F32, 2, N, I, 0, 0);
    fp_tensor *dgate = take(c, FP_F32, 2, N, I, 0, 0);
    fp_tensor *dup = take(c, FP_F32, 2, N, I, 0, 0);
    int64_t at = c->off;
    fp_tensor *dO = take(c, FP_F32, 2, N, qd, 0, 0);
    fp_tensor *dO4 = take_at(c, at, FP_F32, 4, B, T, Hq, D);
    at = c->off;
    fp_tensor *dq = take(c, FP_F32, 2, N, qd, 0, 0);
    fp_tensor *dq4 = take_at(c, at, FP_F32, 4, B, T, Hq, D);
    at = c->off;
    fp_tensor *dk = take(c, FP_F32, 2, N, kd, 0, 0);
    fp_tensor *dk4 = take_at(c, at, FP_F32, 4, B, T, Hkv, D);
    at = c->off;
    fp_tensor *dv = take(c, FP_F32, 2, N, kd, 0, 0);
    fp_tensor *dv4 = take_at(c, at, FP_F32, 4, B, T, Hkv, D);
    fp_tensor *emb_work = take(c, FP_I32, 1, N, 0, 0, 0);
    fp_tensor *lg = NULL, *xd_C = NULL, *xd_qd = NULL, *xd_I = NULL;
    if (lc) {
        lg = take(c, FP_F32, 2, N, r, 0, 0);
        /* LoRA dropout scratch, sized for the widest input, seen at each width */
        int64_t w = C > qd ? C : qd;
        w = w > I ? w : I;
        at = c->off;
        c->off += llm_align_elems(N * w) * 4;
        xd_C = take_at(c, at, FP_F32, 2, N, C, 0, 0);
        xd_qd = take_at(c, at, FP_F32, 2, N, qd, 0, 0);
        xd_I = take_at(c, at, FP_F32, 2, N, I, 0, 0);
    }
    if (pl) {
        pl->dres = dres; pl->dtmp = dtmp; pl->dm = dm; pl->dh = dh; pl->dgate = dgate; pl->dup = dup;
        pl->dO = dO; pl->dq = dq; pl->dk = dk; pl->dv = dv;
        pl->dO4 = dO4; pl->dq4 = dq4; pl->dk4 = dk4; pl->dv4 = dv4;
        pl->emb_work = emb_work; pl->lg = lg;
        pl->xd_C = xd_C; pl->xd_qd = xd_qd; pl->xd_I = xd_I;
    }
}

static uint64_t arena_bytes(int64_t elems) { return (uint64_t)elems * 4; }

static int64_t lora_arena_elems(const fp_llama_config *c, const fp_lora_config *lc)
{
    int64_t C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->intermediate;
    int64_t in[LLM_NT] = {C, C, C, qd, C, C, I}, out[LLM_NT] = {qd, kd, kd, C, I, I, C}, per = 0;
    for (int t = 0; t < LLM_NT; t++)
        if (lc->targets & (1u << t))
            per += llm_align_elems(lc->rank * in[t]) + llm_align_elems(out[t] * lc->rank);
    int64_t nl = 0; /* layers with adapters */
    for (int64_t l = 0; l < c->layers; l++)
        nl += llm_lora_has_layer(lc, l);
    return per * nl;
}

int fp_model_plan_bytes(fp_plan_bytes *out, const fp_llama_config *c, const fp_lora_config *lc, int64_t B, int64_t T,
                        int training, int opt_states)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "plan bytes: NULL output");
    int rc = fp_llama_config_check(c);
    if (rc)
        return rc;
    if (B < 1 || T < 1 || B * T > (1 << 26))
        return fp_seterr(FP_EINVAL, "plan: batch %lld x sequence %lld is out of range", (long long)B, (long long)T);
    if (lc && lc->rank < 1)
        lc = NULL;
    memset(out, 0, sizeof *out);
    cursor cu = {0};
    layout(&cu, c, lc, NULL, B, T, training, NULL);
    out->activations = (uint64_t)cu.off;
    uint64_t base32, base16;
    llm_base_arena_bytes(c, &base32, &base16);
    out->params = base32 + base16 + (lc ? arena_bytes(lora_arena_elems(c, lc)) : 0);
    uint64_t trained = lc ? arena_bytes(lora_arena_elems(c, lc)) : base32;
    out->grads = training == 1 ? trained : 0;
    out->optimizer = training == 1 ? trained * (uint64_t)(opt_states > 0 ? opt_states : 0) : 0;
    out->total = out->params + out->grads + out->optimizer + out->activations;
    return 0;
}

void llm_plan_free(fp_model *m)
{
    llm_plan *pl = &m->plan;
    for (int i = 0; i < pl->nviews; i++)
        fp_tensor_free(pl->views[i]);
    free(pl->views);
    free(pl->la);
    fp_tensor_free(pl->arena);
    for (int i = 0; i < m->np; i++) {
        fp_tensor_free(m->p[i].gview);
        m->p[i].gview = NULL;
    }
    for (int i = 0; i < m->nl; i++) {
        fp_tensor_free(m->lp[i].gview);
        m->lp[i].gview = NULL;
    }
    fp_tensor_free(m->grad_arena);
    m->grad_arena = NULL;
    memset(pl, 0, sizeof *pl);
}

static void human(char *buf, size_t n, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, n, "%.2f GiB", (double)b / (1ull << 30));
    else
        snprintf(buf, n, "%.1f MiB", (double)b / (1ull << 20));
}

int fp_model_plan(fp_model *m, int64_t B, int64_t T, int training, int opt_states)
{
    if (!m)
        return fp_seterr(FP_EINVAL, "model plan: NULL model");
    const fp_lora_config *lc = m->lora_on ? &m->lc : NULL;
    fp_plan_bytes pb;
    int rc = fp_model_plan_bytes(&pb, &m->cfg, lc, B, T, training, opt_states);
    if (rc)
        return rc;
    if (training < 0 || training > 2)
        return fp_seterr(FP_EINVAL, "model plan: training is %d (0 inference, 1 training, 2 activations only)",
                         training);
    if (training == 1 && !lc && m->cfg.base_dtype != FP_F32)
        return fp_seterr(FP_EUNSUPPORTED, "model plan: full fine-tuning needs f32 weights (this model stores them "
                                          "as %s); use LoRA, or load the model as f32",
                         fp_dtype_name(m->cfg.base_dtype));
    llm_plan_free(m);
    /* memory check: what the plan adds, against the device-local heaps minus what is in use */
    const fp_profile *pr = fp_ctx_profile(m->ctx);
    fp_mem_stats ms;
    fp_ctx_mem_stats(m->ctx, &ms);
    uint64_t avail = pr->device_local_bytes;
    uint64_t need = pb.grads + pb.optimizer + pb.activations;
    uint64_t have = avail > ms.in_use ? avail - ms.in_use : 0;
    have = have / 10 * 9; /* leave room for the driver and fragmentation */
    if (need > have) {
        /* suggest the largest batch (then sequence) that fits */
        int64_t sb = B, st = T;
        fp_plan_bytes t2;
        while (sb > 1) {
            sb /= 2;
            fp_model_plan_bytes(&t2, &m->cfg, lc, sb, st, training, opt_states);
            if (t2.grads + t2.optimizer + t2.activations <= have)
                break;
        }
        fp_model_plan_bytes(&t2, &m->cfg, lc, sb, st, training, opt_states);
        while (st > 1 && t2.grads + t2.optimizer + t2.activations > have) {
            st /= 2;
            fp_model_plan_bytes(&t2, &m->cfg, lc, sb, st, training, opt_states);
        }
        char hn[32], hh[32];
        human(hn, sizeof hn, need);
        human(hh, sizeof hh, have);
        if (t2.grads + t2.optimizer + t2.activations <= have)
            return fp_seterr(FP_EDEVMEM,
                             "model plan: batch %lld x sequence %lld needs %s of device memory (activations, "
                             "gradients, optimizer) but only %s is free on %s; try --batch %lld --seq %lld",
                             (long long)B, (long long)T, hn, hh, pr->name, (long long)sb, (long long)st);
        return fp_seterr(FP_EDEVMEM,
                         "model plan: batch %lld x sequence %lld needs %s of device memory but only %s is free on "
                         "%s, and even batch 1 x sequence 1 does not fit: use LoRA or a smaller model",
                         (long long)B, (long long)T, hn, hh, pr->name);
    }
    llm_plan *pl = &m->plan;
    pl->B = B;
    pl->T = T;
    pl->N = B * T;
    pl->training = training;
    pl->opt_states = opt_states;
    pl->la = calloc((size_t)m->cfg.layers, sizeof *pl->la);
    if (!pl->la)
        return fp_seterr(FP_ENOMEM, "model plan: out of host memory");
    int64_t elems = (int64_t)(pb.activations / 4);
    rc = fp_tensor_new(&pl->arena, m->ctx, FP_F32, 1, &elems);
    if (rc) {
        llm_plan_free(m);
        return rc;
    }
    cursor cu = {.arena = pl->arena, .pl = pl};
    layout(&cu, &m->cfg, lc, (const int(*)[LLM_NT])m->lix, B, T, training, pl);
    if (!cu.rc) {
        /* the ones vector (bias add and bias gradient as rank-1 products) */
        float *ones = malloc((size_t)pl->N * sizeof(float));
        if (!ones)
            cu.rc = fp_seterr(FP_ENOMEM, "model plan: out of host memory");
        for (int64_t i = 0; ones && i < pl->N; i++)
            ones[i] = 1.0f;
        if (ones)
            cu.rc = fp_tensor_upload(pl->ones, ones, (size_t)pl->N * sizeof(float));
        free(ones);
    }
    if (!cu.rc && training == 1) {
        int64_t ge = m->lora_on ? m->lora_arena_elems : m->arena_elems;
        cu.rc = fp_tensor_new(&m->grad_arena, m->ctx, FP_F32, 1, &ge);
        if (!cu.rc)
            cu.rc = fp_tensor_zero(m->grad_arena);
        llm_param *p = m->lora_on ? m->lp : m->p;
        int np = m->lora_on ? m->nl : m->np;
        for (int i = 0; !cu.rc && i < np; i++) {
            int64_t shape[2] = {p[i].info.rows, p[i].info.cols};
            cu.rc = fp_tensor_view(&p[i].gview, m->grad_arena, p[i].arena_off, FP_F32, p[i].info.cols == 1 ? 1 : 2,
                                   shape);
        }
    }
    if (cu.rc) {
        llm_plan_free(m);
        return cu.rc;
    }
    return 0;
}
