/* The splits of fp_attention_backward, dk/dv over query chunks and dq over
 * key chunks (GPUs with few rows split by themselves; here $FP_ATTN_SPLIT
 * forces it on lavapipe):
 *  - S = 2, 3, 16 and more chunks than rows/tiles (S 40: capped at 32, and at
 *    one row per chunk), every variant (tiled, direct, sg) forced with
 *    fp_attention_force_variant, odd T (1, 7, 33, 257), G = 1 and 4, B = 2,
 *    D = 64, 40 and 16, causal and not: dq, dk, dv against the C reference
 *    backward (NMSE <= 5e-4 and max error), and the split that ran is the one
 *    expected (chunks of ceil(T / S) rows);
 *  - the split dk/dv against central differences of the double C reference
 *    forward (the reference backward itself is checked that way in test_attn_ref);
 *  - the split result is bitwise reproducible (fixed-order reduce);
 *  - without an override a CPU device (lavapipe) never splits, also on the
 *    benchmark's layout under every overlay; a GPU does split that layout;
 *  - the tuned key "attention.split" forces it, the environment wins over it,
 *    and a bad value is ignored;
 *  - fp_attention_force_split: -1 applies the GPU rule on lavapipe too (it
 *    splits the benchmark layout), 1 wins over $FP_ATTN_SPLIT, -2 is refused;
 *  - when the split's resources cannot be had (here: its reduce pipeline fails
 *    to build) the unsplit kernels run, with correct results.
 * Native profile and every built-in overlay (sg falls back to direct where the
 * profile has no subgroup ops). $FP_SPLIT_TEST_QUICK=1: one cheap pass (the
 * ASan run). */
#include <math.h>
#include <unistd.h>

#include "attn_common.h"
#include "fedproxy/measured.h"

typedef struct scase {
    int64_t B, T, Hq, Hkv, D;
    int causal;
    int S; /* FP_ATTN_SPLIT; 0: unset */
} scase;

static int g_quick;

/* The split count a forced S gives: chunks of ceil(T / S) rows, S at most 32. */
static int expect_split(int64_t T, int S)
{
    if (S < 2)
        return 1;
    if (S > 32)
        S = 32;
    int64_t chunk = (T + S - 1) / S;
    return (int)((T + chunk - 1) / chunk);
}

static void set_split(int S)
{
    if (S > 0) {
        char b[16];
        snprintf(b, sizeof b, "%d", S);
        setenv("FP_ATTN_SPLIT", b, 1);
    } else {
        unsetenv("FP_ATTN_SPLIT");
    }
}

typedef struct grads {
    float *dq, *dk, *dv;
    int split, split_dq;
    char pipe[64];
} grads;

/* Forward then backward on the device for host inputs; returns the gradients,
 * the split and the dk/dv pipeline that ran. */
static grads gpu_backward(fp_ctx *ctx, const scase *c, const float *q, const float *k, const float *v,
                          const float *dout)
{
    int64_t sq[4] = {c->B, c->T, c->Hq, c->D}, sk[4] = {c->B, c->T, c->Hkv, c->D}, sl[3] = {c->B, c->Hq, c->T};
    fp_attn_desc d = {0.0f, c->causal};
    fp_tensor *tq = dev(ctx, 4, sq, q), *tk = dev(ctx, 4, sk, k), *tv = dev(ctx, 4, sk, v);
    fp_tensor *tdo = dev(ctx, 4, sq, dout), *to = dev(ctx, 4, sq, NULL), *tl = dev(ctx, 3, sl, NULL);
    fp_tensor *tdq = dev(ctx, 4, sq, NULL), *tdk = dev(ctx, 4, sk, NULL), *tdv = dev(ctx, 4, sk, NULL);
    fp_stream *s;
    grads g = {0};
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_attention_forward(s, to, tl, tq, tk, tv, &d));
    CHECK_OK(fp_attention_backward(s, tdq, tdk, tdv, tdo, tq, tk, tv, to, tl, &d));
    g.split = fp_attention_last_split();
    g.split_dq = fp_attention_last_split_dq();
    snprintf(g.pipe, sizeof g.pipe, "%s", fp_attention_last_pipeline());
    CHECK_OK(fp_stream_run(s));
    g.dq = down(tdq), g.dk = down(tdk), g.dv = down(tdv);
    fp_stream_free(s);
    fp_tensor *all[9] = {tq, tk, tv, tdo, to, tl, tdq, tdk, tdv};
    for (int i = 0; i < 9; i++)
        fp_tensor_free(all[i]);
    return g;
}

