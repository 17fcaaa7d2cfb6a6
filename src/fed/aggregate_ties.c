/* ties (TIES-merging, Yadav et al. 2023), for client updates: each client's
 * update is trimmed to its top-k% magnitudes (opts.ties_keep), each
 * coordinate's sign is elected by the summed trimmed mass, and the merged
 * update is the mean of the entries that agree with the elected sign (a
 * disjoint mean: clients that trimmed a coordinate or disagree do not dilute
 * it), scaled by lambda. Unweighted, as in TIES.
 *
 * Secure, as two secure sums (trimming is client-side, on the client's own
 * update):
 *   pass 0: t_k = clip(trim(u_k));          server learns T = sum_k t_k and
 *           sends every client only the elected signs sign(T).
 *   pass 1: [t_k [agree], clip [agree]]     (agree = t_k != 0 and sign(t_k) ==
 *           sign(T)); the server learns the masked sum and the per-coordinate
 *           count of agreeing clients, nothing per client.
 * The counts are integers times clip: they are rounded after dequantisation. */
#include <string.h>

#include "agg_internal.h"
#include "fedproxy/ops_aggregate.h"

static int sgn(float v) { return (v > 0) - (v < 0); }

/* out = u trimmed to its ceil(keep * dim) largest magnitudes (ties at the
 * threshold kept), each entry clipped to clip (0: no clip). */
static int trim_row(float *out, const float *u, size_t dim, float keep, float clip)
{
    float thr = 0;
    int rc = fp_agg_ties_threshold_ref(&thr, u, 1, (int64_t)dim, keep);
    if (rc)
        return fp_adderr(rc, "ties: trimming threshold");
    for (size_t i = 0; i < dim; i++) {
        float v = u[i];
        if (isnan(v))
            return fp_seterr(FP_EINVAL, "ties: NaN in the update at %zu", i);
        v = fabsf(v) >= thr ? v : 0.0f;
        out[i] = clip > 0 ? agg_clampf(v, clip) : v;
    }
    return 0;
}

static int ties_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                      const fp_agg_client *cl, size_t K)
{
    (void)self;
    (void)cl;
    const fp_agg_opts *o = agg_opts(c);
    size_t dim = c->dim;
    /* Streaming over clients keeps memory at O(dim) whatever K: trim twice
     * (cheap next to the threshold) instead of keeping K trimmed rows. */
    float *t = malloc(dim * sizeof *t + 1);
    double *total = calloc(dim + 1, sizeof *total), *msum = calloc(dim + 1, sizeof *msum);
    uint32_t *cnt = calloc(dim + 1, sizeof *cnt);
    int rc = t && total && msum && cnt ? 0 : fp_seterr(FP_ENOMEM, "ties: out of memory for %zu elements", dim);
    for (size_t k = 0; !rc && k < K; k++) {
        rc = trim_row(t, x[k], dim, o->ties_keep, 0);
        for (size_t i = 0; !rc && i < dim; i++)
            total[i] += t[i];
    }
    for (size_t k = 0; !rc && k < K; k++) {
        rc = trim_row(t, x[k], dim, o->ties_keep, 0);
        for (size_t i = 0; !rc && i < dim; i++) {
            int e = (total[i] > 0) - (total[i] < 0);
            if (t[i] != 0 && sgn(t[i]) == e) {
                msum[i] += t[i];
                cnt[i]++;
            }
        }
    }
    for (size_t i = 0; !rc && i < dim; i++)
        delta[i] = cnt[i] ? (float)(o->ties_lambda * msum[i] / cnt[i]) : 0.0f;
    free(t);
    free(total);
    free(msum);
    free(cnt);
    return rc;
}

static size_t ties_len(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass)
{
    (void)self;
    return pass == 0 ? c->dim : pass == 1 ? 2 * c->dim : 0;
}

static int ties_client(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass, const float *u,
                       const fp_agg_client *me, const float *const *prev)
{
    (void)self;
    (void)me;
    if (pass > 1 || !(c->clip > 0) || (pass == 1 && (!prev || !prev[0])))
        return fp_seterr(FP_EINVAL, "ties: bad pass %u, clip %g or missing pass-0 sum", pass, c->clip);
    size_t dim = c->dim;
    if (pass == 0)
        return trim_row(out, u, dim, agg_opts(c)->ties_keep, c->clip);
    /* pass 1: the trimmed row goes in out[dim..2dim) first, then is masked */
    int rc = trim_row(out, u, dim, agg_opts(c)->ties_keep, c->clip);
    for (size_t i = 0; !rc && i < dim; i++) {
        int agree = out[i] != 0 && sgn(out[i]) == sgn(prev[0][i]);
        out[i] = agree ? out[i] : 0.0f;
        out[dim + i] = agree ? c->clip : 0.0f;
    }
    return rc;
}

static int ties_finish(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *sums)
{
    (void)self;
    if (!sums || !sums[0] || !sums[1])
        return fp_seterr(FP_EINVAL, "ties: finishing needs both passes' sums");
    float lambda = agg_opts(c)->ties_lambda;
    for (size_t i = 0; i < c->dim; i++) {
        double n = rint((double)sums[1][c->dim + i] / c->clip);
        delta[i] = n >= 1 ? (float)(lambda * sums[1][i] / n) : 0.0f;
    }
    return 0;
}

/* Before pass 1 the clients learn only the elected sign of each coordinate. */
static int ties_broadcast(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass,
                          const float *const *sums)
{
    (void)self;
    if (pass != 1)
        return fp_seterr(FP_EINVAL, "ties: no broadcast before pass %u", pass);
    for (size_t i = 0; i < c->dim; i++)
        out[i] = (float)sgn(sums[0][i]);
    return 0;
}

const fp_aggregator fp_agg_ties_def = {.name = "ties",
                                       .secure_ok = 1,
                                       .secure_sums = 2,
                                       .secure_len_x = ties_len,
                                       .client_vector_x = ties_client,
                                       .finish_secure_x = ties_finish,
                                       .aggregate_plain_x = ties_plain,
                                       .broadcast_x = ties_broadcast};
