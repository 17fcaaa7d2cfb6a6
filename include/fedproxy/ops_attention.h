/* fedproxy: rotary position embedding (RoPE) and fused causal grouped-query
 * attention (flash-attention style: online softmax, no T x T matrix in memory),
 * forward, backward and KV-cache decode, on the device; plus plain-C references.
 *
 * Layouts (f32, row-major, contiguous):
 *   q    [B, T, Hq, D]   (a 3-D tensor [T, H, D] is taken as B = 1)
 *   k, v [B, T, Hkv, D]  with Hq % Hkv == 0 (GQA; query head h uses kv head h / (Hq/Hkv))
 *   o    [B, T, Hq, D]
 *   lse  [B, Hq, T] f32: natural-log logsumexp of each row's scaled, masked scores
 *        (what the backward needs besides o).
 * RoPE follows Hugging Face's rotate-half convention (LlamaRotaryEmbedding /
 * apply_rotary_pos_emb): half = D/2, inv_freq[i] = theta^(-2i/D), angle =
 * pos * inv_freq[i], pos = start_pos + t,
 *   out[i]      = x[i] cos - x[i+half] sin
 *   out[i+half] = x[i+half] cos + x[i] sin.
 *
 * Device functions record into a stream; nothing runs until fp_stream_run. They
 * return 0 or a negative FP_E* code (FP_ESHAPE with a message naming the
 * mismatch, FP_EINVAL for bad descriptors or aliasing outputs). f32 only.
 *
 * Kernel variants (one query or key row per invocation, online softmax, no
 * T x T matrix; chosen from the profile, fastest first, with fallback):
 *   attn_tiled   K/V (or Q/dout) tiles in shared memory sized from the
 *                profile's shared memory (minimal: 16 KiB); default on GPUs
 *   attn_direct  no shared memory, no barriers; rows read from global memory
 *   attn_sg      subgroup variant: lanes load 8 different vec4s of a row and
 *                share them with subgroupShuffle, each invocation owns 2-4
 *                rows; needs subgroup ops, subgroup size >= 8 and D % 4 == 0;
 *                default on CPU devices (lavapipe turns every non-uniform load
 *                into a loop over lanes, so loads are what it must save)
 * $FP_ATTN_VARIANT (tiled|direct|sg) or the tuned key "attention.variant" (written
 * by fp_attention_autotune through fp-probe --tune; an unknown value is ignored)
 * override the default; every variant runs under "minimal" except sg, which
 * falls back to direct there. Workgroups are 64 invocations (8 for tiny row
 * counts such as decode).
 * Threading: as for streams (one thread per stream). The reference functions
 * are pure and thread-safe; callers own every buffer.
 */
#ifndef FEDPROXY_OPS_ATTENTION_H
#define FEDPROXY_OPS_ATTENTION_H

#include <stdint.h>

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- RoPE ----------------------------------------------------------------- */

typedef struct fp_rope_desc {
    float theta;        /* rope_theta (> 1), e.g. 10000 */
    int64_t start_pos;  /* position of token 0 (the KV-cache offset), >= 0 */
} fp_rope_desc;

/* y = RoPE(x) for x, y of shape [T, H, D] or [B, T, H, D] (D even, f32).
 * y may be x (in place). Angles are computed in the shader with range
 * reduction (f32; matches HF's f32 computation to ~1e-6 relative at positions
 * below a few thousand). */
int fp_rope(fp_stream *s, fp_tensor *y, const fp_tensor *x, const fp_rope_desc *d);

/* Backward: dx = R(-angle) dy (the inverse rotation). dx may be dy. */
int fp_rope_backward(fp_stream *s, fp_tensor *dx, const fp_tensor *dy, const fp_rope_desc *d);

/* ---- attention ----------------------------------------------------------- */

typedef struct fp_attn_desc {
    float scale; /* softmax scale; 0 means 1/sqrt(D) */
    int causal;  /* 1: query t attends keys 0..t (the default model); 0: all keys */
} fp_attn_desc;

/* o, lse = attention(q, k, v). Shapes as above; lse may be NULL (inference).
 * o must not alias q, k or v. */
int fp_attention_forward(fp_stream *s, fp_tensor *o, fp_tensor *lse, const fp_tensor *q, const fp_tensor *k,
                         const fp_tensor *v, const fp_attn_desc *d);

/* dq, dk, dv from dout, q, k, v and the forward's o and lse (FlashAttention-2
 * style recompute: D_i = rowsum(dout * o), then one kernel over query rows for
 * dq and one over key rows for dk/dv, which sums over the query heads sharing
 * a kv head). dq has q's shape, dk/dv k's. Outputs are overwritten. On GPUs
 * with few rows the kernels split their walk (dk/dv over query chunks, dq
 * over key chunks; stream scratch, deterministic reduce; see
 * fp_attention_last_split). */
int fp_attention_backward(fp_stream *s, fp_tensor *dq, fp_tensor *dk, fp_tensor *dv, const fp_tensor *dout,
                          const fp_tensor *q, const fp_tensor *k, const fp_tensor *v, const fp_tensor *o,
                          const fp_tensor *lse, const fp_attn_desc *d);

