/* fedproxy: server-side aggregation kernels over flattened client updates.
 *
 * Layout. K clients' updates of D coordinates each are one row-major f32 (or
 * u32 for ring values) tensor X of shape [K, D]: row k is client k. Vectors
 * (outputs, sums, one client's update) are tensors of D elements (any shape
 * with numel D). Weights, thresholds and norms are f32 tensors of K elements.
 * Every argument's dtype and size is checked (FP_ESHAPE with the shapes).
 *
 * Streaming kernels read and write vec4s (four coordinates per invocation)
 * where the layout allows (D % 4 == 0 for [K, D] inputs, windows on 16-byte
 * boundaries), with a scalar tail; tuned key "aggregate.vec4" = "0" turns
 * that off.
 *
 * Device ops record into a stream; nothing runs until fp_stream_run. Tensors
 * bound to a kernel must stay alive until the stream has run; the views these
 * wrappers create internally are their own business. Threading: a stream is
 * used by one thread at a time (runtime.h); the references are reentrant.
 *
 * Big updates. A binding never spans more than the device's storage range
 * (128 MiB on some devices): the wrappers split X into row groups and column
 * chunks transparently. Reductions over clients (sums) stay exact in order:
 * row groups are accumulated in client order, as the references do. Median
 * and trimmed mean need every client's value of a coordinate in one dispatch:
 * the sorting networks read X in place through up to 7 bindings of row bands
 * (so 7 bindings must hold ceil(K/7)-1 rows plus a chunk of columns), radix
 * select through one ((K-1)*D + 1 elements); beyond that they gather column
 * slabs [K, dc] into a caller-provided work tensor (fp_agg_order_worksize)
 * with transfer copies, which costs one more read and write of X.
 *
 * Numerics (what the tests check):
 *  - weighted sums, TIES sums, ring ops: summed in client order k = 0..K-1,
 *    one coordinate at a time, exactly as the references (f32 results may
 *    differ from them by FMA contraction only; ring results are bit-exact).
 *  - median / trimmed mean: exact selection, deterministic. K <= 32 (K <= 128
 *    on CPU devices, where registers spill to L1; or as fp_agg_autotune
 *    measured, tuned key "aggregate.order_net" = 32 | 64 | 128): the K values are partitioned by
 *    an odd-even merge network pruned to K inputs and to the kept ranks (the
 *    ranks below, kept and above land in the right blocks, in no particular
 *    order inside them) and the kept block summed in position order (so the
 *    trimmed mean may differ from the reference's ascending sum by rounding:
 *    the selected values are the same). Beyond (any K): the two
 *    boundary ranks are found exactly by a 16-pass (2 bits each) search on
 *    order-preserving keys; the values strictly between are summed in client
 *    order plus the boundary values times their kept multiplicity (so a
 *    trimmed mean may differ from the reference's sorted-order sum by
 *    rounding; medians are exact: the middle value, or (a + b) / 2).
 *  - norms: f32 partial sums (per workgroup on GPUs; per invocation or
 *    subgroup of at most ~1024 coordinates on CPU devices), combined in fixed
 *    order (device); the reference accumulates in double. Tested: NMSE <=
 *    1e-7 and relative error <= 1e-5 per client.
 *  - quantisation: bit-exact between device and reference (see fp_agg_qparams).
 *
 * NaN / Inf (documented behaviour, tested):
 *  - norms: a client with a NaN has norm NaN, with an Inf (or |x| > ~1.8e19,
 *    whose square overflows) norm +Inf: the server rejects non-finite norms.
 *  - clip: a client whose norm is NaN is left unscaled (its NaNs stay).
 *  - sums propagate NaN/Inf as IEEE arithmetic does.
 *  - median / trimmed mean: +-Inf are ordered normally; a NaN input gives an
 *    unspecified value for that coordinate (reject such clients first).
 *    (-0 and +0 are equal values: either may be returned.)
 *  - TIES trim: NaN entries are dropped (|NaN| >= t is false); the reference
 *    threshold treats NaN magnitudes as 0.
 *  - quantise: NaN quantises to 0, +-Inf clip to +-clip.
 */
