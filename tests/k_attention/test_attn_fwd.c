/* Fused attention forward (o and lse) and KV-cache decode vs the C reference,
 * GQA and MHA, odd T and D, B = 2, causal and not; every kernel variant (tiled,
 * direct, sg) under the native profile and every built-in overlay. */
#include <math.h>

#include "attn_common.h"

typedef struct acase {
    int64_t B, T, Hq, Hkv, D;
    int causal;
} acase;

static void run_forward(fp_ctx *ctx, const acase *c)
{
    int64_t nq = c->B * c->T * c->Hq * c->D, nk = c->B * c->T * c->Hkv * c->D, nl = c->B * c->Hq * c->T;
    int64_t sq[4] = {c->B, c->T, c->Hq, c->D}, sk[4] = {c->B, c->T, c->Hkv, c->D}, sl[3] = {c->B, c->Hq, c->T};
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f);
    float *oref = malloc(sizeof(float) * (size_t)nq), *lref = malloc(sizeof(float) * (size_t)nl);
    fp_attn_desc d = {0.0f, c->causal};
    CHECK_OK(fp_attention_forward_ref(oref, lref, q, k, v, c->B, c->T, c->Hq, c->Hkv, c->D, &d));
    fp_tensor *tq = dev(ctx, 4, sq, q), *tk = dev(ctx, 4, sk, k), *tv = dev(ctx, 4, sk, v);
    fp_tensor *to = dev(ctx, 4, sq, NULL), *tl = dev(ctx, 3, sl, NULL), *to2 = dev(ctx, 4, sq, NULL);
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_attention_forward(s, to, tl, tq, tk, tv, &d));
    CHECK_OK(fp_attention_forward(s, to2, NULL, tq, tk, tv, &d)); /* inference: no lse */
    CHECK_OK(fp_stream_run(s));
    float *o = down(to), *l = down(tl), *o2 = down(to2);
    char what[160];
    snprintf(what, sizeof what, "forward o B=%lld T=%lld Hq=%lld Hkv=%lld D=%lld causal=%d", (long long)c->B,
             (long long)c->T, (long long)c->Hq, (long long)c->Hkv, (long long)c->D, c->causal);
    cmp(what, o, oref, (size_t)nq, 5e-4);
    cmp("forward o (no lse)", o2, oref, (size_t)nq, 5e-4);
    cmp("forward lse", l, lref, (size_t)nl, 5e-4);
    CHECKF(fp_test_maxerr(o, oref, (size_t)nq) < 1e-3, "max err %g", fp_test_maxerr(o, oref, (size_t)nq));
    fp_stream_free(s);
    fp_tensor_free(tq), fp_tensor_free(tk), fp_tensor_free(tv), fp_tensor_free(to), fp_tensor_free(tl);
    fp_tensor_free(to2);
    free(q), free(k), free(v), free(oref), free(lref), free(o), free(l), free(o2);
}

/* Tq new tokens at position pos of a cache of t_max rows vs rows pos.. of the
 * full causal forward over pos+Tq tokens. */
