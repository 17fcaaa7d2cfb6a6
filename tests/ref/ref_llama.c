/* Double-precision reference Llama (see ref_llama.h). Deliberately naive and
 * self-contained: no fedproxy code is used, so a bug in the device path or in
 * the op references cannot hide here. */
#include "ref_llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const TARGET_NAMES[REF_NTARGET] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                      "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                      "mlp.down_proj"};

static void target_dims(const ref_cfg *c, int t, int *in, int *out)
{
    int C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->inter;
    switch (t) {
    case REF_Q: *in = C; *out = qd; break;
    case REF_K: *in = C; *out = kd; break;
    case REF_V: *in = C; *out = kd; break;
    case REF_O: *in = qd; *out = C; break;
    case REF_GATE: *in = C; *out = I; break;
    case REF_UP: *in = C; *out = I; break;
    default: *in = I; *out = C; break;
    }
}

static int add_t(ref_tensor_info *out, int max, int n, int64_t *off, const char *name, int64_t rows, int64_t cols)
{
    if (n < max && out) {
        snprintf(out[n].name, sizeof out[n].name, "%s", name);
        out[n].offset = *off;
        out[n].numel = rows * cols;
        out[n].rows = rows;
        out[n].cols = cols;
    }
    *off += rows * cols;
    return n + 1;
}

int ref_param_layout(const ref_cfg *c, ref_tensor_info *out, int max, int64_t *total)
{
    int64_t off = 0;
    int n = 0;
    char nm[64];
    int C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->inter;
    n = add_t(out, max, n, &off, "model.embed_tokens.weight", c->vocab, C);
    for (int l = 0; l < c->layers; l++) {
#define T_(suffix, r, cc)                                                                         \
    do {                                                                                          \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                 \
        n = add_t(out, max, n, &off, nm, r, cc);                                                  \
    } while (0)
        T_("input_layernorm.weight", C, 1);
        T_("self_attn.q_proj.weight", qd, C);
        if (c->attn_bias)
            T_("self_attn.q_proj.bias", qd, 1);
        T_("self_attn.k_proj.weight", kd, C);
        if (c->attn_bias)
            T_("self_attn.k_proj.bias", kd, 1);
        T_("self_attn.v_proj.weight", kd, C);
        if (c->attn_bias)
            T_("self_attn.v_proj.bias", kd, 1);
        T_("self_attn.o_proj.weight", C, qd);
        T_("post_attention_layernorm.weight", C, 1);
        T_("mlp.gate_proj.weight", I, C);
        T_("mlp.up_proj.weight", I, C);
        T_("mlp.down_proj.weight", C, I);
#undef T_
    }
    n = add_t(out, max, n, &off, "model.norm.weight", C, 1);
    if (!c->tied)
        n = add_t(out, max, n, &off, "lm_head.weight", c->vocab, C);
    *total = off;
    return n;
}

int ref_lora_layout(const ref_cfg *c, const ref_lora *lo, ref_tensor_info *out, int max, int64_t *total)
{
    int64_t off = 0;
    int n = 0;
    char nm[96];
    for (int l = 0; l < c->layers; l++)
        for (int t = 0; t < REF_NTARGET; t++) {
            if (!(lo->targets & (1u << t)))
                continue;
            int in, o;
            target_dims(c, t, &in, &o);
            snprintf(nm, sizeof nm, "model.layers.%d.%s.lora_A.weight", l, TARGET_NAMES[t]);
            n = add_t(out, max, n, &off, nm, lo->rank, in);
            snprintf(nm, sizeof nm, "model.layers.%d.%s.lora_B.weight", l, TARGET_NAMES[t]);
            n = add_t(out, max, n, &off, nm, o, lo->rank);
        }
    *total = off;
    return n;
}

/* ---- building blocks ------------------------------------------------------ */

typedef struct lin {
    const double *W, *b; /* b may be NULL */
    const double *A, *Bm; /* LoRA, may be NULL */
    double *dW, *db, *dA, *dB;
    int in, out, r;
    double s;
    int drop;              /* LoRA dropout on */
    uint32_t key, thresh;  /* its mask */
    double dscale;         /* 1 / (1 - p) */
} lin;

