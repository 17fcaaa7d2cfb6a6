/* The device transformer's parameters: config checks, the packed/arena layout,
 * host <-> device copies, LoRA adapters and random inits (model.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/safetensors.h"
#include "llama_internal.h"

static const char *const TNAME[LLM_NT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                          "mlp.down_proj"};
static const char *const TSHORT[LLM_NT] = {"q", "k", "v", "o", "gate", "up", "down"};

int64_t llm_align_elems(int64_t n) { return (n + LLM_ALIGN / 4 - 1) / (LLM_ALIGN / 4) * (LLM_ALIGN / 4); }

int fp_llama_config_check(const fp_llama_config *c)
{
    if (!c)
        return fp_seterr(FP_EINVAL, "model config: NULL");
#define POS(f)                                                                                    \
    if (c->f < 1 || c->f > (1 << 24))                                                             \
        return fp_seterr(FP_EINVAL, "model config: " #f " is %lld (must be 1..%d)", (long long)c->f, 1 << 24);
    POS(hidden) POS(layers) POS(heads) POS(kv_heads) POS(head_dim) POS(intermediate) POS(vocab)
#undef POS
    if (c->heads % c->kv_heads)
        return fp_seterr(FP_EINVAL, "model config: %lld attention heads are not a multiple of %lld kv heads",
                         (long long)c->heads, (long long)c->kv_heads);
    if (c->head_dim % 2)
        return fp_seterr(FP_EINVAL, "model config: head_dim %lld is odd (RoPE rotates halves)", (long long)c->head_dim);
    if (!(c->rms_eps > 0) || !(c->rms_eps < 1))
        return fp_seterr(FP_EINVAL, "model config: rms_norm_eps %g is not in (0, 1)", (double)c->rms_eps);
    if (!(c->rope_theta > 1) || !isfinite(c->rope_theta))
        return fp_seterr(FP_EINVAL, "model config: rope_theta %g must be > 1", (double)c->rope_theta);
    if (c->base_dtype != FP_F32 && c->base_dtype != FP_F16 && c->base_dtype != FP_BF16)
        return fp_seterr(FP_EINVAL, "model config: base_dtype %s (weights are stored as f32, f16 or bf16)",
                         fp_dtype_name(c->base_dtype));
    return 0;
}

static void target_dims(const fp_llama_config *c, int t, int64_t *in, int64_t *out)
{
    int64_t C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->intermediate;
    static const int IN_IS[LLM_NT] = {0, 0, 0, 1, 0, 0, 2};
    *in = IN_IS[t] == 0 ? C : IN_IS[t] == 1 ? qd : I;
    switch (t) {
    case 0: *out = qd; break;
    case 1: case 2: *out = kd; break;
    case 4: case 5: *out = I; break;
    default: *out = C; break;
    }
}

static int64_t align_half(int64_t n) { return (n + LLM_ALIGN / 2 - 1) / (LLM_ALIGN / 2) * (LLM_ALIGN / 2); }

/* half: the tensor lives in the 16-bit arena (offsets in 16-bit elements, counted in *harena) */
static void add_param_h(llm_param *p, int *n, int64_t *packed, int64_t *arena, int64_t *harena, int half,
                        const char *name, int64_t rows, int64_t cols)
{
    if (p) {
        llm_param *q = &p[*n];
        memset(q, 0, sizeof *q);
        snprintf(q->info.name, sizeof q->info.name, "%s", name);
        q->info.offset = *packed;
        q->info.numel = rows * cols;
        q->info.rows = rows;
        q->info.cols = cols;
        q->arena_off = half ? *harena : *arena;
        q->half = half;
    }
    (*n)++;
    *packed += rows * cols;
    if (half)
        *harena += align_half(rows * cols);
    else
        *arena += llm_align_elems(rows * cols);
}

static void add_param(llm_param *p, int *n, int64_t *packed, int64_t *arena, const char *name, int64_t rows,
                      int64_t cols)
{
    if (p) {
        llm_param *q = &p[*n];
        memset(q, 0, sizeof *q);
        snprintf(q->info.name, sizeof q->info.name, "%s", name);
        q->info.offset = *packed;
        q->info.numel = rows * cols;
        q->info.rows = rows;
        q->info.cols = cols;
        q->arena_off = *arena;
    }
    (*n)++;
    *packed += rows * cols;
    *arena += llm_align_elems(rows * cols);
}

