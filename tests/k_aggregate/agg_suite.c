/* Every aggregation op vs its C reference (see agg_suite.h). Tolerances: NMSE
 * <= 1e-7 for every f32 op (sums over K <= 100 clients stay far inside it;
 * the norm reference accumulates in double, the device in f32 partial sums of
 * a few thousand terms: relative error ~1e-6 at worst, NMSE ~1e-12); order
 * statistics with odd K and every u32 ring op and quantisation are bit-exact. */
#include "agg_suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

#define TOL 1e-7

int agg_close(const char *what, const float *a, const float *ref, int64_t n, double tol)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    int ok = den > 0 ? num / den <= tol : num == 0;
    if (!ok) {
        int64_t worst = 0;
        for (int64_t i = 0; i < n; i++)
            if (fabs((double)a[i] - ref[i]) > fabs((double)a[worst] - ref[worst]))
                worst = i;
        fprintf(stderr, "  %s: nmse %.3g (tol %.1g), worst at %lld: %.9g vs %.9g\n", what, den > 0 ? num / den : num,
                tol, (long long)worst, (double)a[worst], (double)ref[worst]);
    }
    return ok;
}

static fp_tensor *up(fp_ctx *ctx, fp_dtype dt, int ndim, int64_t a, int64_t b, const void *h)
{
    int64_t shp[2] = {a, b};
    fp_tensor *t = NULL;
    CHECK_OK(fp_tensor_new(&t, ctx, dt, ndim, shp));
    if (t && h)
        CHECK_OK(fp_tensor_upload(t, h, t->nbytes));
    return t;
}

static void down(void *h, const fp_tensor *t) { CHECK_OK(fp_tensor_download(h, t->nbytes, t)); }

static char seen[64][96];
static int nseen;

static void note_variant(const char *op)
{
    char line[96];
    snprintf(line, sizeof line, "%s=%s", op, fp_agg_last_variant());
    for (int i = 0; i < nseen; i++)
        if (!strncmp(seen[i], line, sizeof seen[i] - 1))
            return;
    if (nseen < 64) {
        snprintf(seen[nseen++], sizeof seen[0], "%s", line);
        printf("  variant %s\n", line);
    }
}

int agg_suite_seen2(const char *a, const char *b)
{
    int n = 0;
    for (int i = 0; i < nseen; i++)
        n += strstr(seen[i], a) != NULL && (!b || strstr(seen[i], b) != NULL);
    return n;
}

int agg_suite_seen(const char *needle) { return agg_suite_seen2(needle, NULL); }

void agg_suite_forget(void) { nseen = 0; }

static void run(fp_stream *s) { CHECK_OK(fp_stream_run(s)); }

