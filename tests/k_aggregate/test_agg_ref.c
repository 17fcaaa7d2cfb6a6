/* The C references on hand-made cases (no device): order statistics, TIES
 * thresholds and masks, ring wraparound, quantisation's exactness, clipping
 * and unbiasedness, dequantisation, parameter checks, NaN/Inf behaviour. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

static void order_stats(void)
{
    /* K = 4 clients, D = 2 coordinates; column 0 = {3,1,4,2}, column 1 = {-1,-1,7,-5} */
    const float X[8] = {3, -1, 1, -1, 4, 7, 2, -5};
    float o[2];
    CHECK_OK(fp_agg_median_ref(o, X, 4, 2));
    CHECK(o[0] == 2.5f && o[1] == -1.0f);
    CHECK_OK(fp_agg_trimmed_mean_ref(o, X, 4, 2, 0));
    CHECK(o[0] == 2.5f && o[1] == 0.0f);
    CHECK_ERR(fp_agg_trimmed_mean_ref(o, X, 4, 2, 2), FP_EINVAL);
    /* K = 5, odd: median is the middle value; b = 1 drops an outlier at each end */
    const float Y[5] = {5, 1, 1e9f, 2, -1e9f};
    CHECK_OK(fp_agg_median_ref(o, Y, 5, 1));
    CHECK(o[0] == 2.0f);
    CHECK_OK(fp_agg_trimmed_mean_ref(o, Y, 5, 1, 1));
    CHECK(o[0] == (1.0f + 2.0f + 5.0f) / 3.0f);
    /* infinities are ordered like any value */
    const float Z[3] = {INFINITY, -INFINITY, 0.5f};
    CHECK_OK(fp_agg_median_ref(o, Z, 3, 1));
    CHECK(o[0] == 0.5f);
    /* K = 1 */
    CHECK_OK(fp_agg_median_ref(o, Y, 1, 1));
    CHECK(o[0] == 5.0f);
}

static void ties(void)
{
    const float X[10] = {0.1f, -0.5f, 0.3f, 0.0f, 0.2f, /* client 1 */ -0.4f, 0.05f, -0.3f, 0.0f, 0.25f};
    float thr[2], Xt[10];
    CHECK_OK(fp_agg_ties_threshold_ref(thr, X, 2, 5, 0.4f)); /* keep ceil(2) = 2 per client */
    CHECK(thr[0] == 0.3f && thr[1] == 0.3f);
    memcpy(Xt, X, sizeof X);
    CHECK_OK(fp_agg_ties_trim_ref(Xt, thr, 2, 5));
    const float want[10] = {0, -0.5f, 0.3f, 0, 0, -0.4f, 0, -0.3f, 0, 0};
    CHECK(!memcmp(Xt, want, sizeof want));
    CHECK_ERR(fp_agg_ties_threshold_ref(thr, X, 2, 5, 0.0f), FP_EINVAL);
    /* elected sign from the total of the trimmed updates */
    float tot[5], ms[5], cnt[5], mean[5];
    const float ones[2] = {1, 1};
    CHECK_OK(fp_agg_wsum_ref(tot, Xt, ones, 2, 5, 0));
    CHECK(tot[0] == -0.4f && tot[1] == -0.5f && tot[2] == 0.0f); /* d2: 0.3 - 0.3 */
    CHECK_OK(fp_agg_ties_masked_ref(ms, cnt, Xt, tot, 2, 5, 0));
    CHECK(ms[0] == -0.4f && cnt[0] == 1.0f);           /* client 1 agrees; client 0's 0 never counts */
    CHECK(ms[1] == -0.5f && cnt[1] == 1.0f);
    CHECK(ms[2] == 0.0f && cnt[2] == 0.0f);            /* total 0: no sign elected */
    CHECK(ms[3] == 0.0f && cnt[3] == 0.0f);
    const float tot2[5] = {0, -1, 1, 0, 0};            /* elect + at d2: only client 0's 0.3 agrees */
    CHECK_OK(fp_agg_ties_masked_ref(ms, cnt, Xt, tot2, 2, 5, 0));
    CHECK(ms[2] == 0.3f && cnt[2] == 1.0f);
    CHECK_OK(fp_agg_ties_masked_ref(ms, cnt, Xt, tot2, 2, 5, 1)); /* accumulate doubles */
    CHECK(ms[2] == 0.6f && cnt[2] == 2.0f);
    CHECK_OK(fp_agg_ties_mean_ref(mean, ms, cnt, 5));
    CHECK(mean[2] == 0.3f && mean[0] == 0.0f);
}

static void ring(void)
{
    uint32_t a[3] = {0xffffffffu, 0, 5}, b[3] = {2, 1, 7};
    CHECK_OK(fp_agg_ring_add_ref(a, b, 3));
    CHECK(a[0] == 1 && a[1] == 1 && a[2] == 12);
    CHECK_OK(fp_agg_ring_sub_ref(a, b, 3));
    CHECK_OK(fp_agg_ring_sub_ref(a, b, 3));
    CHECK(a[0] == 0xfffffffdu && a[1] == 0xffffffffu && a[2] == 0xfffffffeu);
    /* K = 3 clients of -1, +2, -4 in two's complement sum to -3, decoded as -3 * step */
    uint32_t Q[3] = {(uint32_t)-1, 2u, (uint32_t)-4}, s = 0;
    CHECK_OK(fp_agg_ring_sum_ref(&s, Q, 3, 1, 0));
    CHECK(s == (uint32_t)-3);
    float f;
    CHECK_OK(fp_agg_dequantize_ref(&f, &s, 1, 4, 1.0f));
    CHECK(f == -3.0f / 16.0f);
    CHECK_OK(fp_agg_dequantize_ref(&f, &s, 1, 0, 0.5f));
    CHECK(f == -1.5f);
}

