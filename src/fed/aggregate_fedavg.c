/* fedavg: the sample-weighted mean, plain and as one secure sum (the legacy
 * four-pointer form of the aggregator interface). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "agg_internal.h"
#include "agg_parallel.h"

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

/* the total weight, summed in client order */
static int fedavg_total(double *W, const double *w, size_t K)
{
    *W = 0;
    for (size_t k = 0; k < K; k++)
        *W += w[k];
    if (K == 0 || !(*W > 0))
        return fp_seterr(FP_EABORT, "fedavg: no updates to average");
    return 0;
}

static int fedavg_plain(float *delta, const float *const *x, const double *w, size_t K, size_t dim)
{
    double W;
    int rc = fedavg_total(&W, w, K);
    /* Client order, double accumulation: deterministic whatever the arrival order. */
    return rc ? rc : agg_weighted_columns(delta, x, w, K, dim, 1.0, W);
}

int agg_fedavg_form(double **coef, double *mul, double *div, const fp_agg_client *cl, size_t K)
{
    *coef = malloc(K * sizeof **coef + 1);
    if (!*coef)
        return fp_seterr(FP_ENOMEM, "fedavg: out of memory");
    for (size_t k = 0; k < K; k++)
        (*coef)[k] = cl[k].weight; /* what fp_agg_aggregate_plain hands fedavg_plain */
    *mul = 1.0;
    int rc = fedavg_total(div, *coef, K);
    if (rc) {
        free(*coef);
        *coef = NULL;
    }
    return rc;
}

const fp_aggregator fp_agg_fedavg_def = {.name = "fedavg",
                                         .secure_ok = 1,
                                         .secure_sums = 1,
                                         .secure_len = fedavg_len,
                                         .client_vector = fedavg_client,
                                         .finish_secure = fedavg_finish,
                                         .aggregate_plain = fedavg_plain,
                                         .dp_ok = 1};
