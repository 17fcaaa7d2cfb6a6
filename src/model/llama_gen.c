/* Inference with a KV cache (model.h): a prefill chunk and one-token decode
 * steps over per-layer key/value caches, attention through the attention
 * family's fp_attention_decode, and sampling (greedy, temperature, top-k,
 * top-p) from a seeded RNG. */
#include <math.h>
#include <stdio.h>
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

/* byte offsets of the buffers in the arena */
enum { B_X, B_MID, B_A, B_Q, B_K, B_V, B_O, B_TMP, B_M, B_GATE, B_UP, B_H, B_F, B_RSTD, B_LOGITS, B_U, B_ONES,
       B_IDS, B_COUNT };

typedef struct kv_act {
    fp_tensor *x, *mid, *a, *q, *q4, *k, *k4, *v, *v4, *o, *o4, *tmp, *m, *gate, *up, *h, *f, *rstd, *logits, *u,
        *ones, *ids;
} kv_act;

struct llm_kv {
    int64_t tmax, chunk, pos;
    fp_tensor *arena;
    int64_t off[B_COUNT]; /* bytes */
    int64_t cache_off, ws_off, ws_elems, cache_elems;
    fp_tensor **kc, **vc, *ws;
    kv_act act; /* views for act_n tokens */
    int64_t act_n;
};

static int64_t al(int64_t bytes) { return (bytes + LLM_ALIGN - 1) / LLM_ALIGN * LLM_ALIGN; }

static void act_free(kv_act *a)
{
    fp_tensor **t = (fp_tensor **)a;
    for (size_t i = 0; i < sizeof *a / sizeof(fp_tensor *); i++)
        fp_tensor_free(t[i]);
    memset(a, 0, sizeof *a);
}

void llm_kv_free(fp_model *m)
{
    struct llm_kv *kv = m ? m->kv : NULL;
    if (!kv)
        return;
    act_free(&kv->act);
    for (int64_t l = 0; kv->kc && l < m->cfg.layers; l++) {
        fp_tensor_free(kv->kc[l]);
        fp_tensor_free(kv->vc[l]);
    }
    free(kv->kc);
    free(kv->vc);
    fp_tensor_free(kv->ws);
    fp_tensor_free(kv->arena);
    free(kv);
    m->kv = NULL;
}

void fp_model_kv_free(fp_model *m) { llm_kv_free(m); }

void fp_model_kv_reset(fp_model *m)
{
    if (m && m->kv)
        m->kv->pos = 0;
}

int64_t fp_model_kv_pos(const fp_model *m) { return m && m->kv ? m->kv->pos : 0; }

const char *fp_model_generate_mode(void) { return "kv-cache: prefill + one-token decode steps via fp_attention_decode"; }

