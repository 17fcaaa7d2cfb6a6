/* Aggregation autotuner (fp-probe --tune): two device choices of aggregate.c
 * measured rather than assumed from the device type, stored as tuned keys:
 *  - "aggregate.order_net" (32 | 64 | 128): the most clients median and
 *    trimmed mean give to a sorting network before radix select takes over;
 *  - "aggregate.norm" (tree | flat): how fp_agg_norms reduces stage 1.
 * Each candidate is forced on this thread (aggregate_internal.h), checked
 * against the C reference on small odd shapes (the pipeline that ran must be
 * the candidate's, not a fallback), then timed best-of-reps on representative
 * shapes; a candidate that fails either is reported on stderr and never chosen. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/measured.h"
#include "fedproxy/ops_aggregate.h"
#include "fedproxy/probe.h"
#include "ops/aggregate_internal.h"

enum { OP_MEDIAN, OP_NORMS };

static float *rand_host(int64_t n, uint32_t seed)
{
    float *h = malloc((size_t)n * sizeof *h);
    uint32_t x = seed * 2654435761u + 1u;
    for (int64_t i = 0; h && i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        h[i] = (float)(x >> 8) * 0x1p-23f - 1.0f; /* [-1, 1): ties are rare, as in real updates */
    }
    return h;
}

/* Timings shared between candidates that run the same pipeline on the same
 * shape (order_net 32 and 64 both run radix select at K = 100, 64 and 128
 * the same pruned network at K = 50): measured once. */
typedef struct memo {
    int n;
    struct { int64_t K; char variant[48]; double t; } e[16];
} memo;

/* Records `n` ops on X [K, D] into s (out and work sized by the caller);
 * variant gets the shader variant the first one chose. */
static int record(fp_stream *s, int op, fp_tensor *out, fp_tensor *X, fp_tensor *work, int n, char *variant)
{
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = op == OP_MEDIAN ? fp_agg_median(s, out, X, work) : fp_agg_norms(s, out, X, work);
        if (!rc && i == 0)
            snprintf(variant, 48, "%s", fp_agg_last_variant());
    }
    return rc;
}

/* Runs op on X [K, D] under this thread's forced choice; variant gets the
 * shader variant that ran. got (host, D or K floats) != NULL: one run, result
 * downloaded. Otherwise timed: recording names the variant, and a timing in
 * mm of the same variant and K is reused without a run; else a warm-up
 * (pipeline creation, first touch), one op alone to size the runs (each run
 * records enough back-to-back ops to last ~20 ms, so that submit overhead
 * does not decide on a fast GPU), then
 * the best of reps runs (the sizing run counts as one where it lasted that
 * long by itself), in seconds per op. */
