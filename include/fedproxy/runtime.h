/* fedproxy: the Vulkan compute runtime.
 *
 * fp_ctx      one device: instance (loaded through volk), logical device, compute
 *             queue (+ transfer queue where the device has one), memory
 *             sub-allocator, lazily created pipelines and their on-disk cache.
 * fp_tensor   an n-d array (up to 4 dims) in device memory, or a view into one.
 * fp_stream   a command buffer that records many dispatches, with the barriers
 *             their data dependencies need, submitted once.
 *
 * Ownership: the caller owns what it creates and frees it with the matching
 * _free/_destroy; tensors and streams must be freed before their context.
 * Threading: a context may be shared by threads for tensor creation and
 * upload/download (internally locked); a stream must be used by one thread at a
 * time. Errors: 0 or a negative FP_E* code; fp_errmsg() names the device and op.
 */
#ifndef FEDPROXY_RUNTIME_H
#define FEDPROXY_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/error.h"
#include "fedproxy/measured.h"
#include "fedproxy/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_ctx fp_ctx;
typedef struct fp_stream fp_stream;
typedef struct fp_pipeline fp_pipeline;
typedef struct fp_block fp_block; /* internal: one VkDeviceMemory + VkBuffer */

/* ---- devices ------------------------------------------------------------ */

/* Loads the Vulkan loader (idempotent). FP_ENOLOADER when there is none. */
int fp_vk_load(void);

/* Profiles of every physical device, in Vulkan's order, without overlays.
 * Writes up to max entries; *count gets the number of devices. FP_ENODEV if none. */
int fp_device_list(fp_profile *out, uint32_t max, uint32_t *count);

typedef struct fp_ctx_opts {
    const char *device;  /* index, name substring or vendor; NULL: $FP_DEVICE, else best */
    const char *profile; /* overlay name or JSON path; NULL: $FP_PROFILE; "" for none */
    int validate;        /* 1 on, 0 off, -1: $FP_VALIDATE */
    /* (FP_TRACE_MS=N in the environment: every stream run, staged transfer and
     * pipeline build that takes N ms or more is reported on stderr, with the
     * pipelines involved: where the time goes on a new device; 0 reports all) */
    int profiling;       /* record per-dispatch timestamps in streams */
    int no_pipeline_cache; /* do not load/save the on-disk pipeline cache */
} fp_ctx_opts;

/* Creates a context on the chosen device. opts may be NULL (all defaults).
 * With validation on, the Khronos layer must be present (FP_EUNSUPPORTED if not);
 * every message it emits is counted (fp_ctx_validation_count) and printed. */
int fp_ctx_create(fp_ctx **out, const fp_ctx_opts *opts);

/* Saves the pipeline cache and releases everything. NULL is a no-op. */
void fp_ctx_destroy(fp_ctx *ctx);

/* The effective profile (after overlay and env switches). Valid for ctx's life. */
const fp_profile *fp_ctx_profile(const fp_ctx *ctx);

/* What fp-probe measured on this device under this overlay (valid == 0 if it
 * never ran). Kernels read their autotuned variants from it. Valid for ctx's life. */
const fp_measured *fp_ctx_measured(const fp_ctx *ctx);

/* Validation messages (warnings and errors) seen so far. */
uint32_t fp_ctx_validation_count(const fp_ctx *ctx);

/* Memory statistics in bytes: currently allocated from Vulkan, in use by tensors,
 * and the peak of in-use. */
typedef struct fp_mem_stats {
    uint64_t reserved, in_use, peak_in_use;
    uint32_t blocks;
} fp_mem_stats;
void fp_ctx_mem_stats(const fp_ctx *ctx, fp_mem_stats *out);

/* Pipeline cache statistics: bytes loaded from disk at creation, pipelines built. */
typedef struct fp_pipeline_stats {
    uint64_t cache_bytes_loaded;
    uint32_t pipelines_created, fallbacks;
    char cache_path[512];
} fp_pipeline_stats;
void fp_ctx_pipeline_stats(const fp_ctx *ctx, fp_pipeline_stats *out);

/* Waits for the device to be idle. */
int fp_ctx_wait_idle(fp_ctx *ctx);

