/* fedproxy: server-side aggregators of the federation (DESIGN.md section 2,
 * stage 3), selected by name in server.json "aggregator".
 *
 * An aggregator turns one round's client updates (each a float vector of dim
 * elements: new local weights minus the global) into the global delta. It
 * declares whether it composes with secure aggregation and, if so, as how
 * many secure sums of which vectors: client_vector builds a client's vector
 * for pass p (given the earlier passes' sums), finish_secure turns the pass
 * sums into the delta; the server never sees one client's vector. Plain
 * (non-secure) aggregation sees every update: aggregate_plain.
 *
 * Names (fp_aggregator_find):
 *   fedavg        sample-weighted mean                                secure: 1 sum
 *   fednova       each update / its local steps, rescaled by the
 *                 weighted mean steps (Wang et al. 2020)              secure: 1 sum
 *   hetlora       mixed LoRA ranks: per coordinate, the weighted mean
 *                 over the clients whose rank covers it               secure: 1 sum
 *   flexlora      weighted mean of the full products B*A per module,
 *                 truncated SVD back to rank R                        secure: 1 sum of the products
 *   ties          trim to top-k% per client, elect signs by summed
 *                 mass, mean of the agreeing entries, times lambda    secure: 2 sums (clients
 *                 learn only the elected signs between them)
 *   median, trimmed-mean, normclip (reject norms > k x median, clip
 *                 to the median norm, fedavg)                         plain only
 *   dare+<base>   every client first drops each entry with
 *                 probability p and rescales by 1/(1-p)               as <base>
 *                 (plain: dare+fedavg and dare+fednova drop inside
 *                 the weighted sum; the others copy every update)
 *   cluster:<base> clients grouped by the cosine similarity of their
 *                 updates; <base> within each cluster, then the
 *                 sample-weighted mean of the clusters (Floe)         plain only
 *
 * Vectors. With a LoRA layout (lora_vec.h), the vector is the packed adapter
 * at the server's rank R and a client of rank r < R only trained the first r
 * components: aggregators that know about ranks (hetlora, flexlora) ignore
 * whatever that client's update holds beyond r. Without a layout (ctx.layout
 * NULL: the stand-in's vectors) ranks mean nothing and hetlora/flexlora refuse.
 *
 * The legacy four-pointer form (fedavg, median, trimmed-mean) is kept for
 * the callers that use it; new code calls the fp_agg_* dispatchers below,
 * which take the round context.
 *
 * Threading: aggregators are stateless tables; every call is reentrant.
 * The plain aggregators and fp_agg_screen start worker threads of their own
 * for the call (joined before it returns) once K x dim reaches 2^20 values,
 * with the same result bit for bit whatever their number (flexlora's
 * products and cluster:*'s similarities use OpenBLAS's threads instead):
 * FP_AGG_THREADS=N caps them (1 disables), default the online CPUs, at most 16.
 * On x86-64, median and trimmed-mean use AVX where the CPU has it (the same
 * bits either way); cluster:* and flexlora use OpenBLAS where the build has
 * it. FP_AGG_SIMD=base keeps all of them on their portable paths (SSE2,
 * plain loops): tests cover both, and users can compare.
 */
#ifndef FEDPROXY_AGGREGATOR_H
#define FEDPROXY_AGGREGATOR_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/lora_vec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options (server.json "aggregator_options"; defaults by fp_agg_opts_default). */
typedef struct fp_agg_opts {
    float ties_keep;         /* TIES: fraction of each client's entries kept (0, 1]; 0.2 */
    float ties_lambda;       /* TIES: scale of the merged update; 1 */
    float dare_p;            /* DARE: drop probability [0, 1); 0.5 */
    float trim_frac;         /* trimmed mean: fraction trimmed at each end [0, 0.5); 0.1 */
    float reject_k;          /* reject updates whose norm > k x the cohort's median norm (0 off);
                                normclip uses 0 = 10 */
    float clip_norm;         /* normclip: clip to this L2 norm (0: the cohort's median norm) */
    uint32_t clusters;       /* cluster mode: at most this many clusters (0: by threshold only) */
    float cluster_threshold; /* cluster mode: cosine similarity to join a cluster; 0.5 */
} fp_agg_opts;

void fp_agg_opts_default(fp_agg_opts *o);
/* From a cJSON object (NULL: defaults). FP_EFORMAT naming the bad field. */
int fp_agg_opts_parse(fp_agg_opts *out, const void *json_object);

/* What an aggregator knows about the round, the same on the server and on
 * every client (clients rebuild it from ROUND_START). */
typedef struct fp_agg_ctx {
    size_t dim;
    const fp_lora_vec_layout *layout; /* NULL: not a LoRA vector */
    const float *global;              /* the global vector the updates are relative to (flexlora) */
    const fp_agg_opts *opts;          /* NULL: defaults */
    float clip;                       /* secure: the ring clip (|entries| <= clip) */
    uint32_t max_steps;               /* secure fednova: the most local steps a client takes */
    uint64_t seed;                    /* per round (dare masks: with the client id) */
} fp_agg_ctx;