int fp_model_kv_begin(fp_model *m, int64_t max_tokens, int64_t max_chunk)
{
    if (!m)
        return fp_seterr(FP_EINVAL, "kv cache: NULL model");
    const fp_llama_config *c = &m->cfg;
    if (max_tokens < 1 || max_chunk < 1 || max_chunk > max_tokens || max_tokens > (1 << 24))
        return fp_seterr(FP_EINVAL, "kv cache: %lld tokens in chunks of %lld: out of range (1 <= chunk <= tokens)",
                         (long long)max_tokens, (long long)max_chunk);
    llm_kv_free(m);
    int64_t n = max_chunk, C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    int64_t I = c->intermediate, V = c->vocab, r = m->lora_on ? m->lc.rank : 1;
    int64_t rows[B_COUNT] = {[B_X] = C,  [B_MID] = C, [B_A] = C,    [B_Q] = qd,    [B_K] = kd,
                             [B_V] = kd, [B_O] = qd,  [B_TMP] = C,  [B_M] = C,     [B_GATE] = I,
                             [B_UP] = I, [B_H] = I,   [B_F] = C,    [B_RSTD] = 1,  [B_LOGITS] = V,
                             [B_U] = r,  [B_ONES] = 1, [B_IDS] = 1};
    struct llm_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return fp_seterr(FP_ENOMEM, "kv cache: out of host memory");
    int64_t off = 0;
    for (int b = 0; b < B_COUNT; b++) {
        kv->off[b] = off;
        off += al(n * rows[b] * 4);
    }
    kv->cache_off = off;
    kv->cache_elems = al(max_tokens * kd * 4) / 4;
    off += 2 * c->layers * kv->cache_elems * 4;
    kv->ws_off = off;
    kv->ws_elems = fp_attention_decode_workspace(1, 1, c->heads, c->head_dim, max_tokens);
    if (kv->ws_elems > 0)
        off += al(kv->ws_elems * 4);
    /* memory check, as for plans */
    const fp_profile *pr = fp_ctx_profile(m->ctx);
    fp_mem_stats ms;
    fp_ctx_mem_stats(m->ctx, &ms);
    uint64_t have = pr->device_local_bytes > ms.in_use ? (pr->device_local_bytes - ms.in_use) / 10 * 9 : 0;
    if ((uint64_t)off > have) {
        free(kv);
        return fp_seterr(FP_EDEVMEM,
                         "kv cache: %lld tokens (chunks of %lld) need %.1f MiB of device memory, %.1f MiB is free "
                         "on %s; generate fewer tokens or use a shorter prompt",
                         (long long)max_tokens, (long long)max_chunk, off / 1048576.0, have / 1048576.0, pr->name);
    }
    kv->tmax = max_tokens;
    kv->chunk = max_chunk;
    int64_t elems = off / 4;
    int rc = fp_tensor_new(&kv->arena, m->ctx, FP_F32, 1, &elems);
    kv->kc = calloc((size_t)c->layers, sizeof *kv->kc);
    kv->vc = calloc((size_t)c->layers, sizeof *kv->vc);
    if (!rc && (!kv->kc || !kv->vc))
        rc = fp_seterr(FP_ENOMEM, "kv cache: out of host memory");
    int64_t shape[4] = {1, max_tokens, c->kv_heads, c->head_dim};
    for (int64_t l = 0; !rc && l < c->layers; l++) {
        rc = fp_tensor_view(&kv->kc[l], kv->arena, (kv->cache_off / 4) + 2 * l * kv->cache_elems, FP_F32, 4, shape);
        if (!rc)
            rc = fp_tensor_view(&kv->vc[l], kv->arena, (kv->cache_off / 4) + (2 * l + 1) * kv->cache_elems, FP_F32,
                                4, shape);
    }
    if (!rc && kv->ws_elems > 0)
        rc = fp_tensor_view(&kv->ws, kv->arena, kv->ws_off / 4, FP_F32, 1, &kv->ws_elems);
    if (!rc) {
        /* the ones vector: bias adds as rank-1 products */
        float *ones = malloc((size_t)n * sizeof(float));
        fp_tensor *ov = NULL;
        if (!ones)
            rc = fp_seterr(FP_ENOMEM, "kv cache: out of host memory");
        for (int64_t i = 0; ones && i < n; i++)
            ones[i] = 1.0f;
        if (!rc)
            rc = fp_tensor_view(&ov, kv->arena, kv->off[B_ONES] / 4, FP_F32, 1, &n);
        if (!rc)
            rc = fp_tensor_upload(ov, ones, (size_t)n * sizeof(float));
        fp_tensor_free(ov);
        free(ones);
    }
    m->kv = kv;
    if (rc)
        llm_kv_free(m);
    return rc;
}

