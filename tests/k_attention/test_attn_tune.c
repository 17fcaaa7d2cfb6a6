/* The attention autotuner and its tuned key "attention.variant":
 *  - fp_attention_autotune stores a variant that passed its reference check;
 *  - a stored choice is honoured: the ops run that variant's pipeline (checked
 *    by name) and the result matches the C reference;
 *  - an unknown stored value is ignored (the default variant runs), and a
 *    stored "sg" under "minimal" (no subgroup ops) falls back to direct;
 *  - the forced variant rejects unknown names;
 *  - the autotuner also stores "attention.split" ("0" or "1"; its effect is
 *    tested in test_attn_bwd_split).
 * Stored choices go through the measured-profile cache ($FP_CACHE_DIR, this
 * test's own directory), exactly as fp-probe leaves them for fp_ctx_create. */
#include <unistd.h>

#include "attn_common.h"
#include "fedproxy/measured.h"

/* Forward on a small odd GQA shape against the reference; the pipeline that ran must be want_pipe. */
static void fwd_case(fp_ctx *ctx, const char *want_pipe)
{
    const int64_t B = 1, T = 19, Hq = 4, Hkv = 2, D = 16;
    int64_t sq[4] = {B, T, Hq, D}, skv[4] = {B, T, Hkv, D};
    float *q = rnd(B * T * Hq * D, 1.0f), *k = rnd(B * T * Hkv * D, 1.0f), *v = rnd(B * T * Hkv * D, 1.0f);
    float *ref = malloc(sizeof(float) * (size_t)(B * T * Hq * D));
    fp_attn_desc d = {0.0f, 1};
    CHECK_OK(fp_attention_forward_ref(ref, NULL, q, k, v, B, T, Hq, Hkv, D, &d));
    fp_tensor *tq = dev(ctx, 4, sq, q), *tk = dev(ctx, 4, skv, k), *tv = dev(ctx, 4, skv, v), *to = dev(ctx, 4, sq, NULL);
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_attention_forward(s, to, NULL, tq, tk, tv, &d));
    char ran[64];
    snprintf(ran, sizeof ran, "%s", fp_attention_last_pipeline());
    CHECK_OK(fp_stream_run(s));
    float *o = down(to);
    double e = fp_test_nmse(o, ref, B * T * Hq * D);
    printf("  %-12s preferred %-12s ran %-18s nmse %.3g\n", fp_ctx_profile(ctx)->overlay[0] ? fp_ctx_profile(ctx)->overlay : "native",
           fp_attention_variant(ctx), ran, e);
    CHECKF(!strcmp(ran, want_pipe), "ran %s, expected %s", ran, want_pipe);
    CHECKF(e <= 5e-4, "nmse %g", e);
    fp_stream_free(s);
    fp_tensor *ts[] = {tq, tk, tv, to};
    for (int i = 0; i < 4; i++)
        fp_tensor_free(ts[i]);
    free(q), free(k), free(v), free(ref), free(o);
}

/* Stores attention.variant = value (NULL: no cache entry at all) for ctx's device and overlay. */
static void store(fp_ctx *ctx, const char *value)
{
    const char *kv[2] = {"attention.variant", value};
    fp_test_store_tune(ctx, kv, value ? 1 : 0);
}

/* A fresh context on profile (it loads the stored entry), checked, closed. */
static void honoured(const char *profile, const char *stored, const char *want_variant)
{
    fp_ctx *ctx = fp_test_ctx(profile);
    store(ctx, stored);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx(profile);
    const char *tuned = fp_measured_tune_get(fp_ctx_measured(ctx), "attention.variant");
    CHECKF(stored ? tuned && !strcmp(tuned, stored) : !tuned, "stored '%s', loaded '%s'", stored ? stored : "(none)",
           tuned ? tuned : "(none)");
    CHECKF(!strcmp(fp_attention_variant(ctx), want_variant), "stored '%s': prefers %s, expected %s",
           stored ? stored : "(none)", fp_attention_variant(ctx), want_variant);
    char pipe[64];
    snprintf(pipe, sizeof pipe, "attn_fwd_%s", want_variant + 5);
    fwd_case(ctx, pipe);
    fp_test_ctx_done(ctx);
}

int main(void)
{
    fp_test_seed(31);
    unsetenv("FP_ATTN_VARIANT");
    CHECK_ERR(fp_attention_force_variant("fastest"), FP_EINVAL);
    CHECK_OK(fp_attention_force_variant(NULL));

    /* the default with nothing stored, then the tuner's choice */
    fp_ctx *ctx = fp_test_ctx("");
    store(ctx, NULL);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("");
    char def[32];
    snprintf(def, sizeof def, "%s", fp_attention_variant(ctx));
    printf("default variant: %s\n", def);
    fp_measured m;
    memset(&m, 0, sizeof m);
    CHECK_OK(fp_attention_autotune(ctx, &m, 1));
    const char *win = fp_measured_tune_get(&m, "attention.variant");
    printf("autotune chose: %s\n", win ? win : "(nothing)");
    CHECK(win && (!strcmp(win, "sg") || !strcmp(win, "tiled") || !strcmp(win, "direct")));
    const char *split = fp_measured_tune_get(&m, "attention.split");
    printf("autotune backward split: %s\n", split ? split : "(nothing)");
    CHECK(split && (!strcmp(split, "0") || !strcmp(split, "1")));
    CHECK_ERR(fp_attention_force_split(-2), FP_EINVAL);
    fp_test_ctx_done(ctx);

    /* stored choices are honoured; unknown ones ignored */
    if (win) {
        char want[32];
        snprintf(want, sizeof want, "attn_%s", win);
        honoured("", win, want);
    }
    honoured("", "direct", "attn_direct");
    honoured("", "tiled", "attn_tiled");
    honoured("", "sg", "attn_sg");
    honoured("", "bogus", def);
    honoured("", NULL, def);
    /* minimal has no subgroup ops: a stored sg falls back to direct (the sg
     * pipeline would not even be created on that device); tiled is honoured */
    honoured("minimal", "sg", "attn_direct");
    honoured("minimal", "tiled", "attn_tiled");
    /* nothing stored, no subgroup ops: lavapipe runs direct (no barriers: each
     * one is a coroutine switch there), a GPU the shared-memory tiles */
    ctx = fp_test_ctx("minimal");
    int cpu = fp_ctx_profile(ctx)->vendor == FP_VENDOR_MESA_CPU;
    fp_test_ctx_done(ctx);
    honoured("minimal", NULL, cpu ? "attn_direct" : "attn_tiled");
    return fp_test_report("test_attn_tune");
}
