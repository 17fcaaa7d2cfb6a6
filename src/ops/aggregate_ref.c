/* C references of the aggregation ops (include/fedproxy/ops_aggregate.h): the
 * ground truth of the kernel tests and the server's CPU fallback. Same
 * arithmetic order as the shaders where the result depends on it (sums over
 * clients in order k = 0..K-1; order statistics summed in ascending order). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/ops_aggregate.h"

static int bad_dims(const char *op, int64_t K, int64_t D)
{
    return fp_seterr(FP_EINVAL, "%s: bad sizes K = %lld, D = %lld", op, (long long)K, (long long)D);
}

#define CHECK_DIMS(op, K, D)                                                                                 \
    do {                                                                                                     \
        if ((K) < 1 || (D) < 0)                                                                              \
            return bad_dims(op, K, D);                                                                       \
    } while (0)

int fp_agg_wsum_ref(float *out, const float *X, const float *w, int64_t K, int64_t D, int accumulate)
{
    CHECK_DIMS("wsum_ref", K, D);
    if (!out || !X || !w)
        return fp_seterr(FP_EINVAL, "wsum_ref: NULL argument");
    if (!accumulate)
        memset(out, 0, (size_t)D * sizeof *out);
    for (int64_t k = 0; k < K; k++) {
        const float *x = X + k * D;
        float wk = w[k];
        for (int64_t d = 0; d < D; d++)
            out[d] += wk * x[d];
    }
    return 0;
}

int fp_agg_axpy_ref(float *out, const float *x, float w, int64_t D)
{
    if (!out || !x || D < 0)
        return fp_seterr(FP_EINVAL, "axpy_ref: bad arguments");
    for (int64_t d = 0; d < D; d++)
        out[d] += w * x[d];
    return 0;
}

int fp_agg_norms_ref(float *norms, const float *X, int64_t K, int64_t D)
{
    CHECK_DIMS("norms_ref", K, D);
    if (!norms || !X)
        return fp_seterr(FP_EINVAL, "norms_ref: NULL argument");
    for (int64_t k = 0; k < K; k++) {
        double s = 0.0;
        const float *x = X + k * D;
        for (int64_t d = 0; d < D; d++) {
            /* f32 square, as the device (x*x overflows to Inf past ~1.8e19, in both) */
            float t = x[d] * x[d];
            s += (double)t;
        }
        norms[k] = (float)sqrt(s);
    }
    return 0;
}

int fp_agg_clip_ref(float *X, const float *norms, float c, int64_t K, int64_t D)
{
    CHECK_DIMS("clip_ref", K, D);
    if (!X || !norms || !(c > 0.0f))
        return fp_seterr(FP_EINVAL, "clip_ref: bad arguments (c = %g)", (double)c);
    for (int64_t k = 0; k < K; k++) {
        float f = norms[k] > c ? c / norms[k] : 1.0f;
        float *x = X + k * D;
        for (int64_t d = 0; d < D; d++)
            x[d] *= f;
    }
    return 0;
}

/* ---- order statistics ------------------------------------------------------------------- */

static void sort_floats(float *v, int64_t n)
{
    /* shell sort (Ciura gaps) then insertion: small K, no recursion, no allocation */
    static const int64_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (size_t gi = 0; gi < sizeof gaps / sizeof gaps[0]; gi++) {
        int64_t g = gaps[gi];
        for (int64_t i = g; i < n; i++) {
            float t = v[i];
            int64_t j = i;
            for (; j >= g && v[j - g] > t; j -= g)
                v[j] = v[j - g];
            v[j] = t;
        }
    }
}