/* (Re)makes the activation views for n tokens. */
static int act_views(fp_model *m, int64_t n)
{
    struct llm_kv *kv = m->kv;
    if (kv->act_n == n)
        return 0;
    act_free(&kv->act);
    kv->act_n = 0;
    const fp_llama_config *c = &m->cfg;
    int64_t C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->intermediate;
    int64_t r = m->lora_on ? m->lc.rank : 1;
    kv_act *a = &kv->act;
    int rc = 0;
#define V2(dst, b, cols)                                                                          \
    do {                                                                                          \
        int64_t sh_[2] = {n, cols};                                                               \
        if (!rc)                                                                                  \
            rc = fp_tensor_view(&a->dst, kv->arena, kv->off[b] / 4, FP_F32, 2, sh_);              \
    } while (0)
#define V4(dst, b, H)                                                                             \
    do {                                                                                          \
        int64_t sh_[4] = {1, n, H, c->head_dim};                                                  \
        if (!rc)                                                                                  \
            rc = fp_tensor_view(&a->dst, kv->arena, kv->off[b] / 4, FP_F32, 4, sh_);              \
    } while (0)
    V2(x, B_X, C);
    V2(mid, B_MID, C);
    V2(a, B_A, C);
    V2(q, B_Q, qd);
    V4(q4, B_Q, c->heads);
    V2(k, B_K, kd);
    V4(k4, B_K, c->kv_heads);
    V2(v, B_V, kd);
    V4(v4, B_V, c->kv_heads);
    V2(o, B_O, qd);
    V4(o4, B_O, c->heads);
    V2(tmp, B_TMP, C);
    V2(m, B_M, C);
    V2(gate, B_GATE, I);
    V2(up, B_UP, I);
    V2(h, B_H, I);
    V2(f, B_F, C);
    V2(logits, B_LOGITS, c->vocab);
    V2(u, B_U, r);
#undef V2
#undef V4
    if (!rc)
        rc = fp_tensor_view(&a->rstd, kv->arena, kv->off[B_RSTD] / 4, FP_F32, 1, &n);
    if (!rc)
        rc = fp_tensor_view(&a->ones, kv->arena, kv->off[B_ONES] / 4, FP_F32, 1, &n);
    if (!rc)
        rc = fp_tensor_view(&a->ids, kv->arena, kv->off[B_IDS] / 4, FP_I32, 1, &n);
    if (rc) {
        act_free(a);
        return rc;
    }
    kv->act_n = n;
    return 0;
}

static fp_tensor *PV(fp_model *m, int i) { return i >= 0 ? m->p[i].view : NULL; }

/* Records the forward of the n tokens in act->ids at cache position pos. */
static int record(fp_model *m, fp_stream *s, int64_t n, fp_tensor **tmpviews)
{
    struct llm_kv *kv = m->kv;
    kv_act *A = &kv->act;
    const fp_llama_config *c = &m->cfg;
    int64_t pos = kv->pos, kd = c->kv_heads * c->head_dim;
    fp_rope_desc rd = {.theta = c->rope_theta, .start_pos = pos};
    fp_attn_desc ad = {.scale = 0.0f, .causal = 1};
    TRY(fp_embedding_fwd(s, A->x, PV(m, m->embed), A->ids));
    for (int64_t l = 0; l < c->layers; l++) {
        const llm_layer_ix *ix = &m->L[l];
        TRY(fp_rmsnorm_fwd(s, A->a, A->rstd, A->x, PV(m, ix->attn_norm), c->rms_eps));
        TRY(llm_lin_fwd(m, s, A->q, A->a, n, A->ones, l, TQ, ix->wq, ix->bq, A->u, 0));
        TRY(llm_lin_fwd(m, s, A->k, A->a, n, A->ones, l, TK, ix->wk, ix->bk, A->u, 0));
        TRY(llm_lin_fwd(m, s, A->v, A->a, n, A->ones, l, TV, ix->wv, ix->bv, A->u, 0));
        TRY(fp_rope(s, A->q4, A->q4, &rd));
        TRY(fp_rope(s, A->k4, A->k4, &rd));
        /* the new keys and values into cache rows pos .. pos+n-1 (a buffer copy: any offset) */
        int64_t sh[2] = {n, kd};
        fp_tensor **kdst = &tmpviews[2 * l], **vdst = &tmpviews[2 * l + 1];
        TRY(fp_tensor_view(kdst, kv->arena, kv->cache_off / 4 + 2 * l * kv->cache_elems + pos * kd, FP_F32, 2, sh));
        TRY(fp_tensor_view(vdst, kv->arena, kv->cache_off / 4 + (2 * l + 1) * kv->cache_elems + pos * kd, FP_F32, 2,
                           sh));
        TRY(fp_stream_copy(s, *kdst, A->k));
        TRY(fp_stream_copy(s, *vdst, A->v));
        TRY(fp_attention_decode(s, A->o4, A->q4, kv->kc[l], kv->vc[l], pos, &ad, n == 1 ? kv->ws : NULL));
        TRY(llm_lin_fwd(m, s, A->tmp, A->o, n, A->ones, l, TO, ix->wo, -1, A->u, 0));
        TRY(fp_add(s, A->mid, A->x, A->tmp));
        TRY(fp_rmsnorm_fwd(s, A->m, A->rstd, A->mid, PV(m, ix->mlp_norm), c->rms_eps));
        TRY(llm_lin_fwd(m, s, A->gate, A->m, n, A->ones, l, TG, ix->wg, -1, A->u, 0));
        TRY(llm_lin_fwd(m, s, A->up, A->m, n, A->ones, l, TU, ix->wu, -1, A->u, 0));
        TRY(fp_swiglu_fwd(s, A->h, A->gate, A->up));
        TRY(llm_lin_fwd(m, s, A->tmp, A->h, n, A->ones, l, TD, ix->wd, -1, A->u, 0));
        TRY(fp_add(s, A->x, A->mid, A->tmp));
    }
    TRY(fp_rmsnorm_fwd(s, A->f, A->rstd, A->x, PV(m, m->final_norm), c->rms_eps));
    TRY(llm_matmul(s, A->logits, A->f, 0, PV(m, m->head), 1, n, c->vocab, c->hidden, 1.0f, 0.0f));
    return 0;
}