static void one_case(fp_ctx *ctx, fp_stream *s, int64_t K, int64_t D, int order_gathered)
{
    size_t kd = (size_t)(K * D);
    float *X = malloc(kd * 4), *X2 = malloc(kd * 4), *w = malloc(K * 4), *o = malloc(D * 4), *r = malloc(D * 4);
    float *o2 = malloc(D * 4), *r2 = malloc(D * 4), *nk = malloc(K * 4), *rk = malloc(K * 4);
    uint32_t *Q = malloc(kd * 4), *qo = malloc(D * 4), *qr = malloc(D * 4);
    for (size_t i = 0; i < kd; i++) {
        X[i] = fp_test_normal() * 0.1f;
        /* ring values anywhere in Z_2^32, many near the top so sums wrap */
        uint32_t u = fp_test_u32();
        Q[i] = (i % 3 == 0) ? 0xffffffffu - (u & 0xffff) : u;
    }
    for (int64_t k = 0; k < K; k++)
        w[k] = fp_test_uniform(0.0f, 1.0f);
    for (int64_t d = 0; d < D; d++)
        o[d] = fp_test_normal();
    char tag[64];
    snprintf(tag, sizeof tag, "K=%lld D=%lld", (long long)K, (long long)D);
    fp_tensor *tX = up(ctx, FP_F32, 2, K, D, X), *tw = up(ctx, FP_F32, 1, K, 0, w);
    fp_tensor *to = up(ctx, FP_F32, 1, D, 0, o), *to2 = up(ctx, FP_F32, 1, D, 0, NULL);
    fp_tensor *to3 = up(ctx, FP_F32, 1, D, 0, NULL), *tn = up(ctx, FP_F32, 1, K, 0, NULL);
    fp_tensor *tQ = up(ctx, FP_U32, 2, K, D, Q), *tq = up(ctx, FP_U32, 1, D, 0, NULL);
    int64_t wsz = fp_agg_norms_worksize(ctx, K, D);
    fp_tensor *twork = up(ctx, FP_F32, 1, wsz, 0, NULL);
    if (!tX || !tw || !to || !to2 || !to3 || !tn || !tQ || !tq || !twork)
        goto out;

    /* weighted sum: accumulate onto o, then fresh */
    memcpy(r, o, D * 4);
    fp_agg_wsum_ref(r, X, w, K, D, 1);
    CHECK_OK(fp_agg_wsum(s, to, tX, tw, 1));
    run(s);
    note_variant("wsum");
    down(o2, to);
    CHECKF(agg_close("wsum acc", o2, r, D, TOL), "%s", tag);
    fp_agg_wsum_ref(r, X, w, K, D, 0);
    CHECK_OK(fp_agg_wsum(s, to, tX, tw, 0));
    run(s);
    down(o2, to);
    CHECKF(agg_close("wsum", o2, r, D, TOL), "%s", tag);
    /* streaming: out += w_k x_k one client at a time (row views) equals the batch sum */
    CHECK_OK(fp_tensor_zero(to2));
    for (int64_t k = 0; k < K; k++) {
        fp_tensor *row = NULL;
        CHECK_OK(fp_tensor_view(&row, tX, k * D, FP_F32, 1, &D));
        if (row) /* rows of a D % 4 != 0 matrix are misaligned views: windows handle them */
            CHECK_OK(fp_agg_axpy(s, to2, row, w[k]));
        run(s);
        fp_tensor_free(row);
    }
    note_variant("axpy");
    down(o2, to2);
    CHECKF(agg_close("axpy stream", o2, r, D, TOL), "%s", tag);

    /* norms and clipping */
    fp_agg_norms_ref(rk, X, K, D);
    CHECK_OK(fp_agg_norms(s, tn, tX, twork));
    run(s);
    note_variant("norms");
    down(nk, tn);
    CHECKF(agg_close("norms", nk, rk, K, TOL), "%s", tag);
    float c = rk[0] * 0.7f; /* client 0 is clipped, others maybe */
    memcpy(X2, X, kd * 4);
    fp_agg_clip_ref(X2, rk, c, K, D);
    CHECK_OK(fp_agg_clip(s, tX, tn, c));
    run(s);
    note_variant("clip");
    float *Xd = malloc(kd * 4);
    down(Xd, tX);
    CHECKF(agg_close("clip", Xd, X2, (int64_t)kd, TOL), "%s", tag);
    CHECK_OK(fp_tensor_upload(tX, X, kd * 4));

    /* median and trimmed mean */
    int64_t ows = fp_agg_order_worksize(ctx, K, D);
    CHECKF((ows > 0) == (order_gathered != 0), "order worksize %lld for %s", (long long)ows, tag);
    fp_tensor *towork = ows ? up(ctx, FP_F32, 1, ows, 0, NULL) : NULL;
    if (ows) {
        CHECK_ERR(fp_agg_median(s, to, tX, NULL), FP_EUNSUPPORTED);
        CHECK_ERR(fp_agg_trimmed_mean(s, to, tX, 0, NULL), FP_EUNSUPPORTED);
    }
    {
        fp_agg_median_ref(r, X, K, D);
        CHECK_OK(fp_agg_median(s, to, tX, towork));
        run(s);
        note_variant("median");
        down(o2, to);
        if (K % 2)
            CHECKF(fp_test_maxerr(o2, r, D) == 0.0, "median exact %s", tag);
        CHECKF(agg_close("median", o2, r, D, TOL), "%s", tag);
        uint32_t bs[3] = {0, 1, (uint32_t)(K / 3)};
        for (int i = 0; i < 3; i++) {
            if (2 * (int64_t)bs[i] >= K || (i && bs[i] == bs[i - 1]))
                continue;
            fp_agg_trimmed_mean_ref(r, X, K, D, bs[i]);
            CHECK_OK(fp_agg_trimmed_mean(s, to, tX, bs[i], towork));
            run(s);
            down(o2, to);
            CHECKF(agg_close("trimmed mean", o2, r, D, TOL), "%s b=%u", tag, bs[i]);
        }
        CHECK_ERR(fp_agg_trimmed_mean(s, to, tX, (uint32_t)((K + 1) / 2), towork), FP_EINVAL);
    }
    fp_tensor_free(towork);

    /* TIES: trim (host thresholds) -> total -> masked sums -> disjoint mean */
    fp_agg_ties_threshold_ref(nk, X, K, D, 0.3f);
    memcpy(X2, X, kd * 4);
    fp_agg_ties_trim_ref(X2, nk, K, D);
    fp_tensor *tthr = up(ctx, FP_F32, 1, K, 0, nk);
    CHECK_OK(fp_agg_ties_trim(s, tX, tthr));
    run(s);
    note_variant("ties_trim");
    down(Xd, tX);
    CHECKF(!memcmp(Xd, X2, kd * 4), "ties trim exact %s", tag);
    {
        int64_t kept = 0, need = (int64_t)ceil(0.3 * (double)D);
        for (int64_t d = 0; d < D; d++)
            kept += X2[d] != 0.0f;
        CHECKF(kept >= need || kept == D, "ties keeps %lld of %lld (need %lld)", (long long)kept, (long long)D,
               (long long)need);
    }
    float *ones = malloc(K * 4);
    for (int64_t k = 0; k < K; k++)
        ones[k] = 1.0f;
    float *tot = malloc(D * 4), *cnt = malloc(D * 4), *msr = malloc(D * 4), *cr = malloc(D * 4);
    fp_agg_wsum_ref(tot, X2, ones, K, D, 0);
    /* make some totals exactly zero (no elected sign) */
    for (int64_t d = 0; d < D; d += 5)
        tot[d] = 0.0f;
    CHECK_OK(fp_tensor_upload(to, tot, D * 4));
    fp_agg_ties_masked_ref(msr, cr, X2, tot, K, D, 0);
    CHECK_OK(fp_agg_ties_masked(s, to2, to3, tX, to, 0));
    run(s);
    note_variant("ties_masked");
    down(o2, to2);
    down(cnt, to3);
    CHECKF(agg_close("ties msum", o2, msr, D, TOL), "%s", tag);
    CHECKF(!memcmp(cnt, cr, D * 4), "ties counts exact %s", tag);
    fp_agg_ties_mean_ref(r, msr, cr, D);
    CHECK_OK(fp_agg_ties_mean(s, to2, to2, to3)); /* in place */
    run(s);
    note_variant("ties_mean");
    down(o2, to2);
    CHECKF(agg_close("ties mean", o2, r, D, TOL), "%s", tag);
    fp_tensor_free(tthr);
    free(ones);
    free(tot);
    free(cnt);
    free(msr);
    free(cr);
    free(Xd);
    CHECK_OK(fp_tensor_upload(tX, X, kd * 4));

    /* ring: sum of K rows (with wraparound), accumulate, add/sub of one row */
    memcpy(qr, Q, D * 4); /* start from row 0 as the accumulator */
    CHECK_OK(fp_tensor_upload(tq, qr, D * 4));
    fp_agg_ring_sum_ref(qr, Q, K, D, 1);
    CHECK_OK(fp_agg_ring_sum(s, tq, tQ, 1));
    run(s);
    note_variant("ring_sum");
    down(qo, tq);
    CHECKF(!memcmp(qo, qr, D * 4), "ring sum exact %s", tag);
    fp_agg_ring_sum_ref(qr, Q, K, D, 0);
    CHECK_OK(fp_agg_ring_sum(s, tq, tQ, 0));
    run(s);
    down(qo, tq);
    CHECKF(!memcmp(qo, qr, D * 4), "ring sum exact %s", tag);
    fp_tensor *trow = up(ctx, FP_U32, 1, D, 0, Q + (K - 1) * D);
    fp_agg_ring_sub_ref(qr, Q + (K - 1) * D, D);
    CHECK_OK(fp_agg_ring_sub(s, tq, trow));
    run(s);
    note_variant("ring_sub");
    down(qo, tq);
    CHECKF(!memcmp(qo, qr, D * 4), "ring sub exact %s", tag);
    fp_agg_ring_add_ref(qr, Q + (K - 1) * D, D);
    fp_agg_ring_add_ref(qr, Q + (K - 1) * D, D);
    CHECK_OK(fp_agg_ring_add(s, tq, trow));
    CHECK_OK(fp_agg_ring_add(s, tq, trow));
    run(s);
    down(qo, tq);
    CHECKF(!memcmp(qo, qr, D * 4), "ring add exact %s", tag);
    fp_tensor_free(trow);

    /* quantise (with special values) bit-exact, in one call and in two pieces */
    for (int64_t d = 0; d < D; d++)
        o[d] = X[d] * 20.0f; /* beyond clip = 1 sometimes */
    const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 0.5f, -3e-8f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0] && (int64_t)i < D; i++)
        o[(int64_t)i * 7 % D] = specials[i];
    fp_agg_qparams qp = {.clip = 1.0f, .scale_bits = 20, .seed = 0xfeedface12345678ull + (uint64_t)D,
                         .index0 = 3};
    fp_agg_quantize_ref(qr, o, D, &qp);
    CHECK_OK(fp_tensor_upload(to, o, D * 4));
    CHECK_OK(fp_agg_quantize(s, tq, to, &qp));
    run(s);
    note_variant("quantize");
    down(qo, tq);
    CHECKF(!memcmp(qo, qr, D * 4), "quantize exact %s", tag);
    if (D >= 8) {
        int64_t h = 4; /* split: second piece's index0 continues the first's */
        fp_tensor *a = NULL, *b = NULL, *qa = NULL, *qb = NULL;
        int64_t nb = D - h;
        CHECK_OK(fp_tensor_view(&a, to, 0, FP_F32, 1, &h));
        CHECK_OK(fp_tensor_view(&qa, tq, 0, FP_U32, 1, &h));
        fp_tensor *tb = up(ctx, FP_F32, 1, nb, 0, o + h), *tqb = up(ctx, FP_U32, 1, nb, 0, NULL);
        (void)b;
        (void)qb;
        fp_agg_qparams qp2 = qp;
        qp2.index0 = qp.index0 + (uint32_t)h;
        CHECK_OK(fp_tensor_zero(tq));
        CHECK_OK(fp_agg_quantize(s, qa, a, &qp));
        CHECK_OK(fp_agg_quantize(s, tqb, tb, &qp2));
        run(s);
        down(qo, tq);
        CHECKF(!memcmp(qo, qr, h * 4), "quantize piece 1 %s", tag);
        uint32_t *qb2 = malloc(nb * 4);
        down(qb2, tqb);
        CHECKF(!memcmp(qb2, qr + h, nb * 4), "quantize piece 2 %s", tag);
        free(qb2);
        fp_tensor_free(a);
        fp_tensor_free(qa);
        fp_tensor_free(tb);
        fp_tensor_free(tqb);
    }
    /* dequantise the ring sum of the K rows of Q */
    fp_agg_ring_sum_ref(qr, Q, K, D, 0);
    CHECK_OK(fp_tensor_upload(tq, qr, D * 4));
    fp_agg_dequantize_ref(r, qr, D, 12, 1.0f / (float)K);
    CHECK_OK(fp_agg_dequantize(s, to, tq, 12, 1.0f / (float)K));
    run(s);
    note_variant("dequantize");
    down(o2, to);
    CHECKF(agg_close("dequantize", o2, r, D, 1e-12), "%s", tag);