/* LoRA dropout mask, from model.h's definition (MurmurHash3 fmix32) */
static uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static void drop_setup(lin *L, const ref_lora *lo, int layer, int target)
{
    if (!(lo->dropout > 0))
        return;
    uint32_t salt = (uint32_t)(layer * 7 + target);
    uint32_t inner = (uint32_t)(lo->drop_seed >> 32) + (uint32_t)lo->drop_ctr * 0x9E3779B1u + salt * 0x85EBCA77u +
                     (uint32_t)(lo->drop_ctr >> 32) * 0xC2B2AE3Du;
    L->key = mix32((uint32_t)lo->drop_seed ^ mix32(inner));
    double t = floor(lo->dropout * 4294967296.0);
    L->thresh = t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
    L->dscale = 1.0 / (1.0 - (double)(float)lo->dropout); /* the device's p is a float */
    L->drop = 1;
}

/* the factor dropout applies to element i of the adapter's input */
static double drop_factor(const lin *L, int64_t i)
{
    if (!L->drop)
        return 1.0;
    return mix32(((uint32_t)i * 0x9E3779B1u) ^ L->key) >= L->thresh ? L->dscale : 0.0;
}

/* y [N, out] = x W^T + b + s (x A^T) B^T; u [N, r] saved when LoRA. */
static void lin_fwd(const lin *L, double *y, double *u, const double *x, int N)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (int64_t)n * L->in;
        for (int o = 0; o < L->out; o++) {
            double acc = L->b ? L->b[o] : 0.0;
            const double *w = L->W + (int64_t)o * L->in;
            for (int i = 0; i < L->in; i++)
                acc += xr[i] * w[i];
            y[(int64_t)n * L->out + o] = acc;
        }
        if (L->A) {
            double *ur = u + (int64_t)n * L->r;
            for (int j = 0; j < L->r; j++) {
                double acc = 0;
                for (int i = 0; i < L->in; i++)
                    acc += xr[i] * drop_factor(L, (int64_t)n * L->in + i) * L->A[(int64_t)j * L->in + i];
                ur[j] = acc;
            }
            for (int o = 0; o < L->out; o++) {
                double acc = 0;
                for (int j = 0; j < L->r; j++)
                    acc += ur[j] * L->Bm[(int64_t)o * L->r + j];
                y[(int64_t)n * L->out + o] += L->s * acc;
            }
        }
    }
}

/* dx += dy W + s (dy B) A; dW += dy^T x; db += sum dy; dB += s dy^T u; dA += s (dy B)^T x. */
static void lin_bwd(const lin *L, double *dx, const double *dy, const double *x, const double *u, int N)
{
    double *g = L->A ? calloc((size_t)L->r, sizeof(double)) : NULL;
    for (int n = 0; n < N; n++) {
        const double *dyr = dy + (int64_t)n * L->out, *xr = x + (int64_t)n * L->in;
        double *dxr = dx + (int64_t)n * L->in;
        for (int o = 0; o < L->out; o++) {
            double d = dyr[o];
            const double *w = L->W + (int64_t)o * L->in;
            for (int i = 0; i < L->in; i++)
                dxr[i] += d * w[i];
            if (L->dW) {
                double *dw = L->dW + (int64_t)o * L->in;
                for (int i = 0; i < L->in; i++)
                    dw[i] += d * xr[i];
            }
            if (L->db)
                L->db[o] += d;
        }
        if (L->A) {
            const double *ur = u + (int64_t)n * L->r;
            for (int j = 0; j < L->r; j++) {
                double acc = 0;
                for (int o = 0; o < L->out; o++)
                    acc += dyr[o] * L->Bm[(int64_t)o * L->r + j];
                g[j] = acc;
            }
            for (int j = 0; j < L->r; j++)
                for (int i = 0; i < L->in; i++)
                    dxr[i] += L->s * g[j] * L->A[(int64_t)j * L->in + i] * drop_factor(L, (int64_t)n * L->in + i);
            if (L->dB)
                for (int o = 0; o < L->out; o++)
                    for (int j = 0; j < L->r; j++)
                        L->dB[(int64_t)o * L->r + j] += L->s * dyr[o] * ur[j];
            if (L->dA)
                for (int j = 0; j < L->r; j++)
                    for (int i = 0; i < L->in; i++)
                        L->dA[(int64_t)j * L->in + i] += L->s * g[j] * xr[i] * drop_factor(L, (int64_t)n * L->in + i);
        }
    }
    free(g);
}