int fp_model_kv_feed(fp_model *m, const int32_t *ids, int64_t n, float *logits, int all)
{
    if (!m || !ids)
        return fp_seterr(FP_EINVAL, "kv feed: NULL argument");
    struct llm_kv *kv = m->kv;
    if (!kv)
        return fp_seterr(FP_ESTATE, "kv feed: no KV cache (call fp_model_kv_begin first)");
    if (n < 1 || n > kv->chunk)
        return fp_seterr(FP_EINVAL, "kv feed: %lld tokens; chunks are 1..%lld", (long long)n, (long long)kv->chunk);
    if (kv->pos + n > kv->tmax)
        return fp_seterr(FP_ESHAPE, "kv feed: %lld tokens at position %lld overflow the %lld-token cache",
                         (long long)n, (long long)kv->pos, (long long)kv->tmax);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab)
            return fp_seterr(FP_EINVAL, "kv feed: token %lld is id %d, outside the vocabulary 0..%lld", (long long)i,
                             ids[i], (long long)m->cfg.vocab - 1);
    TRY(act_views(m, n));
    TRY(fp_tensor_upload(kv->act.ids, ids, (size_t)n * sizeof(int32_t)));
    int64_t nt = 2 * m->cfg.layers;
    fp_tensor **tv = calloc((size_t)nt, sizeof *tv);
    fp_stream *s = NULL;
    int rc = tv ? fp_stream_new(&s, m->ctx) : fp_seterr(FP_ENOMEM, "kv feed: out of host memory");
    if (!rc)
        rc = record(m, s, n, tv);
    if (!rc)
        rc = fp_stream_run(s);
    fp_stream_free(s);
    for (int64_t i = 0; tv && i < nt; i++)
        fp_tensor_free(tv[i]);
    free(tv);
    if (rc)
        return rc;
    kv->pos += n;
    if (!logits)
        return 0;
    int64_t V = m->cfg.vocab;
    if (all)
        return fp_tensor_download(logits, (size_t)(n * V) * sizeof(float), kv->act.logits);
    fp_tensor *last = NULL;
    TRY(fp_tensor_view(&last, kv->arena, kv->off[B_LOGITS] / 4 + (n - 1) * V, FP_F32, 1, &V));
    rc = fp_tensor_download(logits, (size_t)V * sizeof(float), last);
    fp_tensor_free(last);
    return rc;
}

