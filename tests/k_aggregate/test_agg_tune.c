/* The aggregation autotuner and its tuned keys:
 *  - fp_agg_autotune stores one of its candidates for "aggregate.order_net"
 *    (32 | 64 | 128) and "aggregate.norm" (tree | flat), leaves neither the
 *    environment nor this thread's choices changed (the default runs after it);
 *  - a stored choice is honoured by a fresh context: order_net 32 makes a
 *    median of K = 33 clients run radix select, 128 (or 64) a sorting network
 *    (checked by the variant that ran), both bit-equal to fp_agg_median_ref;
 *    norm flat / tree run that stage 1 and match fp_agg_norms_ref;
 *  - a bogus stored value falls back to the device default;
 *  - FP_AGG_ORDER_NET / FP_AGG_NORM still override a stored key.
 * Stored choices go through the measured-profile cache ($FP_CACHE_DIR, this
 * test's own directory), exactly as fp-probe leaves them for fp_ctx_create.
 * Small D throughout: a network is a pipeline per K and a 64- or 128-input one
 * takes seconds to build on lavapipe (the pipeline cache keeps them after the
 * first context). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fedproxy/measured.h"
#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

static const char *overlay_name(fp_ctx *ctx)
{
    return fp_ctx_profile(ctx)->overlay[0] ? fp_ctx_profile(ctx)->overlay : "native";
}

static float *rnd(int64_t n)
{
    float *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++)
        h[i] = fp_test_normal();
    return h;
}

/* Median of K = 33 clients x 37 coordinates; the variant that ran must start with want. */
static void median_case(fp_ctx *ctx, const char *want, const char *why)
{
    const int64_t K = 33, D = 37;
    int64_t shp[2] = {K, D};
    float *X = rnd(K * D), *ref = malloc(D * 4), *got = malloc(D * 4);
    CHECK_OK(fp_agg_median_ref(ref, X, K, D));
    fp_tensor *tX = NULL, *to = NULL, *tw = NULL;
    fp_stream *s = NULL;
    CHECK_OK(fp_tensor_new(&tX, ctx, FP_F32, 2, shp));
    CHECK_OK(fp_tensor_new(&to, ctx, FP_F32, 1, &D));
    int64_t ws = fp_agg_order_worksize(ctx, K, D);
    if (ws)
        CHECK_OK(fp_tensor_new(&tw, ctx, FP_F32, 1, &ws));
    CHECK_OK(fp_tensor_upload(tX, X, (size_t)(K * D) * 4));
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_agg_median(s, to, tX, tw));
    char ran[64];
    snprintf(ran, sizeof ran, "%s", fp_agg_last_variant());
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(got, D * 4, to));
    double e = fp_test_maxerr(got, ref, D);
    printf("  %-8s %-34s median K=33: ran %-18s max err %g\n", overlay_name(ctx), why, ran, e);
    CHECKF(!strncmp(ran, want, strlen(want)), "%s: ran %s, expected %s*", why, ran, want);
    CHECKF(e == 0, "%s: median differs from the reference by %g (an exact selection)", why, e);
    fp_stream_free(s);
    fp_tensor_free(tX), fp_tensor_free(to), fp_tensor_free(tw);
    free(X), free(ref), free(got);
}

/* Norms of K = 7 clients x 1001 coordinates; flat: the stage-1 variant must be
 * the flat one (agg_sumsq_flat*), else the tree (agg_sumsq without _flat). */