static void grads_free(grads *g) { free(g->dq), free(g->dk), free(g->dv); }

/* One case against the reference; want_split -1: expect_split(T, S) for both
 * kernels, -2: at least 2 for both. */
static void run_case(fp_ctx *ctx, const scase *c, int want_split)
{
    int64_t nq = c->B * c->T * c->Hq * c->D, nk = c->B * c->T * c->Hkv * c->D;
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *dout = rnd(nq, 1.0f);
    float *dqr = malloc(sizeof(float) * (size_t)nq), *dkr = malloc(sizeof(float) * (size_t)nk),
          *dvr = malloc(sizeof(float) * (size_t)nk);
    fp_attn_desc d = {0.0f, c->causal};
    CHECK_OK(fp_attention_backward_ref(dqr, dkr, dvr, dout, q, k, v, c->B, c->T, c->Hq, c->Hkv, c->D, &d));
    set_split(c->S);
    grads g = gpu_backward(ctx, c, q, k, v, dout);
    if (want_split == -1)
        want_split = expect_split(c->T, c->S);
    char what[200];
    snprintf(what, sizeof what, "B=%lld T=%lld Hq=%lld Hkv=%lld D=%lld causal=%d S=%d", (long long)c->B,
             (long long)c->T, (long long)c->Hq, (long long)c->Hkv, (long long)c->D, c->causal, c->S);
    printf("    %-60s ran %-20s split dkv %d dq %d\n", what, g.pipe, g.split, g.split_dq);
    if (want_split == -2)
        CHECKF(g.split >= 2 && g.split_dq >= 2, "%s: split %d / dq %d, expected both >= 2", what, g.split,
               g.split_dq);
    else
        CHECKF(g.split == want_split && g.split_dq == want_split, "%s: split %d / dq %d, expected %d", what,
               g.split, g.split_dq, want_split);
    char w2[240];
    snprintf(w2, sizeof w2, "dq %s", what);
    cmp(w2, g.dq, dqr, (size_t)nq, 5e-4);
    snprintf(w2, sizeof w2, "dk %s", what);
    cmp(w2, g.dk, dkr, (size_t)nk, 5e-4);
    snprintf(w2, sizeof w2, "dv %s", what);
    cmp(w2, g.dv, dvr, (size_t)nk, 5e-4);
    grads_free(&g);
    free(q), free(k), free(v), free(dout), free(dqr), free(dkr), free(dvr);
}

/* Split dk/dv (and dq) from the device against central differences of the
 * double reference forward's loss sum(dout * o), at the float inputs. */
static void fd_case(fp_ctx *ctx, const scase *c)
{
    int64_t nq = c->B * c->T * c->Hq * c->D, nk = c->B * c->T * c->Hkv * c->D;
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *dout = rnd(nq, 1.0f);
    set_split(c->S);
    grads g = gpu_backward(ctx, c, q, k, v, dout);
    CHECKF(g.split == expect_split(c->T, c->S) && g.split_dq == g.split, "fd: split %d / dq %d", g.split,
           g.split_dq);
    double *x[4], *o = malloc(sizeof(double) * (size_t)nq);
    const float *src[4] = {q, k, v, dout};
    int64_t n[4] = {nq, nk, nk, nq};
    for (int a = 0; a < 4; a++) {
        x[a] = malloc(sizeof(double) * (size_t)n[a]);
        for (int64_t i = 0; i < n[a]; i++)
            x[a][i] = src[a][i];
    }
    fp_attn_desc d = {0.0f, c->causal};
    const float *got[3] = {g.dq, g.dk, g.dv};
    const double h = 1e-5;
    double worst = 0, big = 1e-30;
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < n[a]; i++) {
            double keep = x[a][i], l[2];
            for (int side = 0; side < 2; side++) {
                x[a][i] = keep + (side ? -h : h);
                CHECK_OK(fp_attention_forward_ref64(o, NULL, x[0], x[1], x[2], c->B, c->T, c->Hq, c->Hkv, c->D, &d));
                l[side] = 0;
                for (int64_t e = 0; e < nq; e++)
                    l[side] += x[3][e] * o[e];
            }
            x[a][i] = keep;
            double num = (l[0] - l[1]) / (2 * h);
            worst = fmax(worst, fabs(num - got[a][i]));
            big = fmax(big, fabs(num));
        }
    printf("    fd dq/dk/dv T=%lld Hq=%lld Hkv=%lld D=%lld causal=%d split %d (%s): worst err %.3g of largest %.3g\n",
           (long long)c->T, (long long)c->Hq, (long long)c->Hkv, (long long)c->D, c->causal, g.split, g.pipe, worst,
           big);
    CHECKF(worst <= 1e-4 * big, "split backward vs finite differences: %.3g (largest %.3g)", worst, big);
    for (int a = 0; a < 4; a++)
        free(x[a]);
    grads_free(&g);
    free(o), free(q), free(k), free(v), free(dout);
}

