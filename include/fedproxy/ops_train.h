/* fedproxy: training ops, each forward next to its backward (llm.c style), the
 * global gradient norm and clipping, optimizer steps and dtype conversions.
 *
 * Every op records into a stream (nothing runs until fp_stream_run) and checks
 * shapes and dtypes first (FP_ESHAPE with a message; nothing is recorded then).
 * Tensors are f32 and contiguous row-major unless stated; a "row" tensor of
 * width C is any tensor whose last dimension is C (the leading ones are
 * flattened into rows). Outputs never alias inputs unless the function says so.
 * Reductions are deterministic: the same inputs on the same device and variant
 * give bit-identical results (no floating-point atomics anywhere).
 * Threading: as for streams (one thread per stream at a time).
 * Elementwise ops, the optimizers, conversions and RMSNorm (rows of whole
 * vec4s) read and write vec4s, with a scalar pass for the last n % 4 elements.
 *
 * fp_ref_* are plain-C references of every op (tests and CPU fallbacks), in
 * f32 storage with double accumulation.
 */
#ifndef FEDPROXY_OPS_TRAIN_H
#define FEDPROXY_OPS_TRAIN_H

#include <stdint.h>

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_IGNORE_INDEX (-100)

/* ---- embedding -------------------------------------------------------------- */

/* out[i, :] = table[ids[i], :]. table f32 [V, C]; ids i32 [N] (any shape, N =
 * numel); out f32 with N*C elements and last dim C. Ids outside [0, V) give a
 * zero row (and no gradient). */
int fp_embedding_fwd(fp_stream *s, fp_tensor *out, const fp_tensor *table, const fp_tensor *ids);

/* dtable[ids[i], :] += dout[i, :] for every token, summed in token order per row
 * (deterministic, no atomics). dtable is accumulated into: zero it first for a
 * plain gradient. work: i32 or u32 scratch with at least N elements. */
int fp_embedding_bwd(fp_stream *s, fp_tensor *dtable, const fp_tensor *dout, const fp_tensor *ids,
                     fp_tensor *work);

/* ---- RMSNorm -------------------------------------------------------------- */

/* y = x / sqrt(mean(x^2) + eps) * w over rows of width C; rstd f32 [rows] gets
 * 1/sqrt(mean(x^2) + eps) per row for the backward. w f32 [C]. y != x. */
int fp_rmsnorm_fwd(fp_stream *s, fp_tensor *y, fp_tensor *rstd, const fp_tensor *x, const fp_tensor *w,
                   float eps);

/* dx (written) and dw (written, or added to when accumulate_dw) from dy, the
 * forward's x, w and rstd. dx may be NULL (only dw), dw may be NULL (only dx). */
int fp_rmsnorm_bwd(fp_stream *s, fp_tensor *dx, fp_tensor *dw, const fp_tensor *dy, const fp_tensor *x,
                   const fp_tensor *w, const fp_tensor *rstd, int accumulate_dw);

/* ---- SwiGLU ------------------------------------------------------------------ */

/* h = silu(gate) * up, all f32 of equal element count. */
int fp_swiglu_fwd(fp_stream *s, fp_tensor *h, const fp_tensor *gate, const fp_tensor *up);
/* dgate = dh * up * silu'(gate), dup = dh * silu(gate). */
int fp_swiglu_bwd(fp_stream *s, fp_tensor *dgate, fp_tensor *dup, const fp_tensor *dh, const fp_tensor *gate,
                  const fp_tensor *up);

/* ---- residuals and scaling -------------------------------------------------- */

/* y = a + b (y may be a or b). */
int fp_add(fp_stream *s, fp_tensor *y, const fp_tensor *a, const fp_tensor *b);
/* y += alpha * x (the in-place residual accumulate, alpha = 1). */
int fp_axpy(fp_stream *s, fp_tensor *y, float alpha, const fp_tensor *x);
/* y *= alpha, in place. */
int fp_scale(fp_stream *s, fp_tensor *y, float alpha);

/* ---- fused softmax cross-entropy ------------------------------------------ */

/* Per row of logits [rows, V] with target t = targets[row] (i32 [rows]):
 * losses[row] = logsumexp(logits[row]) - logits[row, t], or 0 when t is
 * FP_IGNORE_INDEX (or outside [0, V)); lse[row] = logsumexp (saved for the
 * backward); stats f32 [2] = {mean loss over valid rows (0 if none), n_valid}.
 * Numerically stable (online max/sum). losses, lse: f32 [rows].
 * Logits larger than the device's storage range are bound in chunks of whole
 * rows (DESIGN.md section 4); a single row larger than it is FP_EUNSUPPORTED
 * (as in the backward). */
int fp_softmax_ce_fwd(fp_stream *s, fp_tensor *losses, fp_tensor *lse, fp_tensor *stats, const fp_tensor *logits,
                      const fp_tensor *targets);

/* dlogits = (softmax(logits) - onehot(t)) * dloss / n_valid, zero rows for
 * ignored targets; n_valid is read from stats on the device. dlogits may be
 * logits itself (in place). dloss is the upstream gradient of the mean loss (1). */
int fp_softmax_ce_bwd(fp_stream *s, fp_tensor *dlogits, const fp_tensor *logits, const fp_tensor *targets,
                      const fp_tensor *lse, const fp_tensor *stats, float dloss);

/* ---- global gradient norm and clipping -------------------------------------- */