static void norms_case(fp_ctx *ctx, int flat, const char *why)
{
    const int64_t K = 7, D = 1001;
    int64_t shp[2] = {K, D};
    float *X = rnd(K * D), *ref = malloc(K * 4), *got = malloc(K * 4);
    CHECK_OK(fp_agg_norms_ref(ref, X, K, D));
    fp_tensor *tX = NULL, *tn = NULL, *tw = NULL;
    fp_stream *s = NULL;
    int64_t ws = fp_agg_norms_worksize(ctx, K, D);
    CHECK_OK(fp_tensor_new(&tX, ctx, FP_F32, 2, shp));
    CHECK_OK(fp_tensor_new(&tn, ctx, FP_F32, 1, &K));
    CHECK_OK(fp_tensor_new(&tw, ctx, FP_F32, 1, &ws));
    CHECK_OK(fp_tensor_upload(tX, X, (size_t)(K * D) * 4));
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_agg_norms(s, tn, tX, tw));
    char ran[64];
    snprintf(ran, sizeof ran, "%s", fp_agg_last_variant());
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(got, K * 4, tn));
    double e = fp_test_nmse(got, ref, K), rel = 0;
    for (int64_t k = 0; k < K; k++)
        if (!(fabs((double)got[k] - ref[k]) / ref[k] <= rel))
            rel = fabs((double)got[k] - ref[k]) / ref[k];
    printf("  %-8s %-34s norms K=7:   ran %-18s nmse %.3g max rel %.3g\n", overlay_name(ctx), why, ran, e, rel);
    CHECKF(!strncmp(ran, "agg_sumsq", 9) && (strstr(ran, "_flat") != NULL) == flat, "%s: ran %s, expected %s", why,
           ran, flat ? "agg_sumsq_flat*" : "agg_sumsq (tree)");
    CHECKF(e <= 1e-7 && rel <= 1e-5, "%s: nmse %g, max relative error %g", why, e, rel);
    fp_stream_free(s);
    fp_tensor_free(tX), fp_tensor_free(tn), fp_tensor_free(tw);
    free(X), free(ref), free(got);
}

/* Stores the two keys (NULL: absent; both NULL: no cache entry) for ctx's device and overlay. */
static void store(fp_ctx *ctx, const char *order_net, const char *norm)
{
    const char *kv[4];
    int n = 0;
    if (order_net)
        kv[2 * n] = "aggregate.order_net", kv[2 * n + 1] = order_net, n++;
    if (norm)
        kv[2 * n] = "aggregate.norm", kv[2 * n + 1] = norm, n++;
    fp_test_store_tune(ctx, kv, n);
}

/* A fresh context on profile with the keys stored (it loads them), handed to the checks. */
static fp_ctx *stored_ctx(const char *profile, const char *order_net, const char *norm)
{
    fp_ctx *ctx = fp_test_ctx(profile);
    store(ctx, order_net, norm);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx(profile);
    const fp_measured *m = fp_ctx_measured(ctx);
    const char *on = fp_measured_tune_get(m, "aggregate.order_net"), *nm = fp_measured_tune_get(m, "aggregate.norm");
    CHECKF(order_net ? on && !strcmp(on, order_net) : !on, "stored order_net '%s', loaded '%s'",
           order_net ? order_net : "(none)", on ? on : "(none)");
    CHECKF(norm ? nm && !strcmp(nm, norm) : !nm, "stored norm '%s', loaded '%s'", norm ? norm : "(none)",
           nm ? nm : "(none)");
    return ctx;
}

/* Stored order_net / norm are honoured by a fresh context, and the
 * environment (FP_AGG_ORDER_NET, FP_AGG_NORM) still wins over them. */
static void stored_then_env(const char *order, const char *norm, const char *env_order, const char *env_norm)
{
    char tag[96];
    fp_ctx *ctx = stored_ctx("", order, norm);
    snprintf(tag, sizeof tag, "stored order_net %s", order);
    median_case(ctx, !strcmp(order, "32") ? "agg_order_radix" : "agg_order_k", tag);
    snprintf(tag, sizeof tag, "stored norm %s", norm);
    norms_case(ctx, !strcmp(norm, "flat"), tag);
    setenv("FP_AGG_ORDER_NET", env_order, 1);
    setenv("FP_AGG_NORM", env_norm, 1);
    snprintf(tag, sizeof tag, "stored %s, FP_AGG_ORDER_NET=%s", order, env_order);
    median_case(ctx, !strcmp(env_order, "32") ? "agg_order_radix" : "agg_order_k", tag);
    snprintf(tag, sizeof tag, "stored %s, FP_AGG_NORM=%s", norm, env_norm);
    norms_case(ctx, !strcmp(env_norm, "flat"), tag);
    unsetenv("FP_AGG_ORDER_NET");
    unsetenv("FP_AGG_NORM");
    fp_test_ctx_done(ctx);
}