/* Two runs of one split case give identical bits. */
static void deterministic(fp_ctx *ctx, const scase *c)
{
    int64_t nq = c->B * c->T * c->Hq * c->D, nk = c->B * c->T * c->Hkv * c->D;
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *dout = rnd(nq, 1.0f);
    set_split(c->S);
    grads a = gpu_backward(ctx, c, q, k, v, dout), b = gpu_backward(ctx, c, q, k, v, dout);
    CHECK(a.split > 1 && a.split == b.split && a.split_dq > 1);
    CHECKF(!memcmp(a.dk, b.dk, sizeof(float) * (size_t)nk) && !memcmp(a.dv, b.dv, sizeof(float) * (size_t)nk) &&
               !memcmp(a.dq, b.dq, sizeof(float) * (size_t)nq),
           "split %d: two runs differ", a.split);
    grads_free(&a), grads_free(&b);
    free(q), free(k), free(v), free(dout);
}

/* No override: split only on GPUs (the benchmark's layout: 8 or 10
 * workgroups of key rows, far below the target). */
static void default_split(fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    int cpu = p->type == FP_DEVICE_CPU || p->vendor == FP_VENDOR_MESA_CPU;
    scase c = {1, g_quick ? 65 : 257, 8, 2, 64, 1, 0};
    unsetenv("FP_ATTN_SPLIT");
    int64_t nq = c.B * c.T * c.Hq * c.D, nk = c.B * c.T * c.Hkv * c.D;
    float *q = rnd(nq, 1.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *dout = rnd(nq, 1.0f);
    grads g = gpu_backward(ctx, &c, q, k, v, dout);
    printf("    default (no override) T=%lld Hq 8 Hkv 2 D 64 on a %s device: split dkv %d dq %d\n", (long long)c.T,
           cpu ? "CPU" : "GPU", g.split, g.split_dq);
    /* dq splits over keys in whole tiles: quick's T = 65 is a single 64-key
     * tile on GPUs with tiles that long (the H100), so only dk/dv must split */
    CHECKF(cpu ? g.split == 1 && g.split_dq == 1 : g.split >= 2 && (g_quick || g.split_dq >= 2),
           "default split %d / dq %d on a %s device", g.split, g.split_dq, cpu ? "CPU" : "GPU");
    grads_free(&g);
    free(q), free(k), free(v), free(dout);
}

/* Stores attention.split = value (NULL: nothing) for ctx's device and overlay. */
static void store(fp_ctx *ctx, const char *value)
{
    const char *kv[2] = {"attention.split", value};
    fp_test_store_tune(ctx, kv, value ? 1 : 0);
}

/* A fresh native context with attention.split = stored; env: FP_ATTN_SPLIT or NULL. */
static void tuned(const char *stored, const char *env, int want_split)
{
    fp_ctx *ctx = fp_test_ctx("");
    store(ctx, stored);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("");
    printf("  tuned attention.split '%s', FP_ATTN_SPLIT '%s':\n", stored ? stored : "(none)", env ? env : "(unset)");
    scase c = {1, 33, 4, 2, 16, 1, env ? atoi(env) : 0}; /* run_case sets FP_ATTN_SPLIT from S */
    run_case(ctx, &c, want_split);
    store(ctx, NULL);
    fp_test_ctx_done(ctx);
    unsetenv("FP_ATTN_SPLIT");
}

/* The reduce pipelines fail to build: a forced split falls back to the unsplit kernels. */
static void fallback(void)
{
    fp_ctx *ctx = fp_test_ctx("");
    fp_ctx_debug_fail_pipelines(ctx, "attn_reduce");
    printf("  reduce pipelines failing, FP_ATTN_SPLIT 3:\n");
    scase c = {2, 33, 4, 2, 16, 1, 3};
    run_case(ctx, &c, 1);
    fp_ctx_debug_fail_pipelines(ctx, NULL);
    fp_test_ctx_done(ctx);
    unsetenv("FP_ATTN_SPLIT");
}

/* The thread's forced split ahead of the environment; -1: the GPU rule anywhere. */
static void forced(void)
{
    fp_ctx *ctx = fp_test_ctx("");
    scase bench = {1, 257, 8, 2, 64, 1, 3}; /* FP_ATTN_SPLIT 3, overridden */
    printf("  fp_attention_force_split(-1) (GPU rule), FP_ATTN_SPLIT 3:\n");
    CHECK_OK(fp_attention_force_split(-1));
    run_case(ctx, &bench, -2);
    CHECK_OK(fp_attention_force_variant("tiled")); /* what GPUs run */
    run_case(ctx, &bench, -2);
    CHECK_OK(fp_attention_force_variant(NULL));
    printf("  fp_attention_force_split(1), FP_ATTN_SPLIT 3:\n");
    CHECK_OK(fp_attention_force_split(1));
    run_case(ctx, &bench, 1);
    CHECK_ERR(fp_attention_force_split(-2), FP_EINVAL);
    CHECK_OK(fp_attention_force_split(0));
    printf("  cleared, FP_ATTN_SPLIT 3:\n");
    run_case(ctx, &bench, -1);
    fp_test_ctx_done(ctx);
    unsetenv("FP_ATTN_SPLIT");
}

int main(void)
{
    const char *qe = getenv("FP_SPLIT_TEST_QUICK");
    g_quick = qe && *qe && strcmp(qe, "0");
    unsetenv("FP_ATTN_VARIANT");
    fp_test_seed(4242);
    /* native: every variant on all of these; overlays: the first few */
    static const scase cases[] = {
        {2, 7, 4, 1, 64, 1, 3},    /* G 4, B 2, D 64, 3 chunks of 3 rows */
        {1, 33, 2, 2, 40, 1, 16},  /* G 1, D 40, 16 -> 11 chunks of 3 rows */
        {2, 33, 4, 1, 16, 0, 2},   /* not causal */
        {1, 7, 4, 2, 16, 1, 40},   /* S 40 > rows: 7 chunks of 1 row */
        {1, 1, 4, 1, 64, 1, 2},    /* T 1: one chunk, unsplit */
        {1, 257, 4, 1, 64, 1, 16}, /* 16 chunks of 17 rows (more rows than one tile) */
        {1, 257, 2, 2, 16, 0, 3},  /* not causal, G 1, long chunks */
        {1, 33, 4, 2, 16, 1, 1},   /* 1 disables */
    };
    static const int ncases = (int)(sizeof cases / sizeof cases[0]);
    static const char *variants[] = {"tiled", "direct", "sg"};
    int nprof = 0;
    while (profile_at(nprof))
        nprof++;
    for (int pi = 0; pi < (g_quick ? 1 : nprof); pi++) {
        fp_ctx *ctx = fp_test_ctx(profile_at(pi));
        for (int vi = 0; vi < 3; vi++) {
            if (pi > 0 && vi == 1) /* overlays: tiled (GPUs) and sg (direct without subgroup ops) */
                continue;
            CHECK_OK(fp_attention_force_variant(variants[vi]));
            printf("profile '%s': forced %s, preferred %s\n", profile_at(pi), variants[vi], fp_attention_variant(ctx));
            int n = g_quick ? 2 : pi == 0 ? ncases : 3;
            for (int i = 0; i < n; i++)
                run_case(ctx, &cases[i], -1);
        }
        CHECK_OK(fp_attention_force_variant(NULL));
        if (!g_quick || pi == 0)
            default_split(ctx);
        if (pi == 0) {
            scase fd = {1, 9, 4, 2, 8, 1, 4}, fd2 = {1, 6, 2, 1, 4, 0, 3};
            fd_case(ctx, &fd);
            if (!g_quick)
                fd_case(ctx, &fd2);
            scase det = {1, 33, 4, 1, 16, 1, 5};
            deterministic(ctx, &det);
        }
        fp_test_ctx_done(ctx);
    }
    unsetenv("FP_ATTN_SPLIT");
    if (!g_quick) {
        tuned("5", NULL, 5); /* T 33: chunks of 7 rows */
        tuned("5", "1", 1);  /* the environment wins */
        tuned("5", "2", 2);
        tuned("bogus", NULL, 1); /* ignored; T 33 < 64 splits on no device by default */
        tuned(NULL, NULL, 1);
    }
    fallback();
    if (!g_quick)
        forced();
    return fp_test_report("test_attn_bwd_split");
}