#ifndef FEDPROXY_OPS_AGGREGATE_H
#define FEDPROXY_OPS_AGGREGATE_H

#include <stdint.h>

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the last shader variant an aggregation op of this thread recorded
 * (e.g. "agg_wsum_vec4"), for tests and logs; "" if none. */
const char *fp_agg_last_variant(void);

/* ---- weighted sums (FedAvg) ------------------------------------------------ */

/* out[d] = (accumulate ? out[d] : 0) + sum_k w[k] * X[k, d].
 * X: f32 [K, D]; w: f32, K elements; out: f32, D elements. */
int fp_agg_wsum(fp_stream *s, fp_tensor *out, const fp_tensor *X, const fp_tensor *w, int accumulate);

/* Streaming form, one client at a time: out[d] += w * x[d] (f32, D elements). */
int fp_agg_axpy(fp_stream *s, fp_tensor *out, const fp_tensor *x, float w);

/* ---- norms and clipping ------------------------------------------------------ */

/* f32 scratch elements fp_agg_norms needs for K clients of D coordinates on
 * this context's device (a two-stage reduction keeps partial sums: about
 * K*D/4096 on GPUs, K*D/1024 at most on CPU devices). */
int64_t fp_agg_norms_worksize(const fp_ctx *ctx, int64_t K, int64_t D);

/* norms[k] = sqrt(sum_d X[k, d]^2). X: f32 [K, D]; norms: f32, K elements;
 * work: f32 scratch of at least fp_agg_norms_worksize elements (caller owned,
 * alive until the stream runs). */
int fp_agg_norms(fp_stream *s, fp_tensor *norms, const fp_tensor *X, fp_tensor *work);

/* In place: X[k, :] *= (norms[k] > c ? c / norms[k] : 1), c > 0. */
int fp_agg_clip(fp_stream *s, fp_tensor *X, const fp_tensor *norms, float c);

/* ---- robust statistics --------------------------------------------------------- */

/* f32 scratch elements median / trimmed mean need for K x D on this device:
 * 0 when X is read in place (work may then be NULL). */
int64_t fp_agg_order_worksize(const fp_ctx *ctx, int64_t K, int64_t D);

/* out[d] = mean of the values of rank b .. K-1-b (0-based, ascending) of
 * X[:, d]; 2*b < K. X: f32 [K, D]; out: f32, D elements; work: NULL or f32
 * scratch of at least fp_agg_order_worksize elements (caller owned, alive
 * until the stream runs); FP_EUNSUPPORTED if needed and missing. */
int fp_agg_trimmed_mean(fp_stream *s, fp_tensor *out, const fp_tensor *X, uint32_t b, fp_tensor *work);

/* Coordinate-wise median (even K: mean of the two middle values). */
int fp_agg_median(fp_stream *s, fp_tensor *out, const fp_tensor *X, fp_tensor *work);

/* ---- TIES ------------------------------------------------------------------------ *
 * Plain:   trim each client (thresholds from fp_agg_ties_threshold_ref, host
 *          side: the exact magnitude of rank ceil(keep*D)), total = wsum with
 *          w = 1, then masked sums and the disjoint mean.
 * Secure:  the elected sign comes from the secure sum of the trimmed updates;
 *          each client then computes its masked row and indicator (K = 1) and
 *          those are securely summed. */

/* In place: X[k, d] = |X[k, d]| >= thr[k] ? X[k, d] : 0. thr: f32, K elements,
 * host supplied (see fp_agg_ties_threshold_ref). */
int fp_agg_ties_trim(fp_stream *s, fp_tensor *X, const fp_tensor *thr);