/* One client of the round as the aggregator sees it. */
typedef struct fp_agg_client {
    double weight;   /* plain: sample count (> 0); secure: samples / max samples, in (0, 1] */
    int rank;        /* LoRA rank it trained (0: the full R) */
    int steps;       /* local steps it took (0: ctx.max_steps or 1) */
    uint32_t id;     /* allow-list id (dare seeds, logs) */
    const char *name;
} fp_agg_client;

typedef struct fp_aggregator fp_aggregator;
struct fp_aggregator {
    const char *name;
    int secure_ok;        /* composes with secure aggregation */
    unsigned secure_sums; /* passes when secure (0 if !secure_ok) */
    /* Legacy form (fedavg and the robust ones; NULL elsewhere). */
    size_t (*secure_len)(unsigned pass, size_t dim);
    int (*client_vector)(float *out, unsigned pass, const float *update, size_t dim, double w, float clip,
                         const float *const *prev);
    int (*finish_secure)(float *delta, size_t dim, const float *const *sums, float clip);
    int (*aggregate_plain)(float *delta, const float *const *updates, const double *weights, size_t K,
                           size_t dim);
    /* Context form: used when set. */
    size_t (*secure_len_x)(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass);
    int (*client_vector_x)(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass,
                           const float *update, const fp_agg_client *me, const float *const *prev);
    int (*finish_secure_x)(const fp_aggregator *self, float *delta, const fp_agg_ctx *c,
                           const float *const *sums);
    int (*aggregate_plain_x)(const fp_aggregator *self, float *delta, const fp_agg_ctx *c,
                             const float *const *updates, const fp_agg_client *cl, size_t K);
    /* Multi-pass secure: what the server sends every client before pass p >= 1
     * (dim floats) from the earlier passes' sums; NULL: the first dim
     * elements of pass p-1's sum. ties sends only the elected signs. */
    int (*broadcast_x)(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass,
                       const float *const *sums);
    const fp_aggregator *base; /* dare+ / cluster: the aggregator they wrap */
    int needs_layout;          /* refuses ctx.layout == NULL */
    /* Differential privacy composes: one secure sum whose first dim entries
     * are w times a norm-nonincreasing function of the (clipped, noised)
     * update, so noise calibrated to the clip there is calibrated to the sum
     * (fedavg, fednova, hetlora). Not dare+ (rescales by 1/(1-p)), flexlora
     * (products), ties (two passes), nor the plain-only ones. */
    int dp_ok;
};

/* Looks up a name above. FP_ENOTFOUND with the list of names otherwise. */
int fp_aggregator_find(const fp_aggregator **out, const char *name);

/* Dispatchers (context form, falling back to the legacy one). */
size_t fp_agg_secure_len(const fp_aggregator *a, const fp_agg_ctx *c, unsigned pass);
int fp_agg_client_vector(const fp_aggregator *a, float *out, const fp_agg_ctx *c, unsigned pass,
                         const float *update, const fp_agg_client *me, const float *const *prev);
int fp_agg_finish_secure(const fp_aggregator *a, float *delta, const fp_agg_ctx *c, const float *const *sums);
/* out[dim]: what clients get before secure pass pass >= 1 (see broadcast_x);
 * they pass it to fp_agg_client_vector as prev[pass - 1]. */
int fp_agg_broadcast(const fp_aggregator *a, float *out, const fp_agg_ctx *c, unsigned pass,
                     const float *const *sums);
int fp_agg_aggregate_plain(const fp_aggregator *a, float *delta, const fp_agg_ctx *c,
                           const float *const *updates, const fp_agg_client *cl, size_t K);
/* Checks a context against what the aggregator needs (layout, dim, opts);
 * the server calls it at start-up, so a bad configuration fails early. */
int fp_agg_check(const fp_aggregator *a, const fp_agg_ctx *c, int secure);

/* Plain-mode screening before aggregation: keep[k] = 0 for updates that are
 * refused: non-finite values, a length other than ctx.dim (lens may be NULL:
 * all dim), or (reject_k > 0) an L2 norm above reject_k times the median norm
 * of the finite ones. Each refusal is logged (fp_warn) with the client's name
 * and id and appended to refused ("name: why", ';'-separated; may be NULL).
 * *n_kept is the count left. */
int fp_agg_screen(uint8_t *keep, size_t *n_kept, char *refused, size_t refused_cap, const fp_agg_ctx *c,
                  const float *const *updates, const size_t *lens, const fp_agg_client *cl, size_t K,
                  float reject_k);

/* The rejection factor an aggregator applies in plain mode: opts.reject_k,
 * or 10 for normclip when that is 0. */
float fp_agg_reject_k(const fp_aggregator *a, const fp_agg_opts *o);

/* DARE's drop mask for a client: keep[i] = 1 with probability 1 - p,
 * deterministic in (seed, id) (exposed for tests). */
int fp_agg_dare_mask(uint8_t *keep, size_t dim, float p, uint64_t seed, uint32_t id);

/* Cluster mode's grouping: label[k] in 0..n_clusters-1 (numbered in order of
 * first appearance) by average-linkage on cosine similarity (see
 * aggregate_cluster.c). */
int fp_agg_cluster_assign(uint32_t *label, uint32_t *n_clusters, const float *const *x, size_t K, size_t dim,
                          float threshold, uint32_t max_clusters);

#ifdef __cplusplus
}
#endif
#endif