/* f32 elements of scratch fp_grad_norm needs for these tensors (> 0). */
int64_t fp_grad_norm_work_size(fp_ctx *ctx, const fp_tensor *const *grads, int count);

/* out f32 [2] = {sqrt(sum over all grads of g^2), min(1, max_norm / (norm + 1e-6))}
 * (the second is 1 when max_norm <= 0). Two-stage: one partial per workgroup
 * into work, then one workgroup sums them in order. No host round trip. */
int fp_grad_norm(fp_stream *s, fp_tensor *out, fp_tensor *work, const fp_tensor *const *grads, int count,
                 float max_norm);

/* grads[i] *= norm_out[1] on the device (norm_out from fp_grad_norm). */
int fp_grad_clip(fp_stream *s, fp_tensor *const *grads, int count, const fp_tensor *norm_out);

/* ---- optimizers -------------------------------------------------------------- */

typedef struct fp_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    uint32_t step; /* 1-based step count for bias correction */
} fp_adamw_params;

/* AdamW (decoupled weight decay, bias-corrected) on f32 p, g, m, v of equal
 * element count; g is first multiplied by gscale[1] when gscale (fp_grad_norm's
 * out) is not NULL, which fuses clipping into the update. */
int fp_adamw_step(fp_stream *s, fp_tensor *p, const fp_tensor *g, fp_tensor *m, fp_tensor *v,
                  const fp_adamw_params *hp, const fp_tensor *gscale);

/* Plain SGD: p -= lr * (g * gscale[1] + weight_decay * p) (gscale may be NULL). */
int fp_sgd_step(fp_stream *s, fp_tensor *p, const fp_tensor *g, float lr, float weight_decay,
                const fp_tensor *gscale);

/* ---- conversions -------------------------------------------------------------- */

/* dst = src converted between F32, F16 and BF16 (equal element count, any count;
 * same dtype is a copy). f32->bf16 rounds to nearest even; f32->f16 uses the
 * device's packHalf2x16 (round to nearest even on every driver seen; Vulkan
 * allows either neighbour). Needs no 16-bit storage or arithmetic feature. */
int fp_convert(fp_stream *s, fp_tensor *dst, const fp_tensor *src);

/* ---- variants and benchmark ------------------------------------------------- */

/* Name of the last pipeline a train op on this thread recorded (for tests and
 * logs: "rmsnorm_fwd_sg", ...; for fp_grad_norm its last vec4 sum-of-squares
 * body, "gradnorm_sumsq_tex_vec4_sg", when one ran), "" if none. Element-wise
 * ops (optimizers included) name their vec4 body; "_tex_vec4" says it read its
 * operands as texels (fp_ops_texel_reads: by default on CPU devices). */
const char *fp_train_last_pipeline(void);

/* Test and benchmark hook: forces the row-reduction variant of RMSNorm and
 * softmax-CE process-wide: "sg" (subgroups; the tree where the profile lacks
 * them), "sh" (shared-memory tree), "rs" (one invocation per row), or NULL for
 * the automatic choice (fp-probe's "train.reduce", else "rs" on lavapipe, else
 * "sg"/"sh" by profile). FP_EINVAL for an unknown name. Not thread-safe. */
int fp_train_force_reduce(const char *mode);

/* Runs the training-op benchmark (RMSNorm fwd/bwd, softmax-CE fwd+bwd at
 * 1024x8192, AdamW on 16M params, conversions, LoRA fwd+bwd at hidden 512,
 * r 16, 1024 tokens); quick shrinks the sizes. *json_out: malloc'd JSON text. */
int fp_bench_train_ops(fp_ctx *ctx, int quick, char **json_out);

/* ---- C references -------------------------------------------------------------- */

void fp_ref_embedding_fwd(float *out, const float *table, const int32_t *ids, int64_t N, int64_t C, int64_t V);
void fp_ref_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int64_t N, int64_t C,
                          int64_t V); /* accumulates */
void fp_ref_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t rows, int64_t C,
                        float eps);
void fp_ref_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                        int64_t rows, int64_t C, int accumulate_dw); /* dx or dw may be NULL */
void fp_ref_swiglu_fwd(float *h, const float *gate, const float *up, int64_t n);
void fp_ref_swiglu_bwd(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int64_t n);
/* Returns the mean loss; *n_valid gets the count of valid rows. */
float fp_ref_softmax_ce_fwd(float *losses, float *lse, int64_t *n_valid, const float *logits,
                            const int32_t *targets, int64_t rows, int64_t V);
void fp_ref_softmax_ce_bwd(float *dlogits, const float *logits, const int32_t *targets, const float *lse,
                           int64_t rows, int64_t V, float dloss, int64_t n_valid);
double fp_ref_grad_norm(const float *const *grads, const int64_t *n, int count);
void fp_ref_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, const fp_adamw_params *hp,
                       float gscale);
void fp_ref_sgd_step(float *p, const float *g, int64_t n, float lr, float weight_decay, float gscale);
uint16_t fp_ref_f32_to_f16(float f);  /* round to nearest even, overflow to inf, subnormals kept */
float fp_ref_f16_to_f32(uint16_t h);
uint16_t fp_ref_f32_to_bf16(float f); /* round to nearest even, NaN stays quiet NaN */
float fp_ref_bf16_to_f32(uint16_t h);
/* n elements from src (dtype st) to dst (dtype dt); F32, F16, BF16 only. */
int fp_ref_convert(void *dst, fp_dtype dt, const void *src, fp_dtype st, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