static int run_op(fp_ctx *ctx, int op, fp_tensor *X, float *got, int reps, memo *mm, double *best, char *variant)
{
    int64_t K = X->shape[0], D = X->shape[1], nout = op == OP_MEDIAN ? D : K;
    int64_t ws = op == OP_MEDIAN ? fp_agg_order_worksize(ctx, K, D) : fp_agg_norms_worksize(ctx, K, D);
    fp_tensor *out = NULL, *work = NULL;
    fp_stream *s = NULL;
    int rc = fp_tensor_new(&out, ctx, FP_F32, 1, &nout);
    if (!rc && ws > 0)
        rc = fp_tensor_new(&work, ctx, FP_F32, 1, &ws);
    if (!rc)
        rc = fp_stream_new(&s, ctx);
    if (!rc)
        rc = record(s, op, out, X, work, 1, variant);
    int seen = -1; /* recording named the variant: already timed on this shape? (then never run) */
    for (int i = 0; !rc && !got && i < mm->n; i++)
        if (mm->e[i].K == K && !strcmp(mm->e[i].variant, variant))
            seen = i;
    if (seen >= 0)
        *best = mm->e[seen].t;
    if (!rc && seen < 0)
        rc = fp_stream_run(s);
    if (!rc && got)
        rc = fp_tensor_download(got, (size_t)nout * sizeof *got, out);
    if (!rc && !got && seen < 0) {
        char v[48];
        double t0 = fp_now();
        rc = record(s, op, out, X, work, 1, v);
        if (!rc)
            rc = fp_stream_run(s);
        double one = fp_now() - t0;
        int inner = one > 0 ? (int)ceil(0.02 / one) : 256;
        inner = inner < 1 ? 1 : inner > 256 ? 256 : inner;
        /* an op that lasts a run by itself is the first sample; one over 3x
         * the best other variant on this shape loses whatever the noise, and
         * is not repeated (radix select takes ~0.5 s an op on lavapipe) */
        double rival = 1e30;
        for (int i = 0; i < mm->n; i++)
            if (mm->e[i].K == K && mm->e[i].t < rival)
                rival = mm->e[i].t;
        *best = inner == 1 ? one : 1e30;
        if (inner == 1 && one > 3 * rival)
            reps = 0;
        for (int r = inner == 1 ? 1 : 0; r < reps && !rc; r++) {
            rc = record(s, op, out, X, work, inner, v);
            t0 = fp_now();
            if (!rc)
                rc = fp_stream_run(s);
            double t = (fp_now() - t0) / inner;
            if (!rc && t < *best)
                *best = t;
        }
        if (!rc && mm->n < (int)(sizeof mm->e / sizeof mm->e[0])) {
            mm->e[mm->n].K = K;
            snprintf(mm->e[mm->n].variant, sizeof mm->e[0].variant, "%s", variant);
            mm->e[mm->n++].t = *best;
        }
    }
    fp_stream_free(s);
    fp_tensor_free(work);
    fp_tensor_free(out);
    return rc;
}

/* Device matrix [K, D] of the host values h. */
static int upload_mat(fp_tensor **t, fp_ctx *ctx, const float *h, int64_t K, int64_t D)
{
    int64_t shp[2] = {K, D};
    int rc = fp_tensor_new(t, ctx, FP_F32, 2, shp);
    if (!rc && (rc = fp_tensor_upload(*t, h, (size_t)(K * D) * sizeof *h))) {
        fp_tensor_free(*t);
        *t = NULL;
    }
    return rc;
}

/* One device choice to tune. */
typedef struct tune_spec {
    const char *what, *key; /* for messages; the tuned key */
    int op;
    int ncand;
    const int *cand;           /* agg_force values */
    const char *const *names;  /* and the key's values for them */
    const int64_t *check_K;    /* reference checks (D = 37 and 68) */
    int ncheck;
    const int64_t *time_K;     /* timings (first K rows of the timing matrix) */
    int ntime;
    int (*want_ok)(const char *variant, int64_t K, int cand); /* the candidate's own pipeline ran */
} tune_spec;

static void force(const tune_spec *ts, int cand)
{
    agg_force f = {0};
    if (ts->op == OP_MEDIAN)
        f.order_net = cand;
    else
        f.norm = cand;
    fp_agg_force_set(&f);
}

/* The candidate (already forced) on small shapes against the C reference:
 * D = 37 runs the scalar kernels, D = 68 the vec4 ones where the op has them.
 * Wrong results, a fallback or a pipeline that does not build fail it (why). */