/* Fills p (may be NULL: count only) and L; returns the count. */
static int base_layout(const fp_llama_config *c, llm_param *p, llm_layer_ix *L, int *embed, int *fnorm, int *head,
                       int64_t *packed, int64_t *arena, int64_t *harena)
{
    int n = 0;
    char nm[96];
    int64_t C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->intermediate;
    int hw = c->base_dtype != FP_F32; /* linear weights in the 16-bit arena */
    *packed = *arena = *harena = 0;
    if (embed)
        *embed = n;
    add_param(p, &n, packed, arena, "model.embed_tokens.weight", c->vocab, C);
    for (int64_t l = 0; l < c->layers; l++) {
        llm_layer_ix ix;
#define P_(field, suffix, r, cc)                                                                  \
    do {                                                                                          \
        ix.field = n;                                                                             \
        snprintf(nm, sizeof nm, "model.layers.%lld.%s", (long long)l, suffix);                    \
        add_param_h(p, &n, packed, arena, harena, 0, nm, r, cc);                                  \
    } while (0)
#define W_(field, suffix, r, cc)                                                                  \
    do {                                                                                          \
        ix.field = n;                                                                             \
        snprintf(nm, sizeof nm, "model.layers.%lld.%s", (long long)l, suffix);                    \
        add_param_h(p, &n, packed, arena, harena, hw, nm, r, cc);                                 \
    } while (0)
        ix.bq = ix.bk = ix.bv = -1;
        P_(attn_norm, "input_layernorm.weight", C, 1);
        W_(wq, "self_attn.q_proj.weight", qd, C);
        if (c->attn_bias)
            P_(bq, "self_attn.q_proj.bias", qd, 1);
        W_(wk, "self_attn.k_proj.weight", kd, C);
        if (c->attn_bias)
            P_(bk, "self_attn.k_proj.bias", kd, 1);
        W_(wv, "self_attn.v_proj.weight", kd, C);
        if (c->attn_bias)
            P_(bv, "self_attn.v_proj.bias", kd, 1);
        W_(wo, "self_attn.o_proj.weight", C, qd);
        P_(mlp_norm, "post_attention_layernorm.weight", C, 1);
        W_(wg, "mlp.gate_proj.weight", I, C);
        W_(wu, "mlp.up_proj.weight", I, C);
        W_(wd, "mlp.down_proj.weight", C, I);
#undef P_
#undef W_
        if (L)
            L[l] = ix;
    }
    if (fnorm)
        *fnorm = n;
    add_param(p, &n, packed, arena, "model.norm.weight", C, 1);
    if (head)
        *head = c->tied ? 0 : n;
    if (!c->tied)
        add_param_h(p, &n, packed, arena, harena, hw, "lm_head.weight", c->vocab, C);
    return n;
}

static int lora_layout(const fp_llama_config *c, const fp_lora_config *lc, llm_param *p, int (*lix)[LLM_NT],
                       int64_t *packed, int64_t *arena)
{
    int n = 0;
    char nm[96];
    *packed = *arena = 0;
    for (int64_t l = 0; l < c->layers; l++)
        for (int t = 0; t < LLM_NT; t++) {
            if (lix)
                lix[l][t] = -1;
            if (!(lc->targets & (1u << t)) || !llm_lora_has_layer(lc, l))
                continue;
            int64_t in, out;
            target_dims(c, t, &in, &out);
            if (lix)
                lix[l][t] = n;
            snprintf(nm, sizeof nm, "model.layers.%lld.%s.lora_A.weight", (long long)l, TNAME[t]);
            add_param(p, &n, packed, arena, nm, lc->rank, in);
            snprintf(nm, sizeof nm, "model.layers.%lld.%s.lora_B.weight", (long long)l, TNAME[t]);
            add_param(p, &n, packed, arena, nm, out, lc->rank);
        }
    return n;
}

