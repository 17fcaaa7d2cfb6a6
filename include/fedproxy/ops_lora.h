/* fedproxy: LoRA linear layers (PEFT layout) on the device.
 *
 *   y = x W^T + s (x A^T) B^T,  s = alpha / r
 *
 * x [N, in] f32 (N tokens: leading dims flattened), W [out, in] frozen base
 * weight in F32, F16 or BF16 (nn.Linear layout), A = lora_A.weight [r, in] f32,
 * B = lora_B.weight [out, r] f32, y [N, out] f32. The forward runs in two steps
 * (u = x A^T first, r small) and keeps u [N, r] for the backward; the backward
 * never forms B A:
 *   g  = dy B                  [N, r]   (caller's scratch)
 *   dB = s dy^T u              [out, r]
 *   dA = s g^T x               [r, in]
 *   dx = dy W + s g A          [N, in]
 * Every product is an fp_matmul (ops_matmul.h), so it runs the variant the
 * device's profile and tuning pick for its shape, split along K by the same
 * rule (the split is summed in a fixed order). Shapes and dtypes are checked
 * (FP_ESHAPE with a message). Records into the stream; nothing runs until
 * fp_stream_run. Deterministic (no atomics). Threading: as for streams.
 */
#ifndef FEDPROXY_OPS_LORA_H
#define FEDPROXY_OPS_LORA_H

#include <stdint.h>

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = x W^T + (alpha/r) u B^T with u = x A^T written to u [N, r]. y, u must not alias inputs. */
int fp_lora_fwd(fp_stream *s, fp_tensor *y, fp_tensor *u, const fp_tensor *x, const fp_tensor *W,
                const fp_tensor *A, const fp_tensor *B, float alpha);

/* Gradients for dy [N, out]: dA [r, in], dB [out, r] (written, or added to when
 * accumulate), dx [N, in] (written; NULL to skip). g: scratch f32 [N, r].
 * x and u are the forward's. */
int fp_lora_bwd(fp_stream *s, fp_tensor *dx, fp_tensor *dA, fp_tensor *dB, fp_tensor *g, const fp_tensor *dy,
                const fp_tensor *x, const fp_tensor *u, const fp_tensor *W, const fp_tensor *A, const fp_tensor *B,
                float alpha, int accumulate);

/* The matmul variant of the last LoRA op this thread recorded: that of its
 * product with W (the forward's x W^T, the backward's dy W), or of its first
 * product when it has none (a backward without dx); "" if none. */
const char *fp_lora_last_pipeline(void);

/* C references (double accumulation). W's elements are of dtype wt (F32, F16 or
 * BF16, as 16-bit words for the latter two). dx may be NULL. */
void fp_ref_lora_fwd(float *y, float *u, const float *x, const void *W, fp_dtype wt, const float *A,
                     const float *B, int64_t N, int64_t in, int64_t out, int64_t r, float alpha);
void fp_ref_lora_bwd(float *dx, float *dA, float *dB, const float *dy, const float *x, const float *u,
                     const void *W, fp_dtype wt, const float *A, const float *B, int64_t N, int64_t in,
                     int64_t out, int64_t r, float alpha, int accumulate);

#ifdef __cplusplus
}
#endif
#endif