/* ---- sampling ------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct cand {
    float logit;
    int32_t id;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t fp_sample(const float *logits, int64_t V, const fp_sampler *sp, uint64_t *rng)
{
    if (!logits || V < 1 || V > INT32_MAX)
        return fp_seterr(FP_EINVAL, "sample: NULL logits or vocabulary size %lld", (long long)V);
    if (!sp || !(sp->temperature > 0)) {
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (logits[v] > logits[best])
                best = v;
        return (int32_t)best;
    }
    if (!rng)
        return fp_seterr(FP_EINVAL, "sample: NULL RNG state");
    if (sp->top_k < 0 || !(sp->top_p == sp->top_p) || !isfinite(sp->temperature))
        return fp_seterr(FP_EINVAL, "sample: top_k %d, top_p %g, temperature %g out of range", sp->top_k,
                         (double)sp->top_p, (double)sp->temperature);
    cand *cd = malloc((size_t)V * sizeof *cd);
    if (!cd)
        return fp_seterr(FP_ENOMEM, "sample: out of host memory");
    for (int64_t v = 0; v < V; v++) {
        cd[v].logit = logits[v] / sp->temperature;
        cd[v].id = (int32_t)v;
    }
    qsort(cd, (size_t)V, sizeof *cd, cand_cmp);
    int64_t keep = V;
    if (sp->top_k > 0 && sp->top_k < keep)
        keep = sp->top_k;
    /* softmax over the kept candidates (double), then the top-p prefix */
    double mx = cd[0].logit, z = 0;
    double *pr = malloc((size_t)keep * sizeof *pr);
    if (!pr) {
        free(cd);
        return fp_seterr(FP_ENOMEM, "sample: out of host memory");
    }
    for (int64_t i = 0; i < keep; i++) {
        pr[i] = exp((double)cd[i].logit - mx);
        z += pr[i];
    }
    for (int64_t i = 0; i < keep; i++)
        pr[i] /= z;
    if (sp->top_p > 0 && sp->top_p < 1) {
        double cum = 0;
        int64_t k = 0;
        while (k < keep) {
            cum += pr[k++];
            if (cum >= sp->top_p)
                break;
        }
        keep = k;
    }
    double tot = 0;
    for (int64_t i = 0; i < keep; i++)
        tot += pr[i];
    double u = ((rng_next(rng) >> 11) * (1.0 / 9007199254740992.0)) * tot, acc = 0;
    int32_t id = cd[keep - 1].id;
    for (int64_t i = 0; i < keep; i++) {
        acc += pr[i];
        if (u < acc) {
            id = cd[i].id;
            break;
        }
    }
    free(pr);
    free(cd);
    return id;
}

int fp_model_generate(fp_model *m, const int32_t *prompt, int64_t n_prompt, int64_t max_new, const fp_sampler *sp,
                      const int32_t *eos, int n_eos, int32_t *out, int64_t *n_out)
{
    if (!m || !prompt || !n_out || (max_new > 0 && !out) || (n_eos > 0 && !eos))
        return fp_seterr(FP_EINVAL, "generate: NULL argument");
    *n_out = 0;
    if (n_prompt < 1 || max_new < 0)
        return fp_seterr(FP_EINVAL, "generate: prompt of %lld tokens, %lld new: need a non-empty prompt",
                         (long long)n_prompt, (long long)max_new);
    if (max_new == 0)
        return 0;
    TRY(fp_model_kv_begin(m, n_prompt + max_new, n_prompt));
    int64_t V = m->cfg.vocab;
    float *lg = malloc((size_t)V * sizeof(float));
    if (!lg)
        return fp_seterr(FP_ENOMEM, "generate: out of host memory");
    uint64_t rng = sp ? sp->seed : 0;
    int rc = fp_model_kv_feed(m, prompt, n_prompt, lg, 0);
    int64_t k = 0;
    while (!rc) {
        int32_t t = fp_sample(lg, V, sp, &rng);
        if (t < 0) {
            rc = t;
            break;
        }
        out[k++] = t;
        int stop = k == max_new;
        for (int e = 0; e < n_eos && !stop; e++)
            stop = eos[e] == t;
        if (stop)
            break;
        rc = fp_model_kv_feed(m, &t, 1, lg, 0);
    }
    free(lg);
    *n_out = k;
    return rc;
}