int fp_agg_trimmed_mean_ref(float *out, const float *X, int64_t K, int64_t D, uint32_t b)
{
    CHECK_DIMS("trimmed_mean_ref", K, D);
    if (!out || !X)
        return fp_seterr(FP_EINVAL, "trimmed_mean_ref: NULL argument");
    if (2 * (int64_t)b >= K)
        return fp_seterr(FP_EINVAL, "trimmed_mean_ref: trimming %u from each end of %lld clients leaves nothing", b,
                         (long long)K);
    float *v = malloc((size_t)K * sizeof *v);
    if (!v)
        return fp_seterr(FP_ENOMEM, "trimmed_mean_ref: out of memory");
    int64_t lo = b, hi = K - 1 - b;
    float cnt = (float)(hi - lo + 1);
    for (int64_t d = 0; d < D; d++) {
        for (int64_t k = 0; k < K; k++)
            v[k] = X[k * D + d];
        sort_floats(v, K);
        float s = 0.0f;
        for (int64_t k = lo; k <= hi; k++)
            s += v[k];
        out[d] = s / cnt;
    }
    free(v);
    return 0;
}

int fp_agg_median_ref(float *out, const float *X, int64_t K, int64_t D)
{
    return fp_agg_trimmed_mean_ref(out, X, K, D, (uint32_t)((K - 1) / 2));
}

/* ---- TIES ------------------------------------------------------------------------------------- */

/* The r-th smallest (0-based) of v[0..n) by quickselect (v is permuted). */
static float select_rank(float *v, int64_t n, int64_t r)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float a = v[lo], b = v[(lo + hi) / 2], c = v[hi];
        float piv = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < piv)
                i++;
            while (v[j] > piv)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (r <= j)
            hi = j;
        else if (r >= i)
            lo = i;
        else
            return v[r];
    }
    return v[r];
}

int fp_agg_ties_threshold_ref(float *thr, const float *X, int64_t K, int64_t D, float keep)
{
    if (K < 1 || D < 1 || !thr || !X || !(keep > 0.0f && keep <= 1.0f))
        return fp_seterr(FP_EINVAL, "ties_threshold_ref: bad arguments (K %lld, D %lld, keep %g)", (long long)K,
                         (long long)D, (double)keep);
    /* the small tolerance makes keep = 0.4f of 5 mean 2, not ceil(2.0000000298) = 3 */
    int64_t m = (int64_t)ceil((double)keep * (double)D - 1e-4);
    if (m < 1)
        m = 1;
    if (m > D)
        m = D;
    float *v = malloc((size_t)D * sizeof *v);
    if (!v)
        return fp_seterr(FP_ENOMEM, "ties_threshold_ref: out of memory");
    for (int64_t k = 0; k < K; k++) {
        for (int64_t d = 0; d < D; d++) {
            float a = fabsf(X[k * D + d]);
            v[d] = isnan(a) ? 0.0f : a;
        }
        thr[k] = select_rank(v, D, D - m); /* the m-th largest */
    }
    free(v);
    return 0;
}

int fp_agg_ties_trim_ref(float *X, const float *thr, int64_t K, int64_t D)
{
    CHECK_DIMS("ties_trim_ref", K, D);
    if (!X || !thr)
        return fp_seterr(FP_EINVAL, "ties_trim_ref: NULL argument");
    for (int64_t k = 0; k < K; k++)
        for (int64_t d = 0; d < D; d++) {
            float a = X[k * D + d];
            X[k * D + d] = fabsf(a) >= thr[k] ? a : 0.0f;
        }
    return 0;
}

