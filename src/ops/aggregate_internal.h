/* Internal to the aggregation ops (not installed, not exported in a public
 * header): a per-thread forced choice for the device choices that
 * fp_agg_autotune measures, so that it can time each candidate without
 * setenv (which is not thread-safe and a library must not mutate) and
 * without touching the context's measured profile (shared by every thread).
 *
 * Precedence in aggregate.c's config functions: forced (this thread) >
 * environment (FP_AGG_ORDER_NET, FP_AGG_NORM) > tuned key > device default.
 * The forced choice must cover fp_agg_*_worksize and the op that uses the
 * scratch alike, so set it before sizing scratch and clear it after the run. */
#ifndef FP_OPS_AGGREGATE_INTERNAL_H
#define FP_OPS_AGGREGATE_INTERNAL_H

enum { AGG_NORM_DEFAULT = 0, AGG_NORM_TREE = 1, AGG_NORM_FLAT = 2 };

typedef struct agg_force {
    int order_net; /* 32, 64 or 128: most clients a sorting network takes; 0 = not forced */
    int norm;      /* AGG_NORM_TREE / AGG_NORM_FLAT: norms stage 1; AGG_NORM_DEFAULT = not forced */
} agg_force;

/* Sets this thread's forced choices (copied); NULL clears them. */
void fp_agg_force_set(const agg_force *f);

#endif
