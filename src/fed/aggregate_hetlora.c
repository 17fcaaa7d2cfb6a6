/* hetlora (Cho et al. 2024): clients train LoRA adapters of different ranks
 * r_k <= R, zero-padded to R in the federation's vector. A coordinate of rank
 * component j is averaged over the clients that trained it (r_k > j), with
 * their sample weights; a client's entries beyond its rank are ignored,
 * whatever they hold. Each client then truncates the new global to its rank
 * (the truncation side is the trainer's: lora_vec.h).
 * Secure: one sum of [w_k trunc_{r_k}(u_k), w_k clip [j < r_k] for j < R]:
 * the server learns the per-component coverage sum_k w_k [j < r_k] (which it
 * could compute itself: it assigns the ranks) and the padded weighted sum. */
#include <string.h>

#include "agg_internal.h"
#include "agg_parallel.h"

/* Plain: column blocks on worker threads (agg_parallel.h), each block's
 * sums accumulated row by row in client order: the per-coordinate loop's
 * bits, without reading K rows at once. */
#define HET_BLOCK 1024

typedef struct het_job {
    float *delta;
    const float *const *x;
    const fp_agg_client *cl;
    const int *rk;
    const uint16_t *ridx;
    size_t K, dim;
} het_job;

static int het_blocks(void *arg, unsigned t, size_t c0, size_t c1)
{
    (void)t;
    het_job *j = arg;
    double s[HET_BLOCK], cov[HET_BLOCK];
    for (size_t c = c0; c < c1; c++) {
        size_t i0 = c * HET_BLOCK, n = j->dim - i0 < HET_BLOCK ? j->dim - i0 : HET_BLOCK;
        memset(s, 0, n * sizeof *s);
        memset(cov, 0, n * sizeof *cov);
        for (size_t k = 0; k < j->K; k++) {
            const float *u = j->x[k] + i0;
            const uint16_t *r = j->ridx + i0;
            double w = j->cl[k].weight;
            int rk = j->rk[k];
            for (size_t i = 0; i < n; i++)
                if ((int)r[i] < rk) {
                    s[i] += w * u[i];
                    cov[i] += w;
                }
        }
        for (size_t i = 0; i < n; i++)
            j->delta[i0 + i] = cov[i] > 0 ? (float)(s[i] / cov[i]) : 0.0f;
    }
    return 0;
}

static int het_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                     const fp_agg_client *cl, size_t K)
{
    (void)self;
    double W = 0;
    int rc = agg_total_weight(&W, cl, K, "hetlora");
    uint16_t *ridx = NULL;
    if (!rc)
        rc = agg_rank_index(&ridx, c);
    int *rk = rc ? NULL : malloc(K * sizeof *rk);
    if (!rc && !rk)
        rc = fp_seterr(FP_ENOMEM, "hetlora: out of memory");
    for (size_t k = 0; !rc && k < K; k++)
        rk[k] = agg_rank(c, &cl[k]);
    if (!rc) {
        size_t blocks = (c->dim + HET_BLOCK - 1) / HET_BLOCK;
        het_job j = {delta, x, cl, rk, ridx, K, c->dim};
        rc = agg_parallel(agg_threads(K * c->dim, blocks), blocks, het_blocks, &j);
    }
    free(ridx);
    free(rk);
    return rc;
}

static size_t het_len(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass)
{
    (void)self;
    return pass == 0 && c->layout ? c->dim + (size_t)c->layout->lc.rank : 0;
}

static int het_client(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass, const float *u,
                      const fp_agg_client *me, const float *const *prev)
{
    (void)self;
    (void)prev;
    if (pass != 0 || !(me->weight > 0) || me->weight > 1 || !(c->clip > 0))
        return fp_seterr(FP_EINVAL, "hetlora: bad pass %u, weight %g or clip %g", pass, me->weight, c->clip);
    uint16_t *ridx = NULL;
    int rc = agg_rank_index(&ridx, c);
    if (rc)
        return rc;
    int r = agg_rank(c, me), R = c->layout->lc.rank;
    for (size_t i = 0; i < c->dim && !rc; i++) {
        if (isnan(u[i]))
            rc = fp_seterr(FP_EINVAL, "hetlora: NaN in the update at %zu", i);
        out[i] = (int)ridx[i] < r ? (float)(me->weight * agg_clampf(u[i], c->clip)) : 0.0f;
    }
    for (int j = 0; j < R; j++)
        out[c->dim + (size_t)j] = j < r ? (float)(me->weight * c->clip) : 0.0f;
    free(ridx);
    return rc;
}

static int het_finish(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *sums)
{
    (void)self;
    uint16_t *ridx = NULL;
    int rc = agg_rank_index(&ridx, c);
    if (rc)
        return rc;
    const float *s = sums[0];
    int R = c->layout->lc.rank;
    if (!((double)s[c->dim] / c->clip > 1e-6)) {
        free(ridx);
        return fp_seterr(FP_EABORT, "hetlora: secure sum of weights is %g: nothing to average",
                         (double)s[c->dim] / c->clip);
    }
    for (size_t i = 0; i < c->dim; i++) {
        double cov = (double)s[c->dim + ridx[i]] / c->clip;
        /* coverage below a quantisation step means nobody trained that component */
        delta[i] = cov > 1e-6 ? (float)(s[i] / cov) : 0.0f;
    }
    (void)R;
    free(ridx);
    return 0;
}

const fp_aggregator fp_agg_hetlora_def = {.name = "hetlora",
                                          .secure_ok = 1,
                                          .secure_sums = 1,
                                          .secure_len_x = het_len,
                                          .client_vector_x = het_client,
                                          .finish_secure_x = het_finish,
                                          .aggregate_plain_x = het_plain,
                                          .needs_layout = 1,
                                          .dp_ok = 1};
