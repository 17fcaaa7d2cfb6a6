/* Attention autotuner (fp-probe --tune): the fastest variant that is correct
 * on this device, stored as the tuned key "attention.variant" (read by the
 * attention ops' variant choice in attention.c), and whether the backward's
 * split pays with it ("attention.split": "1" disables it, "0" leaves the
 * default rule). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_reps.h"
#include "error_internal.h"
#include "fedproxy/ops_attention.h"

/* One head layout's device tensors (and host copies for the check). */
typedef struct attn_set {
    int64_t B, T, Hq, Hkv, D;
    fp_tensor *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
    float *hq, *hk, *hv, *hdo;
} attn_set;

static void set_free(attn_set *a)
{
    fp_tensor *ts[] = {a->q, a->k, a->v, a->o, a->lse, a->dout, a->dq, a->dk, a->dv};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        fp_tensor_free(ts[i]);
    free(a->hq);
    free(a->hk);
    free(a->hv);
    free(a->hdo);
}

static float *rand_host(int64_t n, uint32_t *st)
{
    float *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; h && i < n; i++) {
        *st = *st * 1664525u + 1013904223u;
        h[i] = (float)((*st >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return h;
}

static int set_new(attn_set *a, fp_ctx *ctx, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D)
{
    memset(a, 0, sizeof *a);
    a->B = B, a->T = T, a->Hq = Hq, a->Hkv = Hkv, a->D = D;
    int64_t sq[4] = {B, T, Hq, D}, skv[4] = {B, T, Hkv, D}, sl[3] = {B, Hq, T};
    int64_t nq = B * T * Hq * D, nkv = B * T * Hkv * D;
    uint32_t st = 4242u + (uint32_t)T;
    int rc = 0;
    fp_tensor **qs[] = {&a->q, &a->o, &a->dout, &a->dq}, **kvs[] = {&a->k, &a->v, &a->dk, &a->dv};
    for (int i = 0; i < 4 && !rc; i++)
        rc = fp_tensor_new(qs[i], ctx, FP_F32, 4, sq);
    for (int i = 0; i < 4 && !rc; i++)
        rc = fp_tensor_new(kvs[i], ctx, FP_F32, 4, skv);
    if (!rc)
        rc = fp_tensor_new(&a->lse, ctx, FP_F32, 3, sl);
    if (!rc) {
        a->hq = rand_host(nq, &st), a->hk = rand_host(nkv, &st), a->hv = rand_host(nkv, &st);
        a->hdo = rand_host(nq, &st);
        if (!a->hq || !a->hk || !a->hv || !a->hdo)
            rc = fp_seterr(FP_ENOMEM, "attention tune: out of memory");
    }
    if (!rc)
        rc = fp_tensor_upload(a->q, a->hq, (size_t)nq * 4);
    if (!rc)
        rc = fp_tensor_upload(a->k, a->hk, (size_t)nkv * 4);
    if (!rc)
        rc = fp_tensor_upload(a->v, a->hv, (size_t)nkv * 4);
    if (!rc)
        rc = fp_tensor_upload(a->dout, a->hdo, (size_t)nq * 4);
    if (rc)
        set_free(a);
    return rc;
}

/* Records forward + backward; *fwd_pipe / *bwd_pipe get the pipelines that ran. */
static int record(fp_stream *s, attn_set *a, char *fwd_pipe, char *bwd_pipe)
{
    fp_attn_desc d = {0.0f, 1};
    int rc = fp_attention_forward(s, a->o, a->lse, a->q, a->k, a->v, &d);
    if (!rc)
        snprintf(fwd_pipe, 64, "%s", fp_attention_last_pipeline());
    if (!rc)
        rc = fp_attention_backward(s, a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->o, a->lse, &d);
    if (!rc)
        snprintf(bwd_pipe, 64, "%s", fp_attention_last_pipeline());
    return rc;
}

static double nmse(const float *got, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)got[i] - ref[i];
        num += e * e;
        den += (double)ref[i] * ref[i];
    }
    double r = den > 0 ? num / den : num;
    return isnan(r) ? 1e30 : r;
}

/* Worst NMSE of o, dq, dk, dv against the C references. */
static int check(fp_ctx *ctx, attn_set *a, const char *kind, double *worst)
{
    fp_stream *s = NULL;
    char fp[64], bp[64];
    int rc = fp_stream_new(&s, ctx);
    if (!rc)
        rc = record(s, a, fp, bp);
    if (!rc)
        rc = fp_stream_run(s);
    fp_stream_free(s);
    if (rc)
        return rc;
    char want_f[64], want_b[64];
    snprintf(want_f, sizeof want_f, "attn_fwd_%s", kind);
    snprintf(want_b, sizeof want_b, "attn_bwd_dkv_%s", kind);
    if (strcmp(fp, want_f) || strcmp(bp, want_b))
        return fp_seterr(FP_EUNSUPPORTED, "ran %s and %s instead (fallback)", fp, bp);
    int64_t nq = a->B * a->T * a->Hq * a->D, nkv = a->B * a->T * a->Hkv * a->D;
    float *ro = malloc((size_t)nq * 4), *rdq = malloc((size_t)nq * 4), *rdk = malloc((size_t)nkv * 4);
    float *rdv = malloc((size_t)nkv * 4), *g = malloc((size_t)(nq > nkv ? nq : nkv) * 4);
    fp_attn_desc d = {0.0f, 1};
    if (!ro || !rdq || !rdk || !rdv || !g)
        rc = fp_seterr(FP_ENOMEM, "attention tune: out of memory");
    if (!rc)
        rc = fp_attention_forward_ref(ro, NULL, a->hq, a->hk, a->hv, a->B, a->T, a->Hq, a->Hkv, a->D, &d);
    if (!rc)
        rc = fp_attention_backward_ref(rdq, rdk, rdv, a->hdo, a->hq, a->hk, a->hv, a->B, a->T, a->Hq, a->Hkv, a->D,
                                       &d);
    *worst = 0;
    const fp_tensor *ts[4] = {a->o, a->dq, a->dk, a->dv};
    const float *refs[4] = {ro, rdq, rdk, rdv};
    for (int i = 0; i < 4 && !rc; i++) {
        int64_t n = i < 2 ? nq : nkv;
        rc = fp_tensor_download(g, (size_t)n * 4, ts[i]);
        double e = rc ? 0 : nmse(g, refs[i], n);
        if (e > *worst)
            *worst = e;
    }
    free(ro), free(rdq), free(rdk), free(rdv), free(g);
    return rc;
}

