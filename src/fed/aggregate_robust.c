/* The robust aggregators, plain only (they need every update): coordinate-
 * wise median, trimmed mean, and normclip (each update clipped to a common L2
 * norm, then the sample-weighted mean). Rejection of non-finite updates and
 * of norms far above the cohort's is fp_agg_screen's job, which the server
 * runs before any plain aggregator (normclip turns it on by default). The
 * order statistics come from the kernel library's C references. */
#include <string.h>

#include "agg_internal.h"
#include "fedproxy/ops_aggregate.h"

/* Order statistics are per coordinate: the updates are gathered in column
 * blocks [K, BLOCK] (a few MiB whatever K and dim) and each block goes to the
 * reference; b < 0 means the median. */
#define BLOCK 4096

static int by_blocks(float *delta, const float *const *x, size_t K, size_t dim, int64_t b)
{
    if (K == 0)
        return fp_seterr(FP_EABORT, "aggregate: no updates");
    float *X = malloc(K * BLOCK * sizeof *X);
    if (!X)
        return fp_seterr(FP_ENOMEM, "aggregate: out of memory for %zu x %d", K, BLOCK);
    int rc = 0;
    for (size_t i0 = 0; !rc && i0 < dim; i0 += BLOCK) {
        size_t n = dim - i0 < BLOCK ? dim - i0 : BLOCK;
        for (size_t k = 0; k < K; k++)
            memcpy(X + k * n, x[k] + i0, n * sizeof *X);
        rc = b < 0 ? fp_agg_median_ref(delta + i0, X, (int64_t)K, (int64_t)n)
                   : fp_agg_trimmed_mean_ref(delta + i0, X, (int64_t)K, (int64_t)n, (uint32_t)b);
    }
    free(X);
    return rc;
}

/* Legacy form (fp_aggregator.aggregate_plain). */
static int median_plain(float *delta, const float *const *x, const double *w, size_t K, size_t dim)
{
    (void)w;
    return by_blocks(delta, x, K, dim, -1);
}

static int trimmed(float *delta, const float *const *x, size_t K, size_t dim, float frac)
{
    uint32_t b = (uint32_t)floor((double)frac * (double)K); /* trimmed at each end */
    if (K && 2 * (size_t)b >= K)
        b = (uint32_t)((K - 1) / 2);
    return by_blocks(delta, x, K, dim, b);
}

static int trimmed_plain(float *delta, const float *const *x, const double *w, size_t K, size_t dim)
{
    (void)w;
    return trimmed(delta, x, K, dim, 0.1f);
}

static int trimmed_plain_x(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                           const fp_agg_client *cl, size_t K)
{
    (void)self;
    (void)cl;
    return trimmed(delta, x, K, c->dim, agg_opts(c)->trim_frac);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int normclip_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                          const fp_agg_client *cl, size_t K)
{
    (void)self;
    double W = 0;
    int rc = agg_total_weight(&W, cl, K, "normclip");
    if (rc)
        return rc;
    double *nrm = malloc(K * sizeof *nrm), *srt = malloc(K * sizeof *srt);
    if (!nrm || !srt) {
        free(nrm);
        free(srt);
        return fp_seterr(FP_ENOMEM, "normclip: out of memory");
    }
    for (size_t k = 0; k < K; k++) {
        double s = 0;
        for (size_t i = 0; i < c->dim; i++)
            s += (double)x[k][i] * x[k][i];
        nrm[k] = srt[k] = sqrt(s);
    }
    qsort(srt, K, sizeof *srt, cmp_double);
    double bound = agg_opts(c)->clip_norm > 0 ? agg_opts(c)->clip_norm
                                              : (K % 2 ? srt[K / 2] : 0.5 * (srt[K / 2 - 1] + srt[K / 2]));
    for (size_t k = 0; k < K; k++)
        nrm[k] = nrm[k] > bound ? bound / nrm[k] : 1.0; /* now each client's scale */
    for (size_t i = 0; i < c->dim; i++) {
        double s = 0;
        for (size_t k = 0; k < K; k++)
            s += cl[k].weight * nrm[k] * x[k][i];
        delta[i] = (float)(s / W);
    }
    free(nrm);
    free(srt);
    return 0;
}

const fp_aggregator fp_agg_median_def = {.name = "median", .aggregate_plain = median_plain};
const fp_aggregator fp_agg_trimmed_def = {
    .name = "trimmed-mean", .aggregate_plain = trimmed_plain, .aggregate_plain_x = trimmed_plain_x};
const fp_aggregator fp_agg_normclip_def = {.name = "normclip", .aggregate_plain_x = normclip_plain};
