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
#include "agg_parallel.h"
#include "fedproxy/ops_aggregate.h"

static int sgn(float v) { return (v > 0) - (v < 0); }

/* How many magnitudes a client keeps: fp_agg_ties_threshold_ref's count
 * (the small tolerance makes keep = 0.4f of 5 mean 2, not 3). */
static size_t keep_count(float keep, size_t dim)
{
    double m = ceil((double)keep * (double)dim - 1e-4);
    return m < 1 ? 1 : m > (double)dim ? dim : (size_t)m;
}

#define MAG_BINS 65536

/* The m-th largest magnitude in u[0..n), 1 <= m <= n, exactly the value
 * fp_agg_ties_threshold_ref selects (a NaN counts as 0 there and here). By
 * radix selection: magnitudes' bit patterns order as unsigned integers, so a
 * histogram of the high 16 bits finds the bin that holds it and one of the
 * low 16 bits within that bin its value. Two read-only passes against
 * quickselect's copy and partitioning (about 20 ms a million values on the
 * server this was measured on). hist: MAG_BINS counters of scratch. */
static float kth_magnitude(const float *u, size_t n, size_t m, uint32_t *hist)
{
    memset(hist, 0, MAG_BINS * sizeof *hist);
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &u[i], sizeof b);
        b &= 0x7fffffffu;
        hist[(b > 0x7f800000u ? 0 : b) >> 16]++;
    }
    size_t above = 0, hi = MAG_BINS - 1;
    while (above + hist[hi] < m) /* the counts sum to n >= m: it stops */
        above += hist[hi--];
    memset(hist, 0, MAG_BINS * sizeof *hist);
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &u[i], sizeof b);
        b &= 0x7fffffffu;
        b = b > 0x7f800000u ? 0 : b;
        if (b >> 16 == hi)
            hist[b & 0xffffu]++;
    }
    size_t lo = MAG_BINS - 1;
    while (above + hist[lo] < m)
        above += hist[lo--];
    uint32_t b = (uint32_t)(hi << 16 | lo);
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* out = u trimmed to its keep_count largest magnitudes (ties at the
 * threshold kept), each entry clipped to clip (0: no clip). */
static int trim_row(float *out, const float *u, size_t dim, float keep, float clip)
{
    if (!(keep > 0.0f && keep <= 1.0f) || dim == 0)
        return fp_seterr(FP_EINVAL, "ties: bad keep fraction %g or empty update", (double)keep);
    uint32_t *hist = malloc(MAG_BINS * sizeof *hist);
    if (!hist)
        return fp_seterr(FP_ENOMEM, "ties: out of memory");
    float thr = kth_magnitude(u, dim, keep_count(keep, dim), hist);
    free(hist);
    for (size_t i = 0; i < dim; i++) {
        float v = u[i];
        if (isnan(v))
            return fp_seterr(FP_EINVAL, "ties: NaN in the update at %zu", i);
        v = fabsf(v) >= thr ? v : 0.0f;
        out[i] = clip > 0 ? agg_clampf(v, clip) : v;
    }
    return 0;
}

/* Plain ties in two parallel passes. First each client's threshold
 * (kth_magnitude), once per client, on worker threads over clients. Then
 * column blocks on worker threads: elected signs from the summed trimmed
 * mass, then the disjoint mean, each coordinate summed over clients in
 * client order, so the bits do not depend on the thread count. Memory: K thresholds and
 * per-thread histograms and block sums, O(K + threads x 64K) whatever dim.
 * Before: one thread, every threshold computed twice by quickselect: 4.2 s
 * at fp bench fed --aggregators' 100 clients x 1M floats. */
#define TIES_BLOCK 4096

typedef struct ties_job {
    float *delta;
    const float *const *x;
    size_t K, dim;
    float keep;
    double lambda;
    float *thr;                      /* K: each client's magnitude threshold */
    uint32_t *hist[AGG_MAX_THREADS]; /* MAG_BINS per thread (thresholds) */
    double *sums[AGG_MAX_THREADS];   /* 2 x TIES_BLOCK per thread: total, masked sum */
    uint32_t *cnt[AGG_MAX_THREADS];  /* TIES_BLOCK per thread */
} ties_job;