/* With e[d] = sign(total[d]) (the elected sign; 0 elects nothing):
 * msum[d]  = (acc ? msum[d] : 0)  + sum_k X[k, d] * [X[k, d] != 0 and sign(X[k, d]) == e[d]]
 * count[d] = (acc ? count[d] : 0) + sum_k          [X[k, d] != 0 and sign(X[k, d]) == e[d]]
 * X: f32 [K, D]; total, msum, count: f32, D elements (counts exact to 2^24). */
int fp_agg_ties_masked(fp_stream *s, fp_tensor *msum, fp_tensor *count, const fp_tensor *X,
                       const fp_tensor *total, int accumulate);

/* Disjoint mean: out[d] = msum[d] / max(count[d], 1). out may be msum. */
int fp_agg_ties_mean(fp_stream *s, fp_tensor *out, const fp_tensor *msum, const fp_tensor *count);

/* ---- ring Z_{2^32} for secure aggregation ------------------------------------------ */

/* acc[d] += x[d] and acc[d] -= x[d] (u32, wrapping, D elements). */
int fp_agg_ring_add(fp_stream *s, fp_tensor *acc, const fp_tensor *x);
int fp_agg_ring_sub(fp_stream *s, fp_tensor *acc, const fp_tensor *x);

/* out[d] = (accumulate ? out[d] : 0) + sum_k Q[k, d] (mod 2^32). Q: u32 [K, D]. */
int fp_agg_ring_sum(fp_stream *s, fp_tensor *out, const fp_tensor *Q, int accumulate);

/* Stochastic-rounding quantisation to the ring:
 *   c = NaN ? 0 : clamp(x, -clip, clip);  v = c * 2^scale_bits  (exact);
 *   q = floor(v) + [u < v - floor(v)],  u = (2*(h >> 9) + 1) * 2^-24,
 *   h = fp_agg_hash(seed, index0 + d)   (u32 index, wrapping)
 * stored as two's complement u32. E[q] = v up to 2^-24 of a step. Only
 * correctly rounded f32 add/mul/floor are used, so device and reference agree
 * bit for bit. The hash is a statistical PRNG (PCG-style), not a CSPRNG:
 * fine for rounding noise, not for masks or DP noise. index0 lets one update
 * be quantised in pieces with the same result as in one call. */
typedef struct fp_agg_qparams {
    float clip;          /* > 0, finite */
    uint32_t scale_bits; /* 0..30, with clip * 2^scale_bits <= 2^31 - 1 */
    uint64_t seed;
    uint32_t index0;
} fp_agg_qparams;

/* FP_EINVAL for bad parameters; with n_clients > 0 also FP_EOVERFLOW if the
 * sum of n_clients quantised values could leave the signed 32-bit range. */
int fp_agg_qparams_check(const fp_agg_qparams *p, uint32_t n_clients);

/* The counter-based hash behind the rounding (exposed for tests). */
uint32_t fp_agg_hash(uint64_t seed, uint32_t index);

/* q (u32, D) = quantise(x (f32, D)). */
int fp_agg_quantize(fp_stream *s, fp_tensor *q, const fp_tensor *x, const fp_agg_qparams *p);

/* out[d] = ((float)(int32_t)sum[d] * 2^-scale_bits) * post (f32 <- u32, D);
 * post = 1/n gives the mean of n clients. */
int fp_agg_dequantize(fp_stream *s, fp_tensor *out, const fp_tensor *sum, uint32_t scale_bits, float post);

/* ---- C references (host arrays; the CPU fallback) ---------------------------------- *
 * Same semantics as the device ops; X is row-major [K][D]. Return 0 or FP_EINVAL. */