int64_t fp_llama_param_count(const fp_llama_config *c)
{
    int64_t packed, arena, harena;
    base_layout(c, NULL, NULL, NULL, NULL, NULL, &packed, &arena, &harena);
    return packed;
}

void llm_base_arena_bytes(const fp_llama_config *c, uint64_t *f32_bytes, uint64_t *half_bytes)
{
    int64_t packed, arena, harena;
    base_layout(c, NULL, NULL, NULL, NULL, NULL, &packed, &arena, &harena);
    *f32_bytes = (uint64_t)arena * 4;
    *half_bytes = (uint64_t)harena * 2;
}

int64_t fp_lora_param_count(const fp_llama_config *c, const fp_lora_config *lc)
{
    int64_t packed, arena;
    lora_layout(c, lc, NULL, NULL, &packed, &arena);
    return packed;
}

int fp_lora_targets_parse(unsigned *out, const char *list)
{
    if (!out || !list)
        return fp_seterr(FP_EINVAL, "lora targets: NULL");
    unsigned bits = 0;
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        int found = 0;
        if (len == 3 && !strncmp(s, "all", 3)) {
            bits |= FP_LORA_ALL;
            found = 1;
        }
        for (int t = 0; t < LLM_NT && !found; t++) {
            size_t tl = strlen(TSHORT[t]);
            /* accept "q" and HF's "q_proj" */
            if ((len == tl && !strncmp(s, TSHORT[t], tl)) ||
                (len == tl + 5 && !strncmp(s, TSHORT[t], tl) && !strncmp(s + tl, "_proj", 5))) {
                bits |= 1u << t;
                found = 1;
            }
        }
        if (!found)
            return fp_seterr(FP_EINVAL, "lora targets: unknown module '%.*s' (use q,k,v,o,gate,up,down or all)",
                             (int)len, s);
        s += len;
        if (*s == ',')
            s++;
    }
    if (!bits)
        return fp_seterr(FP_EINVAL, "lora targets: empty list");
    *out = bits;
    return 0;
}

static int make_views(fp_tensor *arena, fp_tensor *harena, llm_param *p, int n, int grads)
{
    for (int i = 0; i < n; i++) {
        int64_t shape[2] = {p[i].info.rows, p[i].info.cols};
        int nd = p[i].info.cols == 1 ? 1 : 2;
        fp_tensor **dst = grads ? &p[i].gview : &p[i].view;
        int half = p[i].half && !grads;
        int rc = fp_tensor_view(dst, half ? harena : arena, p[i].arena_off, half ? harena->dtype : FP_F32, nd, shape);
        if (rc)
            return rc;
    }
    return 0;
}

static void free_views(llm_param *p, int n)
{
    for (int i = 0; p && i < n; i++) {
        fp_tensor_free(p[i].view);
        fp_tensor_free(p[i].gview);
        p[i].view = p[i].gview = NULL;
    }
}

