/* The robust aggregators, plain only (they need every update): coordinate-
 * wise median, trimmed mean, and normclip (each update clipped to a common L2
 * norm, then the sample-weighted mean). Rejection of non-finite updates and
 * of norms far above the cohort's is fp_agg_screen's job, which the server
 * runs before any plain aggregator (normclip turns it on by default). The
 * order statistics run a sorting network across columns (order_net.c, the
 * reference's bits), or the kernel library's C reference past
 * AGG_ORDER_NET_MAX clients, on up to 16 threads over column blocks
 * (by_blocks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_internal.h"
#include "agg_parallel.h"
#include "fedproxy/ops_aggregate.h"
#include "order_net.h"

/* Order statistics are per coordinate, so they run in column blocks of
 * BLOCK; b < 0 means the median. With the network, each block goes to
 * agg_order_net_run, which gathers AGG_ORDER_LANES columns at a time into
 * its K x LANES scratch; without it (K > AGG_ORDER_NET_MAX) the block is
 * gathered [K, BLOCK] for the reference. Blocks are independent, so threads
 * take disjoint runs of them, each with its own scratch: the result is the
 * same bit for bit whatever the thread count or path. At K = 100 (fp bench
 * fed --aggregators: 100 clients x 1,017,856 floats) the reference's median
 * took 5.4 s of server time on one core. */
#define BLOCK 4096

typedef struct order_job {
    float *delta;
    const float *const *x;
    size_t K, dim;
    int64_t b;
    const agg_order_net *net;  /* NULL: the reference */
    float *X[AGG_MAX_THREADS]; /* each thread's scratch: K x LANES (network) or K x BLOCK (reference) */
} order_job;

static int order_blocks(void *arg, unsigned t, size_t c0, size_t c1)
{
    order_job *j = arg;
    int rc = 0;
    for (size_t c = c0; !rc && c < c1; c++) {
        size_t i0 = c * BLOCK, n = j->dim - i0 < BLOCK ? j->dim - i0 : BLOCK;
        if (j->net) {
            uint32_t b = j->b < 0 ? (uint32_t)((j->K - 1) / 2) : (uint32_t)j->b;
            rc = agg_order_net_run(j->net, j->delta + i0, j->x, i0, n, b, j->X[t]);
            continue;
        }
        for (size_t k = 0; k < j->K; k++)
            memcpy(j->X[t] + k * n, j->x[k] + i0, n * sizeof(float));
        rc = j->b < 0 ? fp_agg_median_ref(j->delta + i0, j->X[t], (int64_t)j->K, (int64_t)n)
                      : fp_agg_trimmed_mean_ref(j->delta + i0, j->X[t], (int64_t)j->K, (int64_t)n, (uint32_t)j->b);
    }
    return rc;
}

static int by_blocks(float *delta, const float *const *x, size_t K, size_t dim, int64_t b)
{
    if (K == 0)
        return fp_seterr(FP_EABORT, "aggregate: no updates");
    if (dim == 0)
        return 0;
    size_t blocks = (dim + BLOCK - 1) / BLOCK;
    unsigned nt = agg_threads(K * dim, blocks);
    agg_order_net net = {0};
    int use_net = K <= AGG_ORDER_NET_MAX, rc = 0;
    if (use_net && (rc = agg_order_net_build(&net, K)) != 0)
        return rc;
    size_t cols = use_net ? AGG_ORDER_LANES : BLOCK;
    order_job j = {delta, x, K, dim, b, use_net ? &net : NULL, {0}};
    for (unsigned t = 0; t < nt && !rc; t++)
        if (!(j.X[t] = malloc(K * cols * sizeof(float))))
            rc = fp_seterr(FP_ENOMEM, "aggregate: out of memory for %zu x %zu (thread %u of %u)", K, cols, t + 1, nt);
    if (!rc)
        rc = agg_parallel(nt, blocks, order_blocks, &j);
    for (unsigned t = 0; t < nt; t++)
        free(j.X[t]);
    agg_order_net_free(&net);
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
    agg_row_norms(nrm, x, K, c->dim);
    memcpy(srt, nrm, K * sizeof *srt);
    qsort(srt, K, sizeof *srt, cmp_double);
    double bound = agg_opts(c)->clip_norm > 0 ? agg_opts(c)->clip_norm
                                              : (K % 2 ? srt[K / 2] : 0.5 * (srt[K / 2 - 1] + srt[K / 2]));
    for (size_t k = 0; k < K; k++) /* now each client's weight times its scale */
        nrm[k] = cl[k].weight * (nrm[k] > bound ? bound / nrm[k] : 1.0);
    rc = agg_weighted_columns(delta, x, nrm, K, c->dim, 1.0, W);
    free(nrm);
    free(srt);
    return rc;
}

const fp_aggregator fp_agg_median_def = {.name = "median", .aggregate_plain = median_plain};
const fp_aggregator fp_agg_trimmed_def = {
    .name = "trimmed-mean", .aggregate_plain = trimmed_plain, .aggregate_plain_x = trimmed_plain_x};
const fp_aggregator fp_agg_normclip_def = {.name = "normclip", .aggregate_plain_x = normclip_plain};