static float signf(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

int fp_agg_ties_masked_ref(float *msum, float *count, const float *X, const float *total, int64_t K, int64_t D,
                           int accumulate)
{
    CHECK_DIMS("ties_masked_ref", K, D);
    if (!msum || !count || !X || !total)
        return fp_seterr(FP_EINVAL, "ties_masked_ref: NULL argument");
    for (int64_t d = 0; d < D; d++) {
        float s = accumulate ? msum[d] : 0.0f, c = accumulate ? count[d] : 0.0f;
        float e = signf(total[d]);
        for (int64_t k = 0; k < K; k++) {
            float a = X[k * D + d];
            if (a != 0.0f && signf(a) == e) {
                s += a;
                c += 1.0f;
            }
        }
        msum[d] = s;
        count[d] = c;
    }
    return 0;
}

int fp_agg_ties_mean_ref(float *out, const float *msum, const float *count, int64_t D)
{
    if (!out || !msum || !count || D < 0)
        return fp_seterr(FP_EINVAL, "ties_mean_ref: bad arguments");
    for (int64_t d = 0; d < D; d++)
        out[d] = msum[d] / (count[d] > 1.0f ? count[d] : 1.0f);
    return 0;
}

/* ---- ring ---------------------------------------------------------------------------------------- */

int fp_agg_ring_add_ref(uint32_t *acc, const uint32_t *x, int64_t D)
{
    if (!acc || !x || D < 0)
        return fp_seterr(FP_EINVAL, "ring_add_ref: bad arguments");
    for (int64_t d = 0; d < D; d++)
        acc[d] += x[d];
    return 0;
}

int fp_agg_ring_sub_ref(uint32_t *acc, const uint32_t *x, int64_t D)
{
    if (!acc || !x || D < 0)
        return fp_seterr(FP_EINVAL, "ring_sub_ref: bad arguments");
    for (int64_t d = 0; d < D; d++)
        acc[d] -= x[d];
    return 0;
}

int fp_agg_ring_sum_ref(uint32_t *out, const uint32_t *Q, int64_t K, int64_t D, int accumulate)
{
    CHECK_DIMS("ring_sum_ref", K, D);
    if (!out || !Q)
        return fp_seterr(FP_EINVAL, "ring_sum_ref: NULL argument");
    if (!accumulate)
        memset(out, 0, (size_t)D * sizeof *out);
    for (int64_t k = 0; k < K; k++)
        for (int64_t d = 0; d < D; d++)
            out[d] += Q[k * D + d];
    return 0;
}

static uint32_t pcg(uint32_t v)
{
    uint32_t s = v * 747796405u + 2891336453u;
    uint32_t w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

uint32_t fp_agg_hash(uint64_t seed, uint32_t index)
{
    return pcg(pcg(index ^ (uint32_t)seed) + (uint32_t)(seed >> 32));
}

int fp_agg_quantize_ref(uint32_t *q, const float *x, int64_t D, const fp_agg_qparams *p)
{
    int rc = fp_agg_qparams_check(p, 0);
    if (rc)
        return rc;
    if (!q || !x || D < 0)
        return fp_seterr(FP_EINVAL, "quantize_ref: bad arguments");
    const float clip = p->clip, scale = ldexpf(1.0f, (int)p->scale_bits);
    const uint32_t lo = (uint32_t)p->seed, hi = (uint32_t)(p->seed >> 32);
    for (int64_t d = 0; d < D; d++) {
        float xv = x[d];
        float c = isnan(xv) ? 0.0f : (xv < -clip ? -clip : (xv > clip ? clip : xv));
        float v = c * scale; /* exact: power-of-two scale, no overflow (checked) */
        float f = floorf(v);
        float fr = v - f; /* correctly rounded; FMA contraction cannot change it (v exact) */
        uint32_t h = pcg(pcg((p->index0 + (uint32_t)d) ^ lo) + hi);
        float u = (float)(((h >> 9) << 1) | 1u) * 0x1p-24f;
        int32_t qi = (int32_t)f + (u < fr ? 1 : 0);
        q[d] = (uint32_t)qi;
    }
    return 0;
}

int fp_agg_dequantize_ref(float *out, const uint32_t *sum, int64_t D, uint32_t scale_bits, float post)
{
    if (!out || !sum || D < 0 || scale_bits > 30)
        return fp_seterr(FP_EINVAL, "dequantize_ref: bad arguments (scale_bits %u)", scale_bits);
    const float step = ldexpf(1.0f, -(int)scale_bits);
    for (int64_t d = 0; d < D; d++)
        out[d] = ((float)(int32_t)sum[d] * step) * post;
    return 0;
}
