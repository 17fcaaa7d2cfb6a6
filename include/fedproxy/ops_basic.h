/* fedproxy: basic device ops the runtime itself uses (copies, y = a*x + b, an
 * empty dispatch for latency probes). Each records into a stream; nothing runs
 * until fp_stream_run. Shapes are checked (FP_ESHAPE), f32 only. */
#ifndef FEDPROXY_OPS_BASIC_H
#define FEDPROXY_OPS_BASIC_H

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Workgroup size and grid for n elements of 1-D work (2-D grid past 65535 groups). */
void fp_grid_1d(uint32_t n, uint32_t wg, uint32_t *gx, uint32_t *gy);

/* dst = src (same dtype size and element count; any dtype, copied as 32-bit words
 * when the byte size allows, else with a transfer copy). */
int fp_op_copy(fp_stream *s, fp_tensor *dst, const fp_tensor *src);

/* y = a*x + b (f32, same numel; x may be y). */
int fp_op_axpb(fp_stream *s, fp_tensor *y, const fp_tensor *x, float a, float b);

/* The workgroup size the elementwise kernels use on ctx (tuned or default). */
uint32_t fp_basic_wg(fp_ctx *ctx);

/* One empty dispatch of `groups` workgroups. */
int fp_op_empty(fp_stream *s, uint32_t groups);

#ifdef __cplusplus
}
#endif
#endif