static void rms_fwd(double *y, double *rstd, const double *x, const double *w, int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (int64_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++)
            ss += xr[i] * xr[i];
        double r = 1.0 / sqrt(ss / C + eps);
        rstd[n] = r;
        for (int i = 0; i < C; i++)
            y[(int64_t)n * C + i] = xr[i] * r * w[i];
    }
}

/* dx += d(y)/dx^T dy; dw += sum dy * x * r. */
static void rms_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w, const double *rstd,
                    int N, int C)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (int64_t)n * C, *dyr = dy + (int64_t)n * C;
        double r = rstd[n], dot = 0;
        for (int i = 0; i < C; i++)
            dot += dyr[i] * w[i] * xr[i];
        for (int i = 0; i < C; i++) {
            dx[(int64_t)n * C + i] += r * dyr[i] * w[i] - xr[i] * r * r * r * dot / C;
            if (dw)
                dw[i] += dyr[i] * xr[i] * r;
        }
    }
}

/* In-place RoPE on [B, T, H, D] rows; inverse applies the transpose rotation. */
static void rope(double *x, int B, int T, int H, int D, double theta, int inverse)
{
    int half = D / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                double *p = x + (((int64_t)b * T + t) * H + h) * D;
                for (int i = 0; i < half; i++) {
                    double inv_freq = pow(theta, -2.0 * i / D);
                    double ang = t * inv_freq, cs = cos(ang), sn = sin(ang);
                    if (inverse)
                        sn = -sn;
                    double x1 = p[i], x2 = p[i + half];
                    p[i] = x1 * cs - x2 * sn;
                    p[i + half] = x2 * cs + x1 * sn;
                }
            }
}

static double silu(double g) { return g / (1.0 + exp(-g)); }

/* ---- the model ------------------------------------------------------------- */

typedef struct layer_off {
    int64_t attn_norm, wq, bq, wk, bk, wv, bv, wo, mlp_norm, wg, wu, wd, bo_none; /* bo_none: always -1 */
} layer_off;

typedef struct layer_act {
    double *x_in, *a, *rstd1, *q, *k, *v, *P, *o, *x_mid, *m, *rstd2, *g, *up, *h;
    double *lu[REF_NTARGET];
} layer_act;

