/* Fused attention backward (dq, dk, dv) vs the C reference backward (which
 * test_attn_ref checks against finite differences), GQA and MHA, odd T and D,
 * B = 2; every kernel variant (tiled, direct, sg) under the native profile and
 * every overlay (sg falls back to direct where the profile has no subgroup ops). */
#include "attn_common.h"

typedef struct acase {
    int64_t B, T, Hq, Hkv, D;
    int causal;
} acase;

static void run_backward(fp_ctx *ctx, const acase *c)
{
    int64_t nq = c->B * c->T * c->Hq * c->D, nk = c->B * c->T * c->Hkv * c->D;
    int64_t sq[4] = {c->B, c->T, c->Hq, c->D}, sk[4] = {c->B, c->T, c->Hkv, c->D}, sl[3] = {c->B, c->Hq, c->T};
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *dout = rnd(nq, 1.0f);
    float *dqr = malloc(sizeof(float) * (size_t)nq), *dkr = malloc(sizeof(float) * (size_t)nk),
          *dvr = malloc(sizeof(float) * (size_t)nk);
    fp_attn_desc d = {0.0f, c->causal};
    CHECK_OK(fp_attention_backward_ref(dqr, dkr, dvr, dout, q, k, v, c->B, c->T, c->Hq, c->Hkv, c->D, &d));
    fp_tensor *tq = dev(ctx, 4, sq, q), *tk = dev(ctx, 4, sk, k), *tv = dev(ctx, 4, sk, v);
    fp_tensor *tdo = dev(ctx, 4, sq, dout), *to = dev(ctx, 4, sq, NULL), *tl = dev(ctx, 3, sl, NULL);
    fp_tensor *tdq = dev(ctx, 4, sq, NULL), *tdk = dev(ctx, 4, sk, NULL), *tdv = dev(ctx, 4, sk, NULL);
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_attention_forward(s, to, tl, tq, tk, tv, &d));
    CHECK_OK(fp_attention_backward(s, tdq, tdk, tdv, tdo, tq, tk, tv, to, tl, &d));
    CHECK_OK(fp_stream_run(s));
    float *gq = down(tdq), *gk = down(tdk), *gv = down(tdv);
    char what[160];
    snprintf(what, sizeof what, "B=%lld T=%lld Hq=%lld Hkv=%lld D=%lld causal=%d", (long long)c->B, (long long)c->T,
             (long long)c->Hq, (long long)c->Hkv, (long long)c->D, c->causal);
    char w2[200];
    snprintf(w2, sizeof w2, "dq %s", what);
    cmp(w2, gq, dqr, (size_t)nq, 5e-4);
    snprintf(w2, sizeof w2, "dk %s", what);
    cmp(w2, gk, dkr, (size_t)nk, 5e-4);
    snprintf(w2, sizeof w2, "dv %s", what);
    cmp(w2, gv, dvr, (size_t)nk, 5e-4);
    fp_stream_free(s);
    fp_tensor *all[9] = {tq, tk, tv, tdo, to, tl, tdq, tdk, tdv};
    for (int i = 0; i < 9; i++)
        fp_tensor_free(all[i]);
    free(q), free(k), free(v), free(dout), free(dqr), free(dkr), free(dvr), free(gq), free(gk), free(gv);
}

int main(void)
{
    static const acase cases[] = {
        {2, 7, 4, 2, 16, 1},   /* GQA 2:1, B = 2 */
        {1, 33, 6, 1, 40, 1},  /* MQA 6:1, D = 40 */
        {1, 100, 2, 2, 64, 1}, /* MHA */
        {1, 1, 4, 2, 16, 1},   /* T = 1 */
        {1, 20, 4, 4, 16, 0},  /* not causal */
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
            fp_test_seed(2000 + (uint64_t)(pi * 3 + vi));
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                run_backward(ctx, &cases[i]);
        }
        fp_test_ctx_done(ctx);
    }
    unsetenv("FP_ATTN_VARIANT");
    return fp_test_report("test_attn_bwd");
}
