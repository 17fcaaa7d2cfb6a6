/* Shared pieces of the aggregators (src/fed/aggregate_*.c): option defaults,
 * rank bookkeeping over the LoRA layout, small numeric helpers. */
#ifndef FP_AGG_INTERNAL_H
#define FP_AGG_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/aggregator.h"

/* The aggregators the registry lists (one file each). */
extern const fp_aggregator fp_agg_fedavg_def, fp_agg_median_def, fp_agg_trimmed_def, fp_agg_normclip_def,
    fp_agg_fednova_def, fp_agg_hetlora_def, fp_agg_flexlora_def, fp_agg_ties_def;

/* Composite entry points (aggregate_dare.c, aggregate_cluster.c). */
size_t agg_dare_secure_len(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass);
int agg_dare_client(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass, const float *u,
                    const fp_agg_client *me, const float *const *prev);
int agg_dare_finish(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *sums);
int agg_dare_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                   const fp_agg_client *cl, size_t K);
int agg_cluster_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                      const fp_agg_client *cl, size_t K);
/* The weighted-mean bases as coefficients: their plain result is
 * agg_weighted_columns(delta, x, *coef, K, dim, *mul, *div) (agg_parallel.h).
 * *coef is malloc'd, the caller's to free (NULL on failure). */
int agg_fedavg_form(double **coef, double *mul, double *div, const fp_agg_client *cl, size_t K);
int agg_nova_form(double **coef, double *mul, double *div, const fp_agg_ctx *c, const fp_agg_client *cl, size_t K);
/* DARE's drop-and-rescale of one client's update (deterministic in ctx.seed and me->id). */
int agg_dare_apply(float *out, const float *u, size_t dim, float p, uint64_t seed, uint32_t id);

extern const fp_agg_opts fp_agg_opts_defaults;

static inline const fp_agg_opts *agg_opts(const fp_agg_ctx *c)
{
    return c->opts ? c->opts : &fp_agg_opts_defaults;
}

/* FP_AGG_SIMD=base: the aggregators take their portable code paths (SSE2
 * rather than AVX, plain loops rather than OpenBLAS), so tests can cover both
 * on one machine and a user can compare them. */
static inline int agg_baseline_paths(void)
{
    const char *e = getenv("FP_AGG_SIMD");
    return e && !strcmp(e, "base");
}

static inline float agg_clampf(float v, float c) { return v > c ? c : v < -c ? -c : v; }

/* The rank a client trained, within 1..R (0 or > R: R). */
static inline int agg_rank(const fp_agg_ctx *c, const fp_agg_client *k)
{
    int R = c->layout ? c->layout->lc.rank : 0;
    return k->rank >= 1 && k->rank < R ? k->rank : R;
}

/* ridx[i] = the rank component coordinate i belongs to (row of A, column of
 * B), for a layout of dim elements. malloc'd (caller frees). */
int agg_rank_index(uint16_t **ridx, const fp_agg_ctx *c);

/* Floats of all the modules' full products (secure flexlora's vector - 1). */
size_t agg_flex_products(const fp_lora_vec_layout *l);

/* Sum of w over the clients, FP_EABORT if not positive. */
int agg_total_weight(double *W, const fp_agg_client *cl, size_t K, const char *who);

#endif