static int ties_thresholds(void *arg, unsigned t, size_t k0, size_t k1)
{
    ties_job *j = arg;
    for (size_t k = k0; k < k1; k++) {
        for (size_t i = 0; i < j->dim; i++)
            if (isnan(j->x[k][i]))
                return fp_seterr(FP_EINVAL, "ties: NaN in the update at %zu", i);
        j->thr[k] = kth_magnitude(j->x[k], j->dim, keep_count(j->keep, j->dim), j->hist[t]);
    }
    return 0;
}

static int ties_columns(void *arg, unsigned t, size_t c0, size_t c1)
{
    ties_job *j = arg;
    double *total = j->sums[t], *msum = total + TIES_BLOCK;
    uint32_t *cnt = j->cnt[t];
    for (size_t c = c0; c < c1; c++) {
        size_t i0 = c * TIES_BLOCK, n = j->dim - i0 < TIES_BLOCK ? j->dim - i0 : TIES_BLOCK;
        memset(total, 0, n * sizeof *total);
        memset(msum, 0, n * sizeof *msum);
        memset(cnt, 0, n * sizeof *cnt);
        for (size_t k = 0; k < j->K; k++) {
            const float *u = j->x[k] + i0;
            float thr = j->thr[k];
            for (size_t i = 0; i < n; i++)
                total[i] += fabsf(u[i]) >= thr ? u[i] : 0.0f;
        }
        for (size_t k = 0; k < j->K; k++) {
            const float *u = j->x[k] + i0;
            float thr = j->thr[k];
            for (size_t i = 0; i < n; i++) {
                float v = fabsf(u[i]) >= thr ? u[i] : 0.0f;
                int e = (total[i] > 0) - (total[i] < 0);
                if (v != 0 && sgn(v) == e) {
                    msum[i] += v;
                    cnt[i]++;
                }
            }
        }
        for (size_t i = 0; i < n; i++)
            j->delta[i0 + i] = cnt[i] ? (float)(j->lambda * msum[i] / cnt[i]) : 0.0f;
    }
    return 0;
}

static int ties_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                      const fp_agg_client *cl, size_t K)
{
    (void)self;
    (void)cl;
    const fp_agg_opts *o = agg_opts(c);
    size_t dim = c->dim, blocks = (dim + TIES_BLOCK - 1) / TIES_BLOCK;
    if (dim == 0)
        return 0;
    if (!(o->ties_keep > 0.0f && o->ties_keep <= 1.0f))
        return fp_seterr(FP_EINVAL, "ties: bad keep fraction %g", (double)o->ties_keep);
    ties_job j = {delta, x, K, dim, o->ties_keep, o->ties_lambda, malloc(K * sizeof(float) + 1), {0}, {0}, {0}};
    unsigned nk = agg_threads(K * dim, K), nc = agg_threads(K * dim, blocks);
    int rc = j.thr ? 0 : fp_seterr(FP_ENOMEM, "ties: out of memory");
    for (unsigned t = 0; !rc && t < nk; t++)
        if (!(j.hist[t] = malloc(MAG_BINS * sizeof(uint32_t))))
            rc = fp_seterr(FP_ENOMEM, "ties: out of memory for thread %u's histogram", t + 1);
    for (unsigned t = 0; !rc && t < nc; t++) {
        j.sums[t] = malloc(2 * TIES_BLOCK * sizeof(double));
        j.cnt[t] = malloc(TIES_BLOCK * sizeof(uint32_t));
        if (!j.sums[t] || !j.cnt[t])
            rc = fp_seterr(FP_ENOMEM, "ties: out of memory for thread %u's block sums", t + 1);
    }
    if (!rc)
        rc = agg_parallel(nk, K, ties_thresholds, &j);
    if (!rc)
        rc = agg_parallel(nc, blocks, ties_columns, &j);
    for (unsigned t = 0; t < AGG_MAX_THREADS; t++) {
        free(j.hist[t]);
        free(j.sums[t]);
        free(j.cnt[t]);
    }
    free(j.thr);
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
