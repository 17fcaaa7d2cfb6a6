/* Aggregators: fedavg (plain and as one secure sum), and the robust ones that
 * only work without secure aggregation (median, trimmed mean), through the
 * kernel library's C references (ops_aggregate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fed.h"
#include "fedproxy/ops_aggregate.h"

/* ---- fedavg ---- */

static size_t fedavg_len(unsigned pass, size_t dim) { return pass == 0 ? dim + 1 : 0; }

static int fedavg_client(float *out, unsigned pass, const float *u, size_t dim, double w, float clip,
                         const float *const *prev)
{
    if (pass != 0 || !(w > 0.0) || w > 1.0 || !(clip > 0))
        return fp_seterr(FP_EINVAL, "fedavg: bad pass %u, weight %g or clip %g", pass, w, clip);
    for (size_t i = 0; i < dim; i++) {
        float v = u[i];
        if (isnan(v))
            return fp_seterr(FP_EINVAL, "fedavg: NaN in the update at %zu", i);
        v = v > clip ? clip : v < -clip ? -clip : v;
        out[i] = (float)(w * v);
    }
    out[dim] = (float)(w * clip);
    return 0;
}

static int fedavg_finish(float *delta, size_t dim, const float *const *sums, float clip)
{
    double wsum = (double)sums[0][dim] / clip;
    if (!(wsum > 1e-6))
        return fp_seterr(FP_EABORT, "fedavg: secure sum of weights is %g: nothing to average", wsum);
    for (size_t i = 0; i < dim; i++)
        delta[i] = (float)(sums[0][i] / wsum);
    return 0;
}

static int fedavg_plain(float *delta, const float *const *x, const double *w, size_t K, size_t dim)
{
    double W = 0;
    for (size_t k = 0; k < K; k++)
        W += w[k];
    if (K == 0 || !(W > 0))
        return fp_seterr(FP_EABORT, "fedavg: no updates to average");
    /* Client order, double accumulation: deterministic whatever the arrival order. */
    for (size_t i = 0; i < dim; i++) {
        double s = 0;
        for (size_t k = 0; k < K; k++)
            s += w[k] * x[k][i];
        delta[i] = (float)(s / W);
    }
    return 0;
}

/* ---- robust (plain only) ---- */

static int gather(float **X, const float *const *x, size_t K, size_t dim)
{
    *X = malloc(K * dim * sizeof(float) + 1);
    if (!*X)
        return fp_seterr(FP_ENOMEM, "aggregate: out of memory for %zu x %zu", K, dim);
    for (size_t k = 0; k < K; k++)
        memcpy(*X + k * dim, x[k], dim * sizeof(float));
    return 0;
}

static int median_plain(float *delta, const float *const *x, const double *w, size_t K, size_t dim)
{
    float *X = NULL;
    int rc = gather(&X, x, K, dim);
    if (!rc)
        rc = fp_agg_median_ref(delta, X, (int64_t)K, (int64_t)dim);
    free(X);
    return rc;
}

static int trimmed_plain(float *delta, const float *const *x, const double *w, size_t K, size_t dim)
{
    float *X = NULL;
    int rc = gather(&X, x, K, dim);
    uint32_t b = (uint32_t)(K / 10); /* trim 10% each side */
    if (!rc)
        rc = fp_agg_trimmed_mean_ref(delta, X, (int64_t)K, (int64_t)dim, b);
    free(X);
    return rc;
}

static const fp_aggregator aggs[] = {
    {"fedavg", 1, 1, fedavg_len, fedavg_client, fedavg_finish, fedavg_plain},
    {"median", 0, 0, NULL, NULL, NULL, median_plain},
    {"trimmed-mean", 0, 0, NULL, NULL, NULL, trimmed_plain},
};

int fp_aggregator_find(const fp_aggregator **out, const char *name)
{
    for (size_t i = 0; name && i < sizeof aggs / sizeof aggs[0]; i++)
        if (!strcmp(aggs[i].name, name)) {
            *out = &aggs[i];
            return 0;
        }
    *out = NULL;
    return fp_seterr(FP_ENOTFOUND, "unknown aggregator '%s' (known: fedavg, median, trimmed-mean)",
                     name ? name : "(null)");
}