static void run_decode(fp_ctx *ctx, int64_t B, int64_t Hq, int64_t Hkv, int64_t D, int64_t t_max, int64_t pos,
                       int64_t Tq, int with_ws)
{
    int64_t T = pos + Tq;
    int64_t nq = B * T * Hq * D, nk = B * T * Hkv * D;
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *oref = malloc(sizeof(float) * (size_t)nq);
    fp_attn_desc d = {0.0f, 1};
    CHECK_OK(fp_attention_forward_ref(oref, NULL, q, k, v, B, T, Hq, Hkv, D, &d));
    /* cache [B, t_max, Hkv, D]: rows < T valid, the rest garbage (must be ignored) */
    int64_t nc = B * t_max * Hkv * D, rowk = Hkv * D, rowq = Hq * D;
    float *kc = rnd(nc, 100.0f), *vc = rnd(nc, 100.0f);
    float *qn = malloc(sizeof(float) * (size_t)(B * Tq * rowq)), *on = malloc(sizeof(float) * (size_t)(B * Tq * rowq));
    for (int64_t b = 0; b < B; b++) {
        memcpy(kc + b * t_max * rowk, k + b * T * rowk, sizeof(float) * (size_t)(T * rowk));
        memcpy(vc + b * t_max * rowk, v + b * T * rowk, sizeof(float) * (size_t)(T * rowk));
        memcpy(qn + b * Tq * rowq, q + (b * T + pos) * rowq, sizeof(float) * (size_t)(Tq * rowq));
        memcpy(on + b * Tq * rowq, oref + (b * T + pos) * rowq, sizeof(float) * (size_t)(Tq * rowq));
    }
    int64_t sq[4] = {B, Tq, Hq, D}, sc[4] = {B, t_max, Hkv, D};
    fp_tensor *tq = dev(ctx, 4, sq, qn), *tk = dev(ctx, 4, sc, kc), *tv = dev(ctx, 4, sc, vc);
    fp_tensor *to = dev(ctx, 4, sq, NULL), *ws = NULL;
    if (with_ws) {
        int64_t wn = fp_attention_decode_workspace(B, Tq, Hq, D, t_max);
        ws = dev(ctx, 1, &wn, NULL);
    }
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_attention_decode(s, to, tq, tk, tv, pos, &d, ws));
    CHECK_OK(fp_stream_run(s));
    float *o = down(to);
    char what[160];
    snprintf(what, sizeof what, "decode B=%lld Hq=%lld Hkv=%lld D=%lld t_max=%lld pos=%lld Tq=%lld ws=%d",
             (long long)B, (long long)Hq, (long long)Hkv, (long long)D, (long long)t_max, (long long)pos,
             (long long)Tq, with_ws);
    cmp(what, o, on, (size_t)(B * Tq * rowq), 5e-4);
    fp_stream_free(s);
    fp_tensor_free(tq), fp_tensor_free(tk), fp_tensor_free(tv), fp_tensor_free(to), fp_tensor_free(ws);
    free(q), free(k), free(v), free(oref), free(kc), free(vc), free(qn), free(on), free(o);
}

int main(void)
{
    static const acase cases[] = {
        {2, 7, 4, 2, 16, 1},   /* GQA 2:1, B = 2 */
        {1, 33, 6, 1, 40, 1},  /* GQA 6:1 (MQA), odd T, D = 40 */
        {1, 100, 2, 2, 64, 1}, /* MHA, T = 100 */
        {2, 1, 4, 2, 16, 1},   /* T = 1 */
        {1, 33, 4, 4, 16, 0},  /* not causal */
        {1, 9, 2, 1, 7, 1},    /* odd head dim: every variant falls back from sg */
    };
    /* native: every variant; overlays: tiled (what GPUs run) and the overlay's
     * default choice (sg, or direct without subgroup ops): direct and sg build
     * the same pipelines under every overlay on one device */
    static const char *variants[] = {"tiled", "direct", "sg", NULL};
    for (int pi = 0; profile_at(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(profile_at(pi));
        static const int native_list[] = {0, 1, 2, -1}, overlay_list[] = {0, 3, -1};
        const int *list = pi == 0 ? native_list : overlay_list;
        for (int li = 0; list[li] >= 0; li++) {
            int vi = list[li];
            if (variants[vi])
                setenv("FP_ATTN_VARIANT", variants[vi], 1);
            else
                unsetenv("FP_ATTN_VARIANT");
            printf("profile '%s': variant %s\n", profile_at(pi), fp_attention_variant(ctx));
            fp_test_seed(1000 + (uint64_t)(pi * 3 + vi));
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                run_forward(ctx, &cases[i]);
            run_decode(ctx, 1, 8, 2, 64, 300, 257, 1, 1); /* split-K */
            run_decode(ctx, 2, 4, 2, 40, 50, 36, 3, 1);
            run_decode(ctx, 1, 4, 1, 16, 20, 0, 1, 0); /* first token, no workspace */
        }
        fp_test_ctx_done(ctx);
    }
    unsetenv("FP_ATTN_VARIANT");
    return fp_test_report("test_attn_fwd");
}
