/* Binding windows (internal to src/ops): DESIGN.md section 4 says never to
 * bind past the device's storage range, so ops over big tensors bind element
 * ranges of them. A window covering elements [e0, e0 + n) of a tensor of
 * 4-byte elements is the tensor itself when it fits one binding (the kernel
 * then adds e0 itself), else a view aligned down to the storage alignment plus
 * a small element offset `delta` the kernel adds to its indices.
 * Not thread-safe per window; the stream keeps only the Vulkan buffer and
 * range of a recorded binding, so a window may be closed right after its
 * dispatch is recorded. */
#ifndef FP_OPS_BIND_WINDOW_H
#define FP_OPS_BIND_WINDOW_H
#include <stdint.h>

#include "fedproxy/runtime.h"

typedef struct fp_win {
    const fp_tensor *t; /* what gets bound */
    fp_tensor *view;    /* owned view, or NULL when t is the caller's tensor */
    uint32_t delta;     /* element offset of element e0 in t */
} fp_win;

/* Most 4-byte elements one window may span on ctx (room left for the alignment slack). */
int64_t fp_win_max_elems(const fp_ctx *ctx);

/* Opens a window over elements [e0, e0 + n) of t (4-byte elements, t->offset
 * 4-byte aligned); n <= fp_win_max_elems. */
int fp_win_open(fp_win *w, const fp_tensor *t, int64_t e0, int64_t n);

void fp_win_close(fp_win *w);

/* Whether ops read their big read-only operands through uniform texel buffers
 * (FP_TEX4) where the operand fits one (fp_ctx_texel_fits), rather than as
 * storage buffers. FP_TEXEL_READS=0|1 overrides, then fp-probe's tune key
 * "texel_reads"; by default on for CPU devices, off for GPUs. Why: llvmpipe
 * loads a storage buffer lane by lane but fetches a vec4 texel for 8 lanes at
 * once, 7-9x cheaper per element (summing [100, 2^18] rows: 4.9 against 0.65
 * ns per float); GPUs have no measurement here and keep the common path.
 * Always 0 where the device has no texel-buffer formats (or FP_NO_TEXEL). */
int fp_ops_texel_reads(const fp_ctx *ctx);
#endif
