/* Binding windows: see bind_window.h. */
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "ops/bind_window.h"
#include "fedproxy/measured.h"
#include "fedproxy/profile.h"

static uint64_t bind_align(const fp_ctx *ctx)
{
    uint64_t a = fp_ctx_profile(ctx)->min_storage_align;
    return a > 16 ? a : 16;
}

int64_t fp_win_max_elems(const fp_ctx *ctx)
{
    uint64_t r = fp_ctx_profile(ctx)->storage_range;
    if (r > ((uint64_t)1 << 32) - 4)
        r = ((uint64_t)1 << 32) - 4; /* element offsets are u32 in the shaders */
    return (int64_t)((r - bind_align(ctx)) / 4);
}

int fp_win_open(fp_win *w, const fp_tensor *t, int64_t e0, int64_t n)
{
    fp_ctx *ctx = t->ctx;
    const fp_profile *p = fp_ctx_profile(ctx);
    w->view = NULL;
    if (t->offset % 4)
        return fp_seterr(FP_EINVAL, "binding window: tensor at byte offset %llu is not 4-byte aligned",
                         (unsigned long long)t->offset);
    if (t->nbytes <= p->storage_range && t->offset % p->min_storage_align == 0 &&
        (uint64_t)(e0 + n) <= 0xffffffffull) {
        w->t = t;
        w->delta = (uint32_t)e0;
        return 0;
    }
    /* a window aligned down to the storage alignment; it may start before t
     * (t a misaligned view, e.g. a row of [K, D] with D % 4 != 0): the bytes in
     * between belong to the same buffer and are never touched by the kernel */
    uint64_t A = bind_align(ctx);
    uint64_t abs0 = t->offset + (uint64_t)e0 * 4;
    uint64_t start = abs0 - abs0 % A;
    fp_tensor *v = malloc(sizeof *v);
    if (!v)
        return fp_seterr(FP_ENOMEM, "binding window: out of memory");
    *v = *t;
    v->offset = start;
    v->ndim = 1;
    v->shape[0] = (int64_t)((abs0 - start) / 4) + n;
    v->shape[1] = v->shape[2] = v->shape[3] = 0;
    v->nbytes = (uint64_t)v->shape[0] * 4;
    v->alloc_size = 0;
    v->is_view = 1;
    w->view = v;
    w->t = v;
    w->delta = (uint32_t)((abs0 - start) / 4);
    return 0;
}

void fp_win_close(fp_win *w)
{
    fp_tensor_free(w->view);
    w->view = NULL;
}

int fp_ops_texel_reads(const fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    if (!p->texel_buffers)
        return 0;
    const char *t = getenv("FP_TEXEL_READS");
    if (!t || !*t)
        t = fp_measured_tune_get(fp_ctx_measured(ctx), "texel_reads");
    if (t && *t)
        return strcmp(t, "0") != 0;
    return fp_profile_is_cpu(p);
}