int fp_agg_wsum_ref(float *out, const float *X, const float *w, int64_t K, int64_t D, int accumulate);
int fp_agg_axpy_ref(float *out, const float *x, float w, int64_t D);
int fp_agg_norms_ref(float *norms, const float *X, int64_t K, int64_t D);
int fp_agg_clip_ref(float *X, const float *norms, float c, int64_t K, int64_t D);
int fp_agg_trimmed_mean_ref(float *out, const float *X, int64_t K, int64_t D, uint32_t b);
int fp_agg_median_ref(float *out, const float *X, int64_t K, int64_t D);
/* thr[k] = the ceil(keep*D)-th largest |X[k, :]| (exact; NaN counts as 0), 0 < keep <= 1.
 * Trimming with it keeps at least that many entries (all ties at the threshold). */
int fp_agg_ties_threshold_ref(float *thr, const float *X, int64_t K, int64_t D, float keep);
int fp_agg_ties_trim_ref(float *X, const float *thr, int64_t K, int64_t D);
int fp_agg_ties_masked_ref(float *msum, float *count, const float *X, const float *total, int64_t K, int64_t D,
                           int accumulate);
int fp_agg_ties_mean_ref(float *out, const float *msum, const float *count, int64_t D);
int fp_agg_ring_add_ref(uint32_t *acc, const uint32_t *x, int64_t D);
int fp_agg_ring_sub_ref(uint32_t *acc, const uint32_t *x, int64_t D);
int fp_agg_ring_sum_ref(uint32_t *out, const uint32_t *Q, int64_t K, int64_t D, int accumulate);
int fp_agg_quantize_ref(uint32_t *q, const float *x, int64_t D, const fp_agg_qparams *p);
int fp_agg_dequantize_ref(float *out, const uint32_t *sum, int64_t D, uint32_t scale_bits, float post);

/* ---- autotuning ------------------------------------------------------------------------ */

/* Measures two device choices of these ops on ctx's device (profile and
 * overlay) and stores the winners in m (fp_measured_tune_set), as fp-probe
 * does with fp_matmul_autotune before saving m to the cache that later
 * contexts load:
 *  - "aggregate.order_net" = "32" | "64" | "128": the most clients median and
 *    trimmed mean give to a sorting network (radix select beyond), from
 *    median at K = 50 and 100 clients;
 *  - "aggregate.norm" = "tree" | "flat": fp_agg_norms' stage 1, from K = 10
 *    and 100 clients.
 * Each candidate is first checked against the C reference on small odd
 * shapes (and must run its own pipeline, not a fallback; one that does not
 * build is skipped); a failing one is reported on stderr and never chosen.
 * The rest are timed best-of-reps at D = 2^18 coordinates (quick: 2^16); the
 * winner has the lowest sum over shapes of time / best time. Allocates about
 * 100 * D floats of device memory for the duration; takes seconds on lavapipe
 * (the first build of a 128-input network dominates). The choices are forced
 * for this thread only while it runs (no environment change); $FP_AGG_ORDER_NET
 * and $FP_AGG_NORM still override stored keys afterwards. Also stores
 * "aggregate.order_net.ms" / "aggregate.norm.ms" (each candidate's ms per op
 * on each timing shape, for reading; nothing uses them). FP_EPIPELINE if no
 * candidate of a key passes (that key is not stored; the other still is). */
int fp_agg_autotune(fp_ctx *ctx, fp_measured *m, int quick);

/* ---- benchmark ----------------------------------------------------------------------- */

/* GB/s (bytes read + written / time, best of repeats) of every kernel for K = 10
 * and 100 clients of a 1 M-float (4 MiB) update, and the device's copy bandwidth
 * (fp_op_copy of 64 MiB) in the same run, with each kernel's ratio to it.
 * quick: fewer repeats and K = 10 only. *json_out: malloc'd JSON (caller frees).
 * Environment FP_BENCH_AGG_ONLY="norms,clip" (names as in the JSON) times only
 * those kernels; copy always runs. */
int fp_bench_aggregate(fp_ctx *ctx, int quick, char **json_out);

#ifdef __cplusplus
}
#endif
#endif