int main(void)
{
    fp_test_seed(47);
    /* this test writes and deletes the measured profiles of its cache directory:
     * never the user's (ctest sets FP_CACHE_DIR; a hand run gets a temp dir) */
    if (!getenv("FP_CACHE_DIR"))
        setenv("FP_CACHE_DIR", fp_test_tmpdir("agg_tune_cache"), 1);
    unsetenv("FP_AGG_ORDER_NET");
    unsetenv("FP_AGG_NORM");
    CHECK_ERR(fp_agg_autotune(NULL, NULL, 1), FP_EINVAL);

    /* the device defaults: networks up to 128 clients everywhere (measured on lavapipe and
     * an H100); flat norms on CPU devices, the tree on GPUs */
    fp_ctx *ctx = stored_ctx("", NULL, NULL);
    int cpu = fp_ctx_profile(ctx)->type == FP_DEVICE_CPU;
    const char *def_order = "agg_order_k";
    median_case(ctx, def_order, "nothing stored (default)");
    norms_case(ctx, cpu, "nothing stored (default)");

    /* the tuner's choices, then the defaults again (nothing forced is left behind) */
    fp_measured m;
    memset(&m, 0, sizeof m);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(fp_agg_autotune(ctx, &m, 1));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const char *on = fp_measured_tune_get(&m, "aggregate.order_net"), *nm = fp_measured_tune_get(&m, "aggregate.norm");
    printf("autotune (quick, %.1f s) chose order_net %s, norm %s\n",
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), on ? on : "(nothing)",
           nm ? nm : "(nothing)");
    CHECK(on && (!strcmp(on, "32") || !strcmp(on, "64") || !strcmp(on, "128")));
    CHECK(nm && (!strcmp(nm, "tree") || !strcmp(nm, "flat")));
    CHECK(!getenv("FP_AGG_ORDER_NET") && !getenv("FP_AGG_NORM"));
    const char *onms = fp_measured_tune_get(&m, "aggregate.order_net.ms");
    const char *nmms = fp_measured_tune_get(&m, "aggregate.norm.ms");
    printf("  ms per op (order_net at K = 50/100, norm at K = 10/100): %s | %s\n", onms ? onms : "(none)",
           nmms ? nmms : "(none)");
    CHECK(onms && nmms);
    median_case(ctx, def_order, "after autotune (default)");
    norms_case(ctx, cpu, "after autotune (default)");
    fp_test_ctx_done(ctx);
    char won[2][16];
    snprintf(won[0], sizeof won[0], "%s", on ? on : "32");
    snprintf(won[1], sizeof won[1], "%s", nm ? nm : "tree");

    /* stored choices are honoured: the tuner's own, then each value */
    ctx = stored_ctx("", won[0], won[1]);
    median_case(ctx, !strcmp(won[0], "32") ? "agg_order_radix" : "agg_order_k", "the tuner's order_net");
    norms_case(ctx, !strcmp(won[1], "flat"), "the tuner's norm");
    fp_test_ctx_done(ctx);

    stored_then_env("32", "flat", "128", "tree");
    stored_then_env("128", "tree", "32", "flat");

    ctx = stored_ctx("", "64", NULL);
    median_case(ctx, "agg_order_k", "stored order_net 64");
    fp_test_ctx_done(ctx);

    /* unknown values are ignored: the device default runs */
    ctx = stored_ctx("", "100", "fast");
    median_case(ctx, def_order, "stored order_net 100 (bogus)");
    norms_case(ctx, cpu, "stored norm fast (bogus)");
    fp_test_ctx_done(ctx);

    /* under "minimal" (no subgroup ops, 64-invocation groups) too */
    ctx = stored_ctx("minimal", "32", "tree");
    median_case(ctx, "agg_order_radix", "stored order_net 32");
    norms_case(ctx, 0, "stored norm tree");
    fp_test_ctx_done(ctx);
    ctx = stored_ctx("minimal", "128", "flat");
    median_case(ctx, "agg_order_k", "stored order_net 128");
    norms_case(ctx, 1, "stored norm flat");
    store(ctx, NULL, NULL);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("");
    store(ctx, NULL, NULL);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_agg_tune");
}