static void *zalloc(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

double ref_llama_run(const ref_cfg *c, const double *P, const ref_lora *lora, const double *LP, const int32_t *ids,
                     const int32_t *targets, int B, int T, double *logits_out, double *dP, double *dL)
{
    const int C = c->hidden, Hq = c->heads, Hkv = c->kv_heads, D = c->head_dim, I = c->inter, V = c->vocab;
    const int qd = Hq * D, kd = Hkv * D, N = B * T, NL = c->layers;
    const double scale = 1.0 / sqrt((double)D);
    const int use_lora = lora && LP && lora->rank > 0;
    const int backward = dP || dL;

    /* offsets */
    layer_off *lo = calloc((size_t)NL, sizeof *lo);
    int64_t off = (int64_t)V * C;
    for (int l = 0; l < NL; l++) {
        lo[l].bo_none = -1;
        lo[l].attn_norm = off; off += C;
        lo[l].wq = off; off += (int64_t)qd * C;
        lo[l].bq = -1;
        if (c->attn_bias) { lo[l].bq = off; off += qd; }
        lo[l].wk = off; off += (int64_t)kd * C;
        lo[l].bk = -1;
        if (c->attn_bias) { lo[l].bk = off; off += kd; }
        lo[l].wv = off; off += (int64_t)kd * C;
        lo[l].bv = -1;
        if (c->attn_bias) { lo[l].bv = off; off += kd; }
        lo[l].wo = off; off += (int64_t)C * qd;
        lo[l].mlp_norm = off; off += C;
        lo[l].wg = off; off += (int64_t)I * C;
        lo[l].wu = off; off += (int64_t)I * C;
        lo[l].wd = off; off += (int64_t)C * I;
    }
    int64_t final_norm = off;
    off += C;
    int64_t head = c->tied ? 0 : off;
    if (!c->tied)
        off += (int64_t)V * C;
    int64_t nparams = off;

    /* LoRA offsets: [layer][target] -> A offset (B follows) or -1 */
    int64_t (*loff)[REF_NTARGET] = calloc((size_t)NL, sizeof *loff);
    int64_t nlora = 0;
    for (int l = 0; l < NL; l++)
        for (int t = 0; t < REF_NTARGET; t++) {
            loff[l][t] = -1;
            if (use_lora && (lora->targets & (1u << t))) {
                int in, o;
                target_dims(c, t, &in, &o);
                loff[l][t] = nlora;
                nlora += (int64_t)lora->rank * in + (int64_t)o * lora->rank;
            }
        }
    if (dP)
        memset(dP, 0, (size_t)nparams * sizeof(double));
    if (dL && nlora)
        memset(dL, 0, (size_t)nlora * sizeof(double));

#define MKLIN(L_, l_, t_, W_, b_, in_, out_)                                                      \
    do {                                                                                          \
        memset(&(L_), 0, sizeof(L_));                                                             \
        (L_).W = P + lo[l_].W_;                                                                   \
        (L_).b = lo[l_].b_ >= 0 ? P + lo[l_].b_ : NULL;                                           \
        (L_).in = (in_);                                                                          \
        (L_).out = (out_);                                                                        \
        if (dP) {                                                                                 \
            (L_).dW = dP + lo[l_].W_;                                                             \
            (L_).db = lo[l_].b_ >= 0 ? dP + lo[l_].b_ : NULL;                                     \
        }                                                                                         \
        if (loff[l_][t_] >= 0) {                                                                  \
            (L_).r = lora->rank;                                                                  \
            (L_).s = lora->alpha / lora->rank;                                                    \
            (L_).A = LP + loff[l_][t_];                                                           \
            drop_setup(&(L_), lora, (l_), (t_));                                                  \
            (L_).Bm = (L_).A + (int64_t)lora->rank * (in_);                                       \
            if (dL) {                                                                             \
                (L_).dA = dL + loff[l_][t_];                                                      \
                (L_).dB = (L_).dA + (int64_t)lora->rank * (in_);                                  \
            }                                                                                     \
        }                                                                                         \
    } while (0)

    layer_act *act = calloc((size_t)NL, sizeof *act);
    double *x = zalloc((int64_t)N * C);
    for (int n = 0; n < N; n++) {
        int id = ids[n];
        if (id >= 0 && id < V)
            memcpy(x + (int64_t)n * C, P + (int64_t)id * C, (size_t)C * sizeof(double));
    }
    double *tmp = zalloc((int64_t)N * C);
    int rr = use_lora ? lora->rank : 0;
    for (int l = 0; l < NL; l++) {
        layer_act *A = &act[l];
        A->x_in = x;
        A->a = zalloc((int64_t)N * C);
        A->rstd1 = zalloc(N);
        A->q = zalloc((int64_t)N * qd);
        A->k = zalloc((int64_t)N * kd);
        A->v = zalloc((int64_t)N * kd);
        A->P = zalloc((int64_t)B * Hq * T * T);
        A->o = zalloc((int64_t)N * qd);
        A->x_mid = zalloc((int64_t)N * C);
        A->m = zalloc((int64_t)N * C);
        A->rstd2 = zalloc(N);
        A->g = zalloc((int64_t)N * I);
        A->up = zalloc((int64_t)N * I);
        A->h = zalloc((int64_t)N * I);
        for (int t = 0; t < REF_NTARGET; t++)
            A->lu[t] = zalloc((int64_t)N * (rr ? rr : 1));

        lin Lq, Lk, Lv, Lo, Lg, Lu, Ld;
        MKLIN(Lq, l, REF_Q, wq, bq, C, qd);
        MKLIN(Lk, l, REF_K, wk, bk, C, kd);
        MKLIN(Lv, l, REF_V, wv, bv, C, kd);
        MKLIN(Lo, l, REF_O, wo, bo_none, qd, C);
        MKLIN(Lg, l, REF_GATE, wg, bo_none, C, I);
        MKLIN(Lu, l, REF_UP, wu, bo_none, C, I);
        MKLIN(Ld, l, REF_DOWN, wd, bo_none, I, C);

        rms_fwd(A->a, A->rstd1, x, P + lo[l].attn_norm, N, C, c->rms_eps);
        lin_fwd(&Lq, A->q, A->lu[REF_Q], A->a, N);
        lin_fwd(&Lk, A->k, A->lu[REF_K], A->a, N);
        lin_fwd(&Lv, A->v, A->lu[REF_V], A->a, N);
        rope(A->q, B, T, Hq, D, c->rope_theta, 0);
        rope(A->k, B, T, Hkv, D, c->rope_theta, 0);
        /* attention */
        for (int b = 0; b < B; b++)
            for (int h = 0; h < Hq; h++) {
                int kh = h / (Hq / Hkv);
                for (int t = 0; t < T; t++) {
                    double *pr = A->P + (((int64_t)b * Hq + h) * T + t) * T;
                    const double *qv = A->q + (((int64_t)b * T + t) * Hq + h) * D;
                    double mx = -INFINITY;
                    for (int s = 0; s <= t; s++) {
                        const double *kv = A->k + (((int64_t)b * T + s) * Hkv + kh) * D;
                        double acc = 0;
                        for (int d = 0; d < D; d++)
                            acc += qv[d] * kv[d];
                        pr[s] = acc * scale;
                        if (pr[s] > mx)
                            mx = pr[s];
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++) {
                        pr[s] = exp(pr[s] - mx);
                        sum += pr[s];
                    }
                    double *ov = A->o + (((int64_t)b * T + t) * Hq + h) * D;
                    for (int s = 0; s <= t; s++) {
                        pr[s] /= sum;
                        const double *vv = A->v + (((int64_t)b * T + s) * Hkv + kh) * D;
                        for (int d = 0; d < D; d++)
                            ov[d] += pr[s] * vv[d];
                    }
                }
            }
        lin_fwd(&Lo, tmp, A->lu[REF_O], A->o, N);
        for (int64_t i = 0; i < (int64_t)N * C; i++)
            A->x_mid[i] = x[i] + tmp[i];
        rms_fwd(A->m, A->rstd2, A->x_mid, P + lo[l].mlp_norm, N, C, c->rms_eps);
        lin_fwd(&Lg, A->g, A->lu[REF_GATE], A->m, N);
        lin_fwd(&Lu, A->up, A->lu[REF_UP], A->m, N);
        for (int64_t i = 0; i < (int64_t)N * I; i++)
            A->h[i] = silu(A->g[i]) * A->up[i];
        lin_fwd(&Ld, tmp, A->lu[REF_DOWN], A->h, N);
        double *xn = zalloc((int64_t)N * C);
        for (int64_t i = 0; i < (int64_t)N * C; i++)
            xn[i] = A->x_mid[i] + tmp[i];
        x = xn;
    }
    double *f = zalloc((int64_t)N * C), *rstdf = zalloc(N), *logits = zalloc((int64_t)N * V);
    rms_fwd(f, rstdf, x, P + final_norm, N, C, c->rms_eps);
    const double *H = P + head;
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double acc = 0;
            for (int i = 0; i < C; i++)
                acc += f[(int64_t)n * C + i] * H[(int64_t)v * C + i];
            logits[(int64_t)n * V + v] = acc;
        }
    if (logits_out)
        memcpy(logits_out, logits, (size_t)N * V * sizeof(double));
    double loss = 0;
    int nvalid = 0;
    double *lse = zalloc(N);
    for (int n = 0; n < N; n++) {
        const double *lr = logits + (int64_t)n * V;
        double mx = lr[0];
        for (int v = 1; v < V; v++)
            if (lr[v] > mx)
                mx = lr[v];
        double s = 0;
        for (int v = 0; v < V; v++)
            s += exp(lr[v] - mx);
        lse[n] = mx + log(s);
        int t = targets[n];
        if (t >= 0 && t < V) {
            loss += lse[n] - lr[t];
            nvalid++;
        }
    }
    if (nvalid)
        loss /= nvalid;

    if (backward && nvalid) {
        /* dlogits in place */
        for (int n = 0; n < N; n++) {
            double *lr = logits + (int64_t)n * V;
            int t = targets[n];
            int valid = t >= 0 && t < V;
            for (int v = 0; v < V; v++)
                lr[v] = valid ? (exp(lr[v] - lse[n]) - (v == t)) / nvalid : 0.0;
        }
        double *df = zalloc((int64_t)N * C);
        double *dH = dP ? dP + head : NULL;
        for (int n = 0; n < N; n++)
            for (int v = 0; v < V; v++) {
                double d = logits[(int64_t)n * V + v];
                if (d == 0.0)
                    continue;
                for (int i = 0; i < C; i++) {
                    df[(int64_t)n * C + i] += d * H[(int64_t)v * C + i];
                    if (dH)
                        dH[(int64_t)v * C + i] += d * f[(int64_t)n * C + i];
                }
            }
        double *dx = zalloc((int64_t)N * C);
        rms_bwd(dx, dP ? dP + final_norm : NULL, df, x, P + final_norm, rstdf, N, C);
        free(df);
        double *dmid = zalloc((int64_t)N * C), *dm = zalloc((int64_t)N * C), *dh = zalloc((int64_t)N * I);
        double *dg = zalloc((int64_t)N * I), *du = zalloc((int64_t)N * I), *dO = zalloc((int64_t)N * qd);
        double *dq = zalloc((int64_t)N * qd), *dk = zalloc((int64_t)N * kd), *dv = zalloc((int64_t)N * kd);
        double *da = zalloc((int64_t)N * C), *dPr = zalloc(T);
        for (int l = NL - 1; l >= 0; l--) {
            layer_act *A = &act[l];
            lin Lq, Lk, Lv, Lo, Lg, Lu, Ld;
            MKLIN(Lq, l, REF_Q, wq, bq, C, qd);
            MKLIN(Lk, l, REF_K, wk, bk, C, kd);
            MKLIN(Lv, l, REF_V, wv, bv, C, kd);
            MKLIN(Lo, l, REF_O, wo, bo_none, qd, C);
            MKLIN(Lg, l, REF_GATE, wg, bo_none, C, I);
            MKLIN(Lu, l, REF_UP, wu, bo_none, C, I);
            MKLIN(Ld, l, REF_DOWN, wd, bo_none, I, C);
            /* MLP */
            memset(dh, 0, (size_t)N * I * sizeof(double));
            lin_bwd(&Ld, dh, dx, A->h, A->lu[REF_DOWN], N);
            for (int64_t i = 0; i < (int64_t)N * I; i++) {
                double g = A->g[i], sg = 1.0 / (1.0 + exp(-g));
                du[i] = dh[i] * silu(g);
                dg[i] = dh[i] * A->up[i] * sg * (1.0 + g * (1.0 - sg));
            }
            memset(dm, 0, (size_t)N * C * sizeof(double));
            lin_bwd(&Lg, dm, dg, A->m, A->lu[REF_GATE], N);
            lin_bwd(&Lu, dm, du, A->m, A->lu[REF_UP], N);
            memcpy(dmid, dx, (size_t)N * C * sizeof(double));
            rms_bwd(dmid, dP ? dP + lo[l].mlp_norm : NULL, dm, A->x_mid, P + lo[l].mlp_norm, A->rstd2, N, C);
            /* attention */
            memset(dO, 0, (size_t)N * qd * sizeof(double));
            lin_bwd(&Lo, dO, dmid, A->o, A->lu[REF_O], N);
            memset(dq, 0, (size_t)N * qd * sizeof(double));
            memset(dk, 0, (size_t)N * kd * sizeof(double));
            memset(dv, 0, (size_t)N * kd * sizeof(double));
            for (int b = 0; b < B; b++)
                for (int h = 0; h < Hq; h++) {
                    int kh = h / (Hq / Hkv);
                    for (int t = 0; t < T; t++) {
                        const double *pr = A->P + (((int64_t)b * Hq + h) * T + t) * T;
                        const double *dov = dO + (((int64_t)b * T + t) * Hq + h) * D;
                        const double *qv = A->q + (((int64_t)b * T + t) * Hq + h) * D;
                        double *dqv = dq + (((int64_t)b * T + t) * Hq + h) * D;
                        double dot = 0;
                        for (int s = 0; s <= t; s++) {
                            const double *vv = A->v + (((int64_t)b * T + s) * Hkv + kh) * D;
                            double *dvv = dv + (((int64_t)b * T + s) * Hkv + kh) * D;
                            double acc = 0;
                            for (int d = 0; d < D; d++) {
                                acc += dov[d] * vv[d];
                                dvv[d] += pr[s] * dov[d];
                            }
                            dPr[s] = acc;
                            dot += pr[s] * acc;
                        }
                        for (int s = 0; s <= t; s++) {
                            double ds = pr[s] * (dPr[s] - dot) * scale;
                            const double *kv = A->k + (((int64_t)b * T + s) * Hkv + kh) * D;
                            double *dkv = dk + (((int64_t)b * T + s) * Hkv + kh) * D;
                            for (int d = 0; d < D; d++) {
                                dqv[d] += ds * kv[d];
                                dkv[d] += ds * qv[d];
                            }
                        }
                    }
                }
            rope(dq, B, T, Hq, D, c->rope_theta, 1);
            rope(dk, B, T, Hkv, D, c->rope_theta, 1);
            memset(da, 0, (size_t)N * C * sizeof(double));
            lin_bwd(&Lq, da, dq, A->a, A->lu[REF_Q], N);
            lin_bwd(&Lk, da, dk, A->a, A->lu[REF_K], N);
            lin_bwd(&Lv, da, dv, A->a, A->lu[REF_V], N);
            memcpy(dx, dmid, (size_t)N * C * sizeof(double));
            rms_bwd(dx, dP ? dP + lo[l].attn_norm : NULL, da, A->x_in, P + lo[l].attn_norm, A->rstd1, N, C);
        }
        if (dP)
            for (int n = 0; n < N; n++) {
                int id = ids[n];
                if (id < 0 || id >= V)
                    continue;
                for (int i = 0; i < C; i++)
                    dP[(int64_t)id * C + i] += dx[(int64_t)n * C + i];
            }
        free(dx); free(dmid); free(dm); free(dh); free(dg); free(du); free(dO);
        free(dq); free(dk); free(dv); free(da); free(dPr);
    }
#undef MKLIN
    for (int l = 0; l < NL; l++) {
        layer_act *A = &act[l];
        free(A->x_in); free(A->a); free(A->rstd1); free(A->q); free(A->k); free(A->v); free(A->P);
        free(A->o); free(A->x_mid); free(A->m); free(A->rstd2); free(A->g); free(A->up); free(A->h);
        for (int t = 0; t < REF_NTARGET; t++)
            free(A->lu[t]);
    }
    free(x); free(tmp); free(f); free(rstdf); free(logits); free(lse);
    free(act); free(lo); free(loff);
    return loss;
}

void ref_adamw(double *p, const double *g, double *m, double *v, int64_t n, double lr, double b1, double b2,
               double eps, double wd, int step)
{
    double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    for (int64_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        p[i] -= lr * ((m[i] / bc1) / (sqrt(v[i] / bc2) + eps) + wd * p[i]);
    }
}

double ref_clip_factor(const double *g, int64_t n, double max_norm)
{
    if (max_norm <= 0)
        return 1.0;
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += g[i] * g[i];
    double f = max_norm / (sqrt(ss) + 1e-6);
    return f < 1.0 ? f : 1.0;
}