typedef struct timed_call {
    attn_set *a;
    char fp[64], bp[64];
} timed_call;

static int timed_record(fp_stream *s, void *arg)
{
    timed_call *c = arg;
    return record(s, c->a, c->fp, c->bp);
}

/* Best seconds of forward + backward over `reps` submissions (after an untimed
 * warm-up), each of as many calls as outlast the queue's round trip
 * (bench_reps.h): per submission, a discrete GPU's round trip is as long as a
 * small shape's kernels, and would hide which variant is faster. */
static int timed(fp_ctx *ctx, attn_set *a, int reps, double *best)
{
    fp_stream *s = NULL;
    timed_call c = {.a = a};
    int rc = fp_stream_new(&s, ctx);
    *best = 1e30;
    if (!rc)
        rc = fp_bench_best(s, timed_record, &c, 1, reps, best, NULL);
    fp_stream_free(s);
    return rc;
}

int fp_attention_autotune(fp_ctx *ctx, fp_measured *m, int quick)
{
    if (!ctx || !m)
        return fp_seterr(FP_EINVAL, "attention autotune: NULL argument");
    static const char *kinds[] = {"sg", "tiled", "direct"};
    attn_set small, big;
    /* odd sequence, GQA, D a multiple of 4 (the sg variant's requirement) */
    int rc = set_new(&small, ctx, 1, 37, 4, 2, 32);
    if (rc)
        return fp_adderr(rc, "attention autotune");
    if ((rc = set_new(&big, ctx, 1, quick ? 64 : 256, 8, 2, 64))) {
        set_free(&small);
        return fp_adderr(rc, "attention autotune");
    }
    const char *win = NULL;
    double best = 1e30;
    for (int i = 0; i < 3; i++) {
        if ((rc = fp_attention_force_variant(kinds[i])))
            break;
        double e = 0, t = 0;
        int crc = check(ctx, &small, kinds[i], &e);
        if (crc || e > 5e-4) {
            fprintf(stderr, "attention autotune: variant %s %s (nmse %g): not used\n", kinds[i],
                    crc ? fp_errmsg() : "is wrong against the reference", e);
            continue;
        }
        if ((crc = timed(ctx, &big, quick ? 1 : 2, &t))) {
            fprintf(stderr, "attention autotune: variant %s failed: %s\n", kinds[i], fp_errmsg());
            continue;
        }
        if (t < best) {
            best = t;
            win = kinds[i];
        }
    }
    const char *split = "0";
    if (!rc && win) {
        /* the split with the winner: correct (forced on the small shape), and
         * faster than unsplit where the GPU rule splits the benchmark layout */
        double e = 0, t_one = 0, t_split = 0;
        int srcs = fp_attention_force_variant(win);
        if (!srcs)
            srcs = fp_attention_force_split(3);
        if (!srcs)
            srcs = check(ctx, &small, win, &e);
        int nsplit = fp_attention_last_split(), nsplit_dq = fp_attention_last_split_dq();
        if (srcs || e > 5e-4 || nsplit < 2 || nsplit_dq < 2) {
            fprintf(stderr, "attention autotune: backward split (%d / %d chunks) %s (nmse %g): disabled\n", nsplit,
                    nsplit_dq,
                    srcs          ? fp_errmsg()
                    : e > 5e-4    ? "is wrong against the reference"
                                  : "could not run",
                    e);
            split = "1";
        } else if (!(srcs = fp_attention_force_split(1)) && !(srcs = timed(ctx, &big, quick ? 1 : 2, &t_one)) &&
                   !(srcs = fp_attention_force_split(-1)) && !(srcs = timed(ctx, &big, quick ? 1 : 2, &t_split))) {
            nsplit = fp_attention_last_split(), nsplit_dq = fp_attention_last_split_dq();
            if ((nsplit > 1 || nsplit_dq > 1) && t_split > t_one)
                split = "1";
            fprintf(stderr, "attention autotune: %s backward split dk/dv %d, dq %d: %.3f ms, unsplit %.3f ms: %s\n",
                    win, nsplit, nsplit_dq, t_split * 1e3, t_one * 1e3, split[0] == '1' ? "disabled" : "default rule");
        } else {
            fprintf(stderr, "attention autotune: timing the backward split failed: %s\n", fp_errmsg());
            split = "1";
        }
        fp_errclear();
    }
    fp_attention_force_variant(NULL);
    fp_attention_force_split(0);
    set_free(&small);
    set_free(&big);
    if (rc)
        return rc;
    if (!win)
        return fp_seterr(FP_EPIPELINE, "attention autotune: no variant passed the reference check");
    rc = fp_measured_tune_set(m, "attention.variant", win);
    if (!rc)
        rc = fp_measured_tune_set(m, "attention.split", split);
    return rc;
}