int fp_model_create(fp_model **out, fp_ctx *ctx, const fp_llama_config *cfg)
{
    if (!out || !ctx)
        return fp_seterr(FP_EINVAL, "model create: NULL argument");
    *out = NULL;
    int rc = fp_llama_config_check(cfg);
    if (rc)
        return rc;
    fp_model *m = calloc(1, sizeof *m);
    if (!m)
        return fp_seterr(FP_ENOMEM, "model create: out of host memory");
    m->ctx = ctx;
    m->cfg = *cfg;
    int64_t packed, arena, harena;
    m->np = base_layout(cfg, NULL, NULL, NULL, NULL, NULL, &packed, &arena, &harena);
    m->p = calloc((size_t)m->np, sizeof *m->p);
    m->L = calloc((size_t)cfg->layers, sizeof *m->L);
    if (!m->p || !m->L) {
        fp_model_free(m);
        return fp_seterr(FP_ENOMEM, "model create: out of host memory");
    }
    base_layout(cfg, m->p, m->L, &m->embed, &m->final_norm, &m->head, &packed, &arena, &harena);
    m->arena_elems = arena;
    m->half_elems = harena;
    rc = fp_tensor_new(&m->arena, ctx, FP_F32, 1, &arena);
    if (!rc)
        rc = fp_tensor_zero(m->arena);
    if (!rc && harena > 0)
        rc = fp_tensor_new(&m->half_arena, ctx, cfg->base_dtype, 1, &harena);
    if (!rc && m->half_arena)
        rc = fp_tensor_zero(m->half_arena);
    if (!rc)
        rc = make_views(m->arena, m->half_arena, m->p, m->np, 0);
    if (rc) {
        fp_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void fp_model_free(fp_model *m)
{
    if (!m)
        return;
    llm_plan_free(m);
    llm_kv_free(m);
    free_views(m->p, m->np);
    free_views(m->lp, m->nl);
    fp_tensor_free(m->grad_arena);
    fp_tensor_free(m->lora_arena);
    fp_tensor_free(m->half_arena);
    fp_tensor_free(m->arena);
    free(m->p);
    free(m->lp);
    free(m->L);
    free(m->lix);
    free(m);
}

const fp_llama_config *fp_model_cfg(const fp_model *m) { return m ? &m->cfg : NULL; }
fp_ctx *fp_model_ctx(const fp_model *m) { return m ? m->ctx : NULL; }

int fp_model_tensor_count(const fp_model *m, int lora) { return !m ? 0 : lora ? m->nl : m->np; }

int fp_model_tensor_info(const fp_model *m, int lora, int i, fp_param_info *out)
{
    if (!m || !out)
        return fp_seterr(FP_EINVAL, "model tensor info: NULL argument");
    int n = lora ? m->nl : m->np;
    if (i < 0 || i >= n)
        return fp_seterr(FP_EINVAL, "model tensor info: index %d outside 0..%d", i, n - 1);
    *out = (lora ? m->lp : m->p)[i].info;
    return 0;
}

int fp_model_tensor_find(const fp_model *m, int lora, const char *name)
{
    int n = fp_model_tensor_count(m, lora);
    const llm_param *p = lora ? m->lp : m->p;
    for (int i = 0; i < n && name; i++)
        if (!strcmp(p[i].info.name, name))
            return i;
    return fp_seterr(FP_ENOTFOUND, "model: no %s tensor named '%s'", lora ? "LoRA" : "base", name ? name : "(null)");
}

static uint16_t to_half(fp_dtype dt, float x) { return dt == FP_BF16 ? fp_f32_to_bf16(x) : fp_f32_to_f16(x); }
static float from_half(fp_dtype dt, uint16_t h) { return dt == FP_BF16 ? fp_bf16_to_f32(h) : fp_f16_to_f32(h); }

/* packed <-> padded arenas through host buffers (16-bit tensors converted) */
static int xfer(fp_model *m, int lora, int grads, float *packed, int64_t n, int up)
{
    llm_param *p = lora ? m->lp : m->p;
    int np = lora ? m->nl : m->np;
    fp_tensor *arena = grads ? m->grad_arena : lora ? m->lora_arena : m->arena;
    fp_tensor *harena = (!lora && !grads) ? m->half_arena : NULL;
    fp_dtype hdt = m->cfg.base_dtype;
    int64_t want = 0, elems = lora ? m->lora_arena_elems : m->arena_elems;
    if (!arena)
        return fp_seterr(FP_ESTATE, "model: %s", grads ? "no gradients (plan with training = 1 first)"
                                                       : "LoRA is not enabled");
    for (int i = 0; i < np; i++)
        want += p[i].info.numel;
    if (n != want)
        return fp_seterr(FP_ESHAPE, "model: %lld packed elements given, the %s has %lld", (long long)n,
                         lora ? "adapter" : "model", (long long)want);
    float *buf = calloc((size_t)elems, sizeof(float));
    uint16_t *hb = harena ? calloc((size_t)m->half_elems, sizeof(uint16_t)) : NULL;
    if (!buf || (harena && !hb)) {
        free(buf);
        free(hb);
        return fp_seterr(FP_ENOMEM, "model: out of host memory for a %lld-element copy", (long long)elems);
    }
    int rc = 0;
    if (up) {
        for (int i = 0; i < np; i++) {
            const float *src = packed + p[i].info.offset;
            if (p[i].half && hb)
                for (int64_t j = 0; j < p[i].info.numel; j++)
                    hb[p[i].arena_off + j] = to_half(hdt, src[j]);
            else
                memcpy(buf + p[i].arena_off, src, (size_t)p[i].info.numel * sizeof(float));
        }
        rc = fp_tensor_upload(arena, buf, (size_t)elems * sizeof(float));
        if (!rc && harena)
            rc = fp_tensor_upload(harena, hb, (size_t)m->half_elems * sizeof(uint16_t));
    } else {
        rc = fp_tensor_download(buf, (size_t)elems * sizeof(float), arena);
        if (!rc && harena)
            rc = fp_tensor_download(hb, (size_t)m->half_elems * sizeof(uint16_t), harena);
        for (int i = 0; !rc && i < np; i++) {
            float *dst = packed + p[i].info.offset;
            if (p[i].half && hb)
                for (int64_t j = 0; j < p[i].info.numel; j++)
                    dst[j] = from_half(hdt, hb[p[i].arena_off + j]);
            else
                memcpy(dst, buf + p[i].arena_off, (size_t)p[i].info.numel * sizeof(float));
        }
    }
    free(buf);
    free(hb);
    return rc;
}

int fp_model_upload(fp_model *m, int lora, const float *packed, int64_t n)
{
    if (!m || !packed)
        return fp_seterr(FP_EINVAL, "model upload: NULL argument");
    return xfer(m, lora, 0, (float *)packed, n, 1);
}

int fp_model_download(const fp_model *m, int lora, float *packed, int64_t n)
{
    if (!m || !packed)
        return fp_seterr(FP_EINVAL, "model download: NULL argument");
    return xfer((fp_model *)m, lora, 0, packed, n, 0);
}

int fp_model_download_grads(const fp_model *m, float *packed, int64_t n)
{
    if (!m || !packed)
        return fp_seterr(FP_EINVAL, "model download grads: NULL argument");
    return xfer((fp_model *)m, m->lora_on, 1, packed, n, 0);
}

int fp_model_upload_tensor(fp_model *m, int lora, int i, const float *data, int64_t numel)
{
    if (!m || !data)
        return fp_seterr(FP_EINVAL, "model upload tensor: NULL argument");
    int n = lora ? m->nl : m->np;
    if (i < 0 || i >= n)
        return fp_seterr(FP_EINVAL, "model upload tensor: index %d outside 0..%d", i, n - 1);
    llm_param *p = &(lora ? m->lp : m->p)[i];
    if (numel != p->info.numel)
        return fp_seterr(FP_ESHAPE, "model upload tensor: %s has %lld elements, %lld given", p->info.name,
                         (long long)p->info.numel, (long long)numel);
    if (!p->half)
        return fp_tensor_upload(p->view, data, (size_t)numel * sizeof(float));
    uint16_t *h = malloc((size_t)numel * sizeof(uint16_t));
    if (!h)
        return fp_seterr(FP_ENOMEM, "model upload tensor: out of host memory");
    for (int64_t j = 0; j < numel; j++)
        h[j] = to_half(m->cfg.base_dtype, data[j]);
    int rc = fp_tensor_upload(p->view, h, (size_t)numel * sizeof(uint16_t));
    free(h);
    return rc;
}

/* splitmix64 + Box-Muller: deterministic across platforms */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double rng_normal(uint64_t *s)
{
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int fp_model_init_random(fp_model *m, uint64_t seed)
{
    if (!m)
        return fp_seterr(FP_EINVAL, "model init: NULL model");
    int64_t n = fp_llama_param_count(&m->cfg);
    float *buf = malloc((size_t)n * sizeof(float));
    if (!buf)
        return fp_seterr(FP_ENOMEM, "model init: out of host memory");
    uint64_t s = seed;
    for (int i = 0; i < m->np; i++) {
        const fp_param_info *in = &m->p[i].info;
        int is_norm = strstr(in->name, "norm") != NULL, is_bias = strstr(in->name, ".bias") != NULL;
        for (int64_t j = 0; j < in->numel; j++)
            buf[in->offset + j] = is_norm ? 1.0f : is_bias ? 0.0f : (float)(0.02 * rng_normal(&s));
    }
    int rc = fp_model_upload(m, 0, buf, n);
    free(buf);
    return rc;
}

int fp_model_lora_enable(fp_model *m, const fp_lora_config *lc, uint64_t seed)
{
    if (!m || !lc)
        return fp_seterr(FP_EINVAL, "lora enable: NULL argument");
    if (m->lora_on)
        return fp_seterr(FP_ESTATE, "lora enable: the model already has adapters");
    if (lc->rank < 1 || lc->rank > 4096)
        return fp_seterr(FP_EINVAL, "lora enable: rank %d outside 1..4096", lc->rank);
    if (!(lc->targets & FP_LORA_ALL) || (lc->targets & ~(unsigned)FP_LORA_ALL))
        return fp_seterr(FP_EINVAL, "lora enable: targets 0x%x must be a nonzero subset of 0x7f", lc->targets);
    if (!isfinite(lc->alpha))
        return fp_seterr(FP_EINVAL, "lora enable: alpha is not finite");
    if (lc->layers && m->cfg.layers > 64)
        return fp_seterr(FP_EINVAL, "lora enable: a layer subset needs a model of at most 64 layers (this one has %lld)",
                         (long long)m->cfg.layers);
    if (m->cfg.layers < 64 && (lc->layers >> m->cfg.layers))
        return fp_seterr(FP_EINVAL, "lora enable: layers mask 0x%llx names layers beyond the model's %lld",
                         (unsigned long long)lc->layers, (long long)m->cfg.layers);
    if (m->plan.arena)
        return fp_seterr(FP_ESTATE, "lora enable: enable adapters before fp_model_plan");
    llm_kv_free(m); /* its activations have no room for the adapters' x A^T */
    int64_t packed, arena;
    int n = lora_layout(&m->cfg, lc, NULL, NULL, &packed, &arena);
    m->lp = calloc((size_t)n, sizeof *m->lp);
    m->lix = calloc((size_t)m->cfg.layers, sizeof *m->lix);
    if (!m->lp || !m->lix)
        return fp_seterr(FP_ENOMEM, "lora enable: out of host memory");
    lora_layout(&m->cfg, lc, m->lp, m->lix, &packed, &arena);
    m->nl = n;
    m->lora_arena_elems = arena;
    int rc = fp_tensor_new(&m->lora_arena, m->ctx, FP_F32, 1, &arena);
    if (!rc)
        rc = make_views(m->lora_arena, NULL, m->lp, n, 0);
    if (rc) {
        free_views(m->lp, n);
        fp_tensor_free(m->lora_arena);
        m->lora_arena = NULL;
        free(m->lp);
        free(m->lix);
        m->lp = NULL;
        m->lix = NULL;
        m->nl = 0;
        return rc;
    }
    m->lc = *lc;
    m->lora_on = 1;
    /* PEFT's default: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0 */
    float *buf = calloc((size_t)packed, sizeof(float));
    if (!buf)
        return fp_seterr(FP_ENOMEM, "lora enable: out of host memory");
    uint64_t s = seed ^ 0x10a4a10a4ull;
    for (int i = 0; i < n; i += 2) {
        const fp_param_info *a = &m->lp[i].info;
        double bound = 1.0 / sqrt((double)a->cols);
        for (int64_t j = 0; j < a->numel; j++)
            buf[a->offset + j] = (float)((2.0 * rng_uniform(&s) - 1.0) * bound);
    }
    rc = fp_model_upload(m, 1, buf, packed);
    free(buf);
    return rc;
}

int fp_model_lora_get(const fp_model *m, fp_lora_config *lc)
{
    if (!m || !m->lora_on)
        return 0;
    if (lc)
        *lc = m->lc;
    return 1;
}

fp_tensor *fp_model_train_params(fp_model *m) { return !m ? NULL : m->lora_on ? m->lora_arena : m->arena; }
fp_tensor *fp_model_train_grads(fp_model *m) { return m ? m->grad_arena : NULL; }

int fp_model_zero_grads(fp_model *m)
{
    if (!m || !m->grad_arena)
        return fp_seterr(FP_ESTATE, "model: no gradients (plan with training = 1 first)");
    return fp_tensor_zero(m->grad_arena);
}