out:
    fp_tensor_free(tX);
    fp_tensor_free(tw);
    fp_tensor_free(to);
    fp_tensor_free(to2);
    fp_tensor_free(to3);
    fp_tensor_free(tn);
    fp_tensor_free(tQ);
    fp_tensor_free(tq);
    fp_tensor_free(twork);
    free(X); free(X2); free(w); free(o); free(r); free(o2); free(r2); free(nk); free(rk);
    free(Q); free(qo); free(qr);
}

void agg_suite(fp_ctx *ctx, const agg_case *cases, int ncases)
{
    nseen = 0;
    fp_stream *s = NULL;
    CHECK_OK(fp_stream_new(&s, ctx));
    if (!s)
        return;
    for (int i = 0; i < ncases; i++) {
        int f0 = fp_test_failed;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        one_case(ctx, s, cases[i].K, cases[i].D, cases[i].order_gathered);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("  case K=%lld D=%lld: %.2f s\n", (long long)cases[i].K, (long long)cases[i].D,
               (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        if (fp_test_failed != f0)
            fprintf(stderr, "  ^ failures in case K=%lld D=%lld (overlay '%s')\n", (long long)cases[i].K,
                    (long long)cases[i].D, fp_ctx_profile(ctx)->overlay);
    }
    fp_stream_free(s);
}
