/* Host wrappers for the shaders in shaders/basic/. */
#include "fedproxy/ops_basic.h"
#include "error_internal.h"
#include "ops/bind_window.h"

#include <stdlib.h>

#define COPY_ITEMS 1 /* vec4s per invocation: more only slowed llvmpipe (measured 1, 4, 16) */

/* Workgroup size of the elementwise kernels: fp-probe's tuned "basic.wg" if it
 * ran, else 256, always capped by the profile (64 under 'minimal'). */
uint32_t fp_basic_wg(fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    const char *t = fp_measured_tune_get(fp_ctx_measured(ctx), "basic.wg");
    uint32_t wg = t ? (uint32_t)strtoul(t, NULL, 10) : 256;
    if (wg < 1)
        wg = 64;
    while (wg > p->max_wg_invocations || wg > p->max_wg_size[0])
        wg /= 2;
    return wg;
}

void fp_grid_1d(uint32_t n, uint32_t wg, uint32_t *gx, uint32_t *gy)
{
    uint32_t groups = (n + wg - 1) / wg;
    if (groups == 0)
        groups = 1;
    if (groups <= 65535) {
        *gx = groups;
        *gy = 1;
    } else {
        *gx = 65535;
        *gy = (groups + 65534) / 65535;
    }
}

/* items: elements per invocation (shaders with specialization constant 3), else 0 */
static int dispatch_1d(fp_stream *s, fp_ctx *ctx, const char *name, const fp_binding *b, uint32_t nb,
                       const void *push, uint32_t push_size, uint32_t n, uint32_t items)
{
    uint32_t wg = fp_basic_wg(ctx);
    uint32_t spec[4] = {wg, 1, 1, items};
    fp_pipeline *p;
    int rc = fp_pipeline_get(&p, ctx, name, spec, items ? 4 : 3);
    if (rc)
        return rc;
    uint32_t gx, gy;
    fp_grid_1d(n, wg * (items ? items : 1), &gx, &gy);
    return fp_stream_dispatch(s, p, b, nb, push, push_size, gx, gy, 1);
}

int fp_op_copy(fp_stream *s, fp_tensor *dst, const fp_tensor *src)
{
    if (!s || !dst || !src)
        return fp_seterr(FP_EINVAL, "copy: NULL argument");
    if (dst->nbytes != src->nbytes)
        return fp_seterr(FP_ESHAPE, "copy: %llu bytes into %llu bytes", (unsigned long long)src->nbytes,
                         (unsigned long long)dst->nbytes);
    if (src->nbytes % 4)
        return fp_stream_copy(s, dst, src);
    uint32_t words = (uint32_t)(src->nbytes / 4);
    fp_binding b[2] = {FP_R(src), FP_W(dst)};
    uint32_t vec = words / 4, tail = words % 4;
    int rc = 0;
    if (vec) {
        uint32_t push[3] = {vec, 0, 0};
        /* through a u32 texel view (bit-exact for every 32-bit type) where the
         * device reads texels faster; the view covers exactly the vec whole vec4s */
        fp_tensor *words_view = NULL;
        int64_t nw = (int64_t)words;
        if (fp_ops_texel_reads(dst->ctx) &&
            fp_tensor_view(&words_view, (fp_tensor *)src, 0, FP_U32, 1, &nw) == 0 &&
            !fp_ctx_texel_fits(dst->ctx, words_view, 4)) {
            fp_tensor_free(words_view);
            words_view = NULL;
        }
        fp_errclear();
        fp_binding bt[2] = {words_view ? FP_TEX4(words_view) : FP_R(src), FP_W(dst)};
        rc = dispatch_1d(s, dst->ctx, words_view ? "copy_tex_vec4" : "copy_vec4", bt, 2, push, sizeof push, vec,
                         COPY_ITEMS);
        fp_tensor_free(words_view); /* the stream keeps its own texel view */
    }
    if (!rc && tail) {
        uint32_t push[3] = {tail, vec * 4, vec * 4};
        rc = dispatch_1d(s, dst->ctx, "copy_f32", b, 2, push, sizeof push, tail, 1);
    }
    return rc;
}

int fp_op_axpb(fp_stream *s, fp_tensor *y, const fp_tensor *x, float a, float b)
{
    if (!s || !y || !x)
        return fp_seterr(FP_EINVAL, "axpb: NULL argument");
    if (x->dtype != FP_F32 || y->dtype != FP_F32 || fp_tensor_numel(x) != fp_tensor_numel(y))
        return fp_seterr(FP_ESHAPE, "axpb: needs two f32 tensors of equal size (got %s[%lld] and %s[%lld])",
                         fp_dtype_name(x->dtype), (long long)fp_tensor_numel(x), fp_dtype_name(y->dtype),
                         (long long)fp_tensor_numel(y));
    struct { uint32_t n; float a, b; } push = {(uint32_t)fp_tensor_numel(y), a, b};
    fp_binding bd[2] = {FP_R(x), FP_W(y)};
    return dispatch_1d(s, y->ctx, "axpb_f32", bd, 2, &push, sizeof push, push.n, 0);
}

int fp_op_empty(fp_stream *s, uint32_t groups)
{
    if (!s)
        return fp_seterr(FP_EINVAL, "empty: NULL stream");
    fp_pipeline *p;
    uint32_t spec[3] = {64, 1, 1};
    int rc = fp_pipeline_get(&p, fp_stream_ctx(s), "empty", spec, 3);
    if (rc)
        return rc;
    return fp_stream_dispatch(s, p, NULL, 0, NULL, 0, groups ? groups : 1, 1, 1);
}