/* KV-cache decode: q [B, Tq, Hq, D] holds Tq new tokens at positions
 * pos .. pos+Tq-1 (their k/v already written to rows pos.. of the cache);
 * k_cache/v_cache [B, T_max, Hkv, D], rows 0 .. pos+Tq-1 valid (pos+Tq <= T_max).
 * Causal: new token i attends cache rows 0 .. pos+i. o [B, Tq, Hq, D].
 * workspace (optional, f32, at least fp_attention_decode_workspace(...)
 * elements) lets the sequence be split across workgroups (split-K) and the
 * parts combined; NULL runs unsplit. desc->causal is ignored (always causal). */
int fp_attention_decode(fp_stream *s, fp_tensor *o, const fp_tensor *q, const fp_tensor *k_cache,
                        const fp_tensor *v_cache, int64_t pos, const fp_attn_desc *d, fp_tensor *workspace);

/* f32 elements of workspace that let fp_attention_decode split the sequence
 * fully for caches up to t_max rows. */
int64_t fp_attention_decode_workspace(int64_t B, int64_t Tq, int64_t Hq, int64_t D, int64_t t_max);

/* The kernel variant the attention ops prefer on ctx ("attn_tiled",
 * "attn_direct" or "attn_sg"; a head dim the sg variant cannot take falls
 * back to direct/tiled), for logs and tests. Static string. */
const char *fp_attention_variant(fp_ctx *ctx);

/* Forces this thread's attention ops to prefer variant "tiled", "direct" or
 * "sg" (ahead of $FP_ATTN_VARIANT and the tuned key; the profile's limits and
 * the fallbacks still apply); NULL or "" clears it. FP_EINVAL for other names.
 * For the autotuner and tests. */
int fp_attention_force_variant(const char *name);

/* The pipeline the last attention op recorded on this thread ran with
 * (e.g. "attn_fwd_sg", "attn_bwd_dkv_direct"); "" before any. */
const char *fp_attention_last_pipeline(void);

/* Split counts of the last fp_attention_backward recorded on this thread
 * (1: unsplit; also before any): fp_attention_last_split for the dk/dv kernel
 * (query range split into S chunks), fp_attention_last_split_dq for the dq
 * kernel (key range split). GPUs with few rows (small T * Hkv * B, T >= 64)
 * split; the chunks' partial sums go to stream scratch and a reduce pass adds
 * them in fixed order (deterministic). CPU devices never split.
 * $FP_ATTN_SPLIT = S, else the tuned key "attention.split" (same meaning),
 * overrides both: S >= 2 forces chunks of ceil(T / S) rows (so at most S
 * chunks; S at most 32) on any device, 1 disables (0 or anything else: no
 * override). For logs and tests. */
int fp_attention_last_split(void);
int fp_attention_last_split_dq(void);

/* Forces this thread's backward split, ahead of $FP_ATTN_SPLIT and the tuned
 * key: S >= 1 as FP_ATTN_SPLIT = S; -1 the GPU rule on any device (CPU
 * devices included; the autotuner's candidate); 0 clears. FP_EINVAL below -1.
 * For the autotuner and tests. */
int fp_attention_force_split(int S);

/* Autotuner (fp-probe --tune): checks every variant the profile allows against
 * the C reference (forward and backward, NMSE <= 5e-4, on a small odd shape),
 * times forward + backward on the benchmark's head layout (B 1, Hq 8, Hkv 2,
 * D 64; T 256, quick: 64), and stores the fastest correct one as
 * fp_measured_tune_set(m, "attention.variant", "tiled" | "direct" | "sg").
 * Variants that fail the check, or that fall back to another pipeline, are
 * skipped with a line on stderr. Then, with the winner, the backward split:
 * checked against the reference (3 chunks forced on the small shape) and
 * timed (the GPU rule, forced on any device) against unsplit on the benchmark
 * layout; stores "attention.split" = "1" (disable) when it is wrong or slower,
 * else "0" (no override: the default rule). Leaves the thread's forced variant
 * and split cleared. */
int fp_attention_autotune(fp_ctx *ctx, fp_measured *m, int quick);

/* ---- C references (naive; double accumulation; T x T materialised) -------- */

/* y = RoPE(x) (inverse = 0) or its inverse rotation (inverse = 1) on [B, T, H, D]. y may be x. */
void fp_rope_ref(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t start_pos,
                 double theta, int inverse);
void fp_rope_ref64(double *y, const double *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t start_pos,
                   double theta, int inverse);

/* o [B,T,Hq,D], lse [B,Hq,T] (may be NULL). Returns FP_EINVAL on bad dims or FP_ENOMEM. */
int fp_attention_forward_ref(float *o, float *lse, const float *q, const float *k, const float *v, int64_t B,
                             int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const fp_attn_desc *d);
int fp_attention_forward_ref64(double *o, double *lse, const double *q, const double *k, const double *v,
                               int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const fp_attn_desc *d);

/* dq, dk, dv from dout (recomputes the probabilities; no o/lse needed). */
int fp_attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                              const fp_attn_desc *d);
int fp_attention_backward_ref64(double *dq, double *dk, double *dv, const double *dout, const double *q,
                                const double *k, const double *v, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                                int64_t D, const fp_attn_desc *d);

/* ---- benchmark -------------------------------------------------------------- */

/* Forward and backward tokens/s and GFLOP/s at T = 256 and 1024 (B=1, Hq=8,
 * Hkv=2, D=64; quick: fewer repetitions), plus decode tokens/s. *json_out gets
 * a malloc'd JSON object (free()). */
int fp_bench_attention(fp_ctx *ctx, int quick, char **json_out);

#ifdef __cplusplus
}
#endif
#endif