static int check(fp_ctx *ctx, const tune_spec *ts, int cand, char *why, size_t why_len)
{
    static const int64_t Ds[2] = {37, 68};
    int rc = 0;
    for (int ki = 0; ki < ts->ncheck && !rc; ki++)
        for (int di = 0; di < 2 && !rc; di++) {
            int64_t K = ts->check_K[ki], D = Ds[di], nout = ts->op == OP_MEDIAN ? D : K;
            float *h = rand_host(K * D, (uint32_t)(K * 131 + D)), *ref = malloc((size_t)nout * 4);
            float *got = malloc((size_t)nout * 4);
            fp_tensor *X = NULL;
            char variant[48] = "";
            if (!h || !ref || !got)
                rc = fp_seterr(FP_ENOMEM, "out of memory");
            if (!rc)
                rc = ts->op == OP_MEDIAN ? fp_agg_median_ref(ref, h, K, D) : fp_agg_norms_ref(ref, h, K, D);
            if (!rc)
                rc = upload_mat(&X, ctx, h, K, D);
            if (!rc)
                rc = run_op(ctx, ts->op, X, got, 0, NULL, NULL, variant);
            if (rc) {
                snprintf(why, why_len, "fails at K = %lld, D = %lld: %s", (long long)K, (long long)D, fp_errmsg());
            } else if (!ts->want_ok(variant, K, cand)) {
                snprintf(why, why_len, "ran %s at K = %lld instead (a fallback)", variant, (long long)K);
                rc = FP_EUNSUPPORTED;
            } else {
                double num = 0, den = 0, worst_rel = 0;
                for (int64_t i = 0; i < nout; i++) {
                    double e = (double)got[i] - ref[i], rel = ref[i] != 0 ? fabs(e / ref[i]) : fabs(e);
                    num += e * e;
                    den += (double)ref[i] * ref[i];
                    if (!(rel <= worst_rel))
                        worst_rel = isnan(rel) ? 1e30 : rel;
                }
                double nmse = den > 0 ? num / den : num;
                /* medians: an exact selection; norms: f32 partial sums (ops_aggregate.h) */
                if (!(nmse <= 1e-7) || (ts->op == OP_NORMS && !(worst_rel <= 1e-5))) {
                    snprintf(why, why_len, "is wrong against the reference at K = %lld, D = %lld (nmse %g, max rel %g)",
                             (long long)K, (long long)D, nmse, worst_rel);
                    rc = FP_EUNSUPPORTED;
                }
            }
            fp_tensor_free(X);
            free(h), free(ref), free(got);
        }
    return rc;
}

#define MAX_CAND 4
#define MAX_SHAPES 4

/* Checks, then times every candidate that passed on each timing shape (views
 * of the first K rows of Xall), and stores the one with the lowest score: the
 * sum over shapes of its time over the best time on that shape, so each shape
 * counts alike whatever its size. */
static int tune_one(fp_ctx *ctx, fp_measured *m, const tune_spec *ts, fp_tensor *Xall, int quick)
{
    int ok[MAX_CAND];
    double t[MAX_CAND][MAX_SHAPES] = {{0}};
    memo mm = {0};
    /* last candidate first (the most network, flat): where radix select is
     * slow (CPU devices) it then meets a rival and is not repeated */
    for (int c = ts->ncand - 1; c >= 0; c--) {
        char why[512] = "";
        force(ts, ts->cand[c]);
        ok[c] = check(ctx, ts, ts->cand[c], why, sizeof why) == 0;
        if (!ok[c]) {
            fprintf(stderr, "aggregate autotune: %s = %s %s: not used\n", ts->what, ts->names[c], why);
            continue;
        }
        for (int ki = 0; ki < ts->ntime && ok[c]; ki++) {
            int64_t shp[2] = {ts->time_K[ki], Xall->shape[1]};
            fp_tensor *X = NULL;
            char variant[48] = "";
            int rc = fp_tensor_view(&X, Xall, 0, FP_F32, 2, shp);
            if (!rc)
                rc = run_op(ctx, ts->op, X, NULL, quick ? 2 : 3, &mm, &t[c][ki], variant);
            if (!rc && !ts->want_ok(variant, shp[0], ts->cand[c]))
                rc = fp_seterr(FP_EUNSUPPORTED, "ran %s instead (a fallback)", variant);
            fp_tensor_free(X);
            if (rc) {
                fprintf(stderr, "aggregate autotune: %s = %s failed at K = %lld, D = %lld: %s; not used\n",
                        ts->what, ts->names[c], (long long)shp[0], (long long)shp[1], fp_errmsg());
                ok[c] = 0;
            }
        }
    }
    fp_agg_force_set(NULL);
    int win = -1;
    double best_score = 1e30;
    for (int c = 0; c < ts->ncand; c++) {
        double score = 0;
        for (int ki = 0; ok[c] && ki < ts->ntime; ki++) {
            double tmin = 1e30;
            for (int o = 0; o < ts->ncand; o++)
                if (ok[o] && t[o][ki] < tmin)
                    tmin = t[o][ki];
            score += t[c][ki] / tmin;
        }
        if (ok[c] && score < best_score) {
            best_score = score;
            win = c;
        }
    }
    if (win < 0)
        return fp_seterr(FP_EPIPELINE, "%s: no candidate passed the reference check", ts->what);
    /* what decided it, for people reading fp-probe --json on a device they
     * cannot sit at ("<key>.ms": per candidate, ms per op on each timing shape;
     * nothing reads it back) */
    char info[FP_TUNE_VALUE_MAX] = "";
    size_t n = 0;
    for (int c = 0; c < ts->ncand && n < sizeof info; c++) {
        n += (size_t)snprintf(info + n, sizeof info - n, "%s%s:", c ? " " : "", ts->names[c]);
        for (int ki = 0; ki < ts->ntime && n < sizeof info; ki++)
            n += ok[c] ? (size_t)snprintf(info + n, sizeof info - n, "%s%.3g", ki ? "/" : "", t[c][ki] * 1e3)
                       : (size_t)snprintf(info + n, sizeof info - n, "%s", ki ? "" : "failed");
    }
    char ikey[FP_TUNE_KEY_MAX];
    snprintf(ikey, sizeof ikey, "%s.ms", ts->key);
    int rc = fp_measured_tune_set(m, ts->key, ts->names[win]);
    if (!rc)
        rc = fp_measured_tune_set(m, ikey, info);
    return rc;
}