static void quantise(void)
{
    fp_agg_qparams p = {.clip = 2.0f, .scale_bits = 10, .seed = 99, .index0 = 0};
    /* exact grid values and clipped values are deterministic */
    const float x[6] = {1.5f, -0.25f, 5.0f, -INFINITY, NAN, 0.0f};
    uint32_t q[6];
    CHECK_OK(fp_agg_quantize_ref(q, x, 6, &p));
    CHECK(q[0] == 1536u && q[1] == (uint32_t)-256 && q[2] == 2048u && q[3] == (uint32_t)-2048 && q[4] == 0 &&
          q[5] == 0);
    /* unbiased: E[q] = x * 2^s; with s = 0, q is floor(x) + Bernoulli(frac) */
    p.scale_bits = 0;
    const int n = 200000;
    float *xs = malloc(n * sizeof *xs);
    uint32_t *qs = malloc(n * sizeof *qs);
    const float vals[4] = {0.3f, -0.7f, 1.25f, -0.01f};
    for (int v = 0; v < 4; v++) {
        for (int i = 0; i < n; i++)
            xs[i] = vals[v];
        p.seed = 1000 + (uint64_t)v * 0x100000001ull;
        CHECK_OK(fp_agg_quantize_ref(qs, xs, n, &p));
        double m = 0;
        int lo_ok = 1;
        for (int i = 0; i < n; i++) {
            int32_t qi = (int32_t)qs[i];
            m += qi;
            lo_ok &= qi == (int32_t)floorf(vals[v]) || qi == (int32_t)floorf(vals[v]) + 1;
        }
        m /= n;
        double fr = vals[v] - floor(vals[v]), sd = sqrt(fr * (1 - fr) / n);
        CHECKF(fabs(m - vals[v]) < 5 * sd + 1e-6, "mean %g for %g (sd %g)", m, (double)vals[v], sd);
        CHECK(lo_ok);
    }
    /* the hash: different seeds give different streams; no obvious bias in its top bit */
    int top = 0, same = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        top += fp_agg_hash(5, i) >> 31;
        same += fp_agg_hash(5, i) == fp_agg_hash(6, i);
    }
    CHECK(top > 4700 && top < 5300 && same < 5);
    free(xs);
    free(qs);
    /* parameter checks: headroom for the client count */
    fp_agg_qparams c = {.clip = 1.0f, .scale_bits = 24};
    CHECK_OK(fp_agg_qparams_check(&c, 100));
    CHECK_ERR(fp_agg_qparams_check(&c, 200), FP_EOVERFLOW);
    c.scale_bits = 31;
    CHECK_ERR(fp_agg_qparams_check(&c, 1), FP_EINVAL);
    c.scale_bits = 10;
    c.clip = NAN;
    CHECK_ERR(fp_agg_qparams_check(&c, 1), FP_EINVAL);
    c.clip = 3e6f; /* 3e6 * 2^10 > 2^31 */
    CHECK_ERR(fp_agg_quantize_ref(q, x, 1, &c), FP_EINVAL);
}

static void norms(void)
{
    const float X[6] = {3, 4, 0, /* NaN client */ 1, NAN, 1};
    float n[3];
    CHECK_OK(fp_agg_norms_ref(n, X, 2, 3));
    CHECK(n[0] == 5.0f && isnan(n[1]));
    const float Y[2] = {INFINITY, 1};
    CHECK_OK(fp_agg_norms_ref(n, Y, 1, 2));
    CHECK(isinf(n[0]));
    /* clipping scales to the bound; NaN norms leave the client alone */
    float Z[6] = {3, 4, 0, 1, NAN, 1};
    const float zn[2] = {5.0f, NAN};
    CHECK_OK(fp_agg_clip_ref(Z, zn, 1.0f, 2, 3));
    CHECK(fabsf(Z[0] - 0.6f) < 1e-7f && fabsf(Z[1] - 0.8f) < 1e-7f && Z[3] == 1.0f && isnan(Z[4]));
    CHECK_ERR(fp_agg_clip_ref(Z, zn, 0.0f, 2, 3), FP_EINVAL);
}

int main(void)
{
    order_stats();
    ties();
    ring();
    quantise();
    norms();
    float w = 2.0f, out[2] = {1, 1};
    const float x[2] = {0.5f, -1.0f};
    CHECK_OK(fp_agg_axpy_ref(out, x, w, 2));
    CHECK(out[0] == 2.0f && out[1] == -1.0f);
    CHECK_OK(fp_agg_wsum_ref(out, x, &w, 1, 2, 1));
    CHECK(out[0] == 3.0f && out[1] == -3.0f);
    return fp_test_report("test_agg_ref");
}