/* ---- tensors ------------------------------------------------------------ */

typedef enum fp_dtype { FP_F32 = 0, FP_F16, FP_BF16, FP_I32, FP_U8, FP_U32, FP_DTYPE_COUNT } fp_dtype;

size_t fp_dtype_size(fp_dtype t);
const char *fp_dtype_name(fp_dtype t);

#define FP_MAX_DIMS 4

/* Read-only fields for callers; create and free through the functions below. */
typedef struct fp_tensor {
    fp_ctx *ctx;
    fp_dtype dtype;
    int ndim;
    int64_t shape[FP_MAX_DIMS];
    uint64_t nbytes;     /* numel * dtype size */
    /* internal */
    fp_block *block;
    uint64_t offset;     /* bytes from the start of block's buffer */
    uint64_t alloc_size; /* bytes reserved (0 for views) */
    int is_view;
} fp_tensor;

/* A new, uninitialised tensor. FP_EDEVMEM with the sizes when it does not fit. */
int fp_tensor_new(fp_tensor **out, fp_ctx *ctx, fp_dtype dtype, int ndim, const int64_t *shape);

/* A contiguous view of base starting at element elem_offset; its byte offset must
 * meet the device's storage alignment when it is bound to a kernel. The view
 * does not own memory and must be freed before base. */
int fp_tensor_view(fp_tensor **out, fp_tensor *base, int64_t elem_offset, fp_dtype dtype, int ndim,
                   const int64_t *shape);

void fp_tensor_free(fp_tensor *t);
int64_t fp_tensor_numel(const fp_tensor *t);

/* Host <-> device copies of exactly t->nbytes (nbytes must equal it). UMA devices
 * copy through the mapping; others go through staging (and a transfer queue). */
int fp_tensor_upload(fp_tensor *t, const void *src, size_t nbytes);
int fp_tensor_download(void *dst, size_t nbytes, const fp_tensor *t);

/* Fills the tensor with zero bytes. */
int fp_tensor_zero(fp_tensor *t);

/* ---- pipelines ------------------------------------------------------------ */

/* All pipelines share one layout: set 0 holds FP_MAX_BINDINGS storage buffers at
 * bindings 0..N-1, as many uniform texel buffers at FP_TEXEL_BINDING(0..N-1)
 * (bindings N..2N-1), and there is one push-constant range of FP_PUSH_MAX bytes.
 * Specialization constant ids 0,1,2 are the workgroup size x,y,z; ids from 3 on
 * are the kernel's own (tile sizes, flags). */
#define FP_MAX_BINDINGS 8
#define FP_TEXEL_BINDING(i) (FP_MAX_BINDINGS + (i))
#define FP_PUSH_MAX 128
#define FP_MAX_SPEC 16

/* Returns the pipeline for shader `name` with these specialization constants,
 * creating it on first use (cached in the context). FP_EPIPELINE if it cannot be
 * built; FP_ENOTFOUND if no embedded shader has that name. */
int fp_pipeline_get(fp_pipeline **out, fp_ctx *ctx, const char *name, const uint32_t *spec,
                    uint32_t nspec);

/* Tries the variants in order (fastest first) and returns the first that builds,
 * warning about each one that did not. *chosen gets the index of the one used. */
typedef struct fp_variant {
    const char *name;
    const uint32_t *spec;
    uint32_t nspec;
} fp_variant;
int fp_pipeline_get_first(fp_pipeline **out, uint32_t *chosen, fp_ctx *ctx, const fp_variant *variants,
                          uint32_t count);

const char *fp_pipeline_name(const fp_pipeline *p);

/* ---- command streams -------------------------------------------------------- */

/* A tensor bound to a kernel, read-only or written (for hazard tracking).
 * texel 0: a storage buffer at binding i (its index in the array). texel 1 or
 * 4: also a uniform texel buffer (GLSL samplerBuffer, usamplerBuffer,
 * isamplerBuffer for F32, U32, I32 tensors) of 1- or 4-component texels at
 * binding FP_TEXEL_BINDING(i); read-only ones (FP_TEX1, FP_TEX4) leave storage
 * binding i a placeholder, written ones are bound at both (in-place kernels
 * that fetch texels and store to the buffer; an invocation may only read
 * texels no invocation of the same dispatch writes). Why: some drivers fetch
 * texels far more cheaply than they load storage-buffer elements (llvmpipe: a
 * storage load goes lane by lane, a texel fetch is one gather). The tensor
 * must pass fp_ctx_texel_fits. */