static int order_ok(const char *variant, int64_t K, int net_max)
{
    const char *want = K <= net_max ? "agg_order_k" : "agg_order_radix";
    return !strncmp(variant, want, strlen(want));
}

static int norm_ok(const char *variant, int64_t K, int kind)
{
    (void)K;
    return !strncmp(variant, "agg_sumsq", 9) && (strstr(variant, "_flat") != NULL) == (kind == AGG_NORM_FLAT);
}

int fp_agg_autotune(fp_ctx *ctx, fp_measured *m, int quick)
{
    if (!ctx || !m)
        return fp_seterr(FP_EINVAL, "aggregate autotune: NULL argument");
    /* order_net: K = 50 tells a 64-input network from radix select, K = 100 a
     * 128-input one; checking at the same K builds the very pipelines the
     * timings use (a network is specialised to its K and kept ranks, and one
     * of 128 inputs takes seconds to build on lavapipe) */
    static const int net_cand[3] = {32, 64, 128};
    static const char *const net_names[3] = {"32", "64", "128"};
    static const int64_t net_K[2] = {50, 100};
    static const int norm_cand[2] = {AGG_NORM_TREE, AGG_NORM_FLAT};
    static const char *const norm_names[2] = {"tree", "flat"};
    static const int64_t norm_check_K[1] = {3}, norm_K[2] = {10, 100};
    const tune_spec specs[2] = {
        {"order_net", "aggregate.order_net", OP_MEDIAN, 3, net_cand, net_names, net_K, 2, net_K, 2, order_ok},
        {"norm", "aggregate.norm", OP_NORMS, 2, norm_cand, norm_names, norm_check_K, 1, norm_K, 2, norm_ok},
    };
    /* one [100, D] matrix; each timing shape is a view of its first K rows */
    int64_t K = 100, D = quick ? (int64_t)1 << 16 : (int64_t)1 << 18;
    float *h = rand_host(K * D, 7u);
    fp_tensor *X = NULL;
    int rc = h ? upload_mat(&X, ctx, h, K, D) : fp_seterr(FP_ENOMEM, "out of memory");
    free(h);
    /* each key on its own: one with no working candidate leaves the other tuned */
    int frc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        int r = tune_one(ctx, m, &specs[i], X, quick);
        if (r == FP_EOVERFLOW || r == FP_EINVAL)
            rc = r; /* the tune table itself: no point going on */
        else if (r && !frc)
            frc = r;
    }
    if (!rc)
        rc = frc;
    fp_agg_force_set(NULL);
    fp_tensor_free(X);
    return rc ? fp_adderr(rc, "aggregate autotune") : 0;
}