typedef struct fp_binding {
    const fp_tensor *t;
    int write;
    int texel;
} fp_binding;
#define FP_R(t_) ((fp_binding){(t_), 0, 0})
#define FP_W(t_) ((fp_binding){(t_), 1, 0})
#define FP_TEX1(t_) ((fp_binding){(t_), 0, 1})
#define FP_TEX4(t_) ((fp_binding){(t_), 0, 4})
#define FP_WTEX4(t_) ((fp_binding){(t_), 1, 4})

/* 1 if t can be bound as a uniform texel buffer of `comps` (1 or 4) component
 * texels on its context: an F32, U32 or I32 tensor whose offset is a multiple
 * of the device's texel-buffer offset alignment, of at least one texel and at
 * most maxTexelBufferElements texels (a trailing partial texel is not
 * visible), on a device whose formats allow it. 0 otherwise. */
int fp_ctx_texel_fits(const fp_ctx *ctx, const fp_tensor *t, uint32_t comps);

int fp_stream_new(fp_stream **out, fp_ctx *ctx);
void fp_stream_free(fp_stream *s);
fp_ctx *fp_stream_ctx(const fp_stream *s);

/* Records one dispatch. Bindings go to bindings 0..n-1 in order (texel ones to
 * FP_TEXEL_BINDING(i)). A barrier is
 * inserted before it only when it reads or writes memory that an earlier
 * dispatch since the last barrier wrote, or writes memory one read. */
int fp_stream_dispatch(fp_stream *s, fp_pipeline *p, const fp_binding *bindings, uint32_t nbindings,
                       const void *push, uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz);

/* Transient device memory for ops that split work across workgroups (split-K
 * partial sums): a 1-D tensor of numel elements, contents undefined, owned by
 * the stream and freed when its next fp_stream_run has completed (or by
 * fp_stream_free). Never free it yourself, and use it only in this stream's
 * current recording. Release it (fp_stream_scratch_release) once the last
 * dispatch using it is recorded: later requests may then get the same memory
 * (the stream's hazard tracking orders the new writes after the old reads),
 * so a recording's scratch peaks at what its ops hold at once, not at the sum
 * of every request. Allocation failures (FP_ENOMEM / FP_EOOM) leave the
 * stream usable: ops fall back to their unsplit path. */
int fp_stream_scratch(fp_stream *s, fp_tensor **out, fp_dtype dtype, int64_t numel);
int fp_stream_scratch_release(fp_stream *s, fp_tensor *t);

/* Records a buffer copy (src and dst tensors of equal byte size). */
int fp_stream_copy(fp_stream *s, const fp_tensor *dst, const fp_tensor *src);

/* Submits everything recorded, waits for completion, and resets the stream for
 * more recording. Device loss and timeouts are reported with the device name. */
int fp_stream_run(fp_stream *s);

/* Statistics of the last run: dispatches and barriers recorded. */
typedef struct fp_stream_stats {
    uint32_t dispatches, barriers;
} fp_stream_stats;
void fp_stream_stats_get(const fp_stream *s, fp_stream_stats *out);

/* Per-dispatch GPU times of the last run (profiling contexts only): writes up to
 * max entries, *count gets the number available. */
typedef struct fp_dispatch_time {
    const char *pipeline;
    double us;
} fp_dispatch_time;
int fp_stream_timings(const fp_stream *s, fp_dispatch_time *out, uint32_t max, uint32_t *count);

/* Test hook: makes the next pipelines whose names contain `pattern` fail to build
 * (as a driver's compiler might), to exercise fallbacks. NULL clears it.
 * Also settable with $FP_FAIL_PIPELINE. */
void fp_ctx_debug_fail_pipelines(fp_ctx *ctx, const char *pattern);

#ifdef __cplusplus
}
#endif
#endif
