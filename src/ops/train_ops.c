/* Host wrappers for the training ops (shaders/train/, shaders/train.cmake).
 * Each checks shapes and dtypes, picks a variant from the context's profile
 * (and fp-probe's tuned choice "train.reduce" = "sg" | "sh" when present), and
 * records its dispatches. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fedproxy/ops_basic.h"
#include "fedproxy/ops_train.h"
#include "bench_reps.h"
#include "error_internal.h"
#include "ops/bind_window.h"

#define EW_WG 64 /* elementwise workgroup: fits every profile */

static _Thread_local char g_last[64];

const char *fp_train_last_pipeline(void) { return g_last; }

static void note(const fp_pipeline *p)
{
    snprintf(g_last, sizeof g_last, "%s", fp_pipeline_name(p));
}

/* ---- helpers -------------------------------------------------------------- */

static int64_t rows_of(const fp_tensor *t)
{
    int64_t last = t->shape[t->ndim - 1];
    return last ? fp_tensor_numel(t) / last : 0;
}

static int64_t last_dim(const fp_tensor *t) { return t->shape[t->ndim - 1]; }

static int need_f32(const char *op, const char *what, const fp_tensor *t)
{
    if (!t)
        return fp_seterr(FP_EINVAL, "%s: %s is NULL", op, what);
    if (t->dtype != FP_F32)
        return fp_seterr(FP_ESHAPE, "%s: %s must be f32, not %s", op, what, fp_dtype_name(t->dtype));
    return 0;
}

static int need_numel(const char *op, const char *what, const fp_tensor *t, int64_t n)
{
    if (fp_tensor_numel(t) != n)
        return fp_seterr(FP_ESHAPE, "%s: %s has %lld elements, expected %lld", op, what,
                         (long long)fp_tensor_numel(t), (long long)n);
    return 0;
}

static int too_big(const char *op, int64_t n)
{
    if (n > (int64_t)UINT32_MAX / 2)
        return fp_seterr(FP_EUNSUPPORTED, "%s: %lld elements exceed the 2^31 a kernel indexes", op, (long long)n);
    return 0;
}

/* Row reductions come in three variants: _sg (subgroup arithmetic), _sh
 * (shared-memory tree) and _rs (one invocation per row, no barriers). */
enum { RED_SG, RED_SH, RED_RS };
static int g_force = -1; /* fp_train_force_reduce */

int fp_train_force_reduce(const char *mode)
{
    if (!mode || !*mode)
        g_force = -1;
    else if (!strcmp(mode, "sg"))
        g_force = RED_SG;
    else if (!strcmp(mode, "sh"))
        g_force = RED_SH;
    else if (!strcmp(mode, "rs"))
        g_force = RED_RS;
    else
        return fp_seterr(FP_EINVAL, "train: unknown reduction variant '%s' (sg, sh, rs)", mode);
    return 0;
}

/* Automatic choice: fp-probe's tuned "train.reduce" if any, else one row per
 * invocation where workgroup barriers are slow (lavapipe), else subgroups
 * where the profile has them, else the shared-memory tree. Never a feature the
 * profile lacks. */
static int red_mode(fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    int m = g_force;
    if (m < 0) {
        const char *t = fp_measured_tune_get(fp_ctx_measured(ctx), "train.reduce");
        if (t && !strcmp(t, "sg"))
            m = RED_SG;
        else if (t && !strcmp(t, "sh"))
            m = RED_SH;
        else if (t && !strcmp(t, "rs"))
            m = RED_RS;
        else if (p->quirks & FP_QUIRK_SLOW_WG_BARRIERS)
            m = RED_RS;
        else
            m = RED_SG;
    }
    if (m == RED_SG && !p->subgroup_ops)
        m = RED_SH;
    return m;
}

/* Power-of-two workgroup for a reduction over `len` items per row: about len/4,
 * at least 32, at most 256 (64 where big barrier trees are slow or invocations
 * are capped, e.g. lavapipe and 'minimal'). */
static uint32_t red_wg(fp_ctx *ctx, int64_t len)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    uint32_t cap = 256;
    if (p->quirks & FP_QUIRK_SLOW_WG_BARRIERS)
        cap = 64;
    while (cap > p->max_wg_invocations || cap > p->max_wg_size[0])
        cap >>= 1;
    uint32_t w = 32;
    while (w < cap && (int64_t)w * 4 < len)
        w <<= 1;
    return w < cap ? w : cap;
}

static int get_mode(fp_pipeline **p, fp_ctx *ctx, const char *base, uint32_t wg, int mode)
{
    static const char *suf[] = {"sg", "sh", "rs"};
    char names[3][64];
    uint32_t spec[3] = {wg, 1, 1};
    fp_variant v[2];
    uint32_t nv = 0, chosen;
    snprintf(names[mode], sizeof names[mode], "%s_%s", base, suf[mode]);
    v[nv++] = (fp_variant){names[mode], spec, 3};
    if (mode == RED_SG) { /* the tree is the fallback if a compiler rejects the subgroup shader */
        snprintf(names[RED_SH], sizeof names[RED_SH], "%s_sh", base);
        v[nv++] = (fp_variant){names[RED_SH], spec, 3};
    }
    int rc = fp_pipeline_get_first(p, &chosen, ctx, v, nv);
    if (!rc)
        note(*p);
    return rc;
}

/* Pipeline and grid for a per-row reduction kernel over `rows` rows of `len`. */
static int get_rows(fp_pipeline **p, fp_ctx *ctx, const char *base, int64_t rows, int64_t len, uint32_t *gx,
                    uint32_t *gy)
{
    int mode = red_mode(ctx);
    uint32_t wg = mode == RED_RS ? 64 : red_wg(ctx, len);
    int rc = get_mode(p, ctx, base, wg, mode);
    if (rc)
        return rc;
    fp_grid_1d((uint32_t)rows, mode == RED_RS ? wg : 1, gx, gy);
    return 0;
}

/* A one-workgroup (or, row-serial, one-invocation) reduction, or the grid-wide
 * sum of squares (never row-serial). */
static int get_red(fp_pipeline **p, fp_ctx *ctx, const char *base, uint32_t wg)
{
    int mode = red_mode(ctx);
    if (mode == RED_RS && !strcmp(base, "ce_mean"))
        return get_mode(p, ctx, base, 1, RED_RS);
    return get_mode(p, ctx, base, wg, mode == RED_RS ? (fp_ctx_profile(ctx)->subgroup_ops ? RED_SG : RED_SH) : mode);
}

static int get_plain(fp_pipeline **p, fp_ctx *ctx, const char *name, uint32_t wg)
{
    uint32_t spec[3] = {wg, 1, 1};
    int rc = fp_pipeline_get(p, ctx, name, spec, 3);
    if (!rc)
        note(*p);
    return rc;
}

static int ew_dispatch(fp_stream *s, const char *name, const fp_binding *b, uint32_t nb, const void *push,
                       uint32_t psize, int64_t n)
{
    fp_pipeline *p;
    int rc = get_plain(&p, fp_stream_ctx(s), name, EW_WG);
    if (rc)
        return rc;
    uint32_t gx, gy;
    fp_grid_1d((uint32_t)n, EW_WG, &gx, &gy);
    return fp_stream_dispatch(s, p, b, nb, push, psize, gx, gy, 1);
}

/* The vec4 body of an element-wise op through texels, "<name>_tex_vec4", where
 * fp_ops_texel_reads says so and every binding with tex[i] fits vec4 texels:
 * those are read as texels (written ones bound FP_WTEX4 as well). tex may be
 * NULL (no texel variant). Returns the count of bindings written to bt, 0 for
 * the storage body. */
static uint32_t ew_texel(fp_ctx *ctx, const fp_binding *b, uint32_t nb, const int *tex, fp_binding *bt)
{
    if (!tex || !fp_ops_texel_reads(ctx))
        return 0;
    for (uint32_t i = 0; i < nb; i++) {
        bt[i] = b[i];
        if (tex[i]) {
            if (!fp_ctx_texel_fits(ctx, b[i].t, 4))
                return 0;
            bt[i].texel = 4;
        }
    }
    return nb;
}

/* Elementwise op over n elements: the "_vec4" variant over the first n / 4
 * vec4s (its "_tex_vec4" form where ew_texel allows, tex[i] per binding as
 * there), then the scalar one over the n % 4 left. The shaders' push constants
 * start with {units, first unit}, rewritten here per dispatch. Workgroups of
 * fp_basic_wg (256 where allowed: fewer groups for llvmpipe to schedule). */
static int ew_split_tex(fp_stream *s, const char *name, const fp_binding *b, uint32_t nb, const int *tex,
                        void *push, uint32_t psize, int64_t n)
{
    fp_ctx *ctx = fp_stream_ctx(s);
    uint32_t wg = fp_basic_wg(ctx), *w = push, gx, gy;
    int64_t nv = n / 4, tail = n % 4;
    char vname[64];
    fp_binding bt[FP_MAX_BINDINGS];
    uint32_t ntex = nb <= FP_MAX_BINDINGS ? ew_texel(ctx, b, nb, tex, bt) : 0;
    snprintf(vname, sizeof vname, "%s%s_vec4", name, ntex ? "_tex" : "");
    fp_pipeline *p;
    int rc = 0;
    if (nv) {
        w[0] = (uint32_t)nv;
        w[1] = 0;
        fp_grid_1d((uint32_t)nv, wg, &gx, &gy);
        if (!(rc = get_plain(&p, ctx, vname, wg)))
            rc = fp_stream_dispatch(s, p, ntex ? bt : b, nb, push, psize, gx, gy, 1);
    }
    if (!rc && tail) {
        w[0] = (uint32_t)tail;
        w[1] = (uint32_t)(nv * 4);
        fp_grid_1d((uint32_t)tail, wg, &gx, &gy);
        if (!(rc = get_plain(&p, ctx, name, wg)))
            rc = fp_stream_dispatch(s, p, b, nb, push, psize, gx, gy, 1);
    }
    if (!rc && nv)
        snprintf(g_last, sizeof g_last, "%s", vname); /* the body; a tail is scalar */
    return rc;
}

static int ew_split(fp_stream *s, const char *name, const fp_binding *b, uint32_t nb, void *push, uint32_t psize,
                    int64_t n)
{
    return ew_split_tex(s, name, b, nb, NULL, push, psize, n);
}

/* Grid over [rows, cols]: x over columns (groups of wg), y then z over rows. */
static void grid_rows_cols(int64_t rows, int64_t cols, uint32_t wg, uint32_t *g)
{
    g[0] = (uint32_t)((cols + wg - 1) / wg);
    g[1] = rows > 65535 ? 65535u : (uint32_t)(rows ? rows : 1);
    g[2] = (uint32_t)((rows + 65534) / 65535);
    if (!g[2])
        g[2] = 1;
}

/* ---- embedding ------------------------------------------------------------ */

int fp_embedding_fwd(fp_stream *s, fp_tensor *out, const fp_tensor *table, const fp_tensor *ids)
{
    const char *op = "embedding_fwd";
    int rc;
    if (!s || !ids)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    if ((rc = need_f32(op, "out", out)) || (rc = need_f32(op, "table", table)))
        return rc;
    if (table->ndim != 2)
        return fp_seterr(FP_ESHAPE, "%s: table must be [V, C], has %d dims", op, table->ndim);
    if (ids->dtype != FP_I32)
        return fp_seterr(FP_ESHAPE, "%s: ids must be i32, not %s", op, fp_dtype_name(ids->dtype));
    int64_t V = table->shape[0], C = table->shape[1], N = fp_tensor_numel(ids);
    if (last_dim(out) != C || fp_tensor_numel(out) != N * C)
        return fp_seterr(FP_ESHAPE, "%s: out must be [%lld, %lld] for %lld ids and table [%lld, %lld]", op,
                         (long long)N, (long long)C, (long long)N, (long long)V, (long long)C);
    if ((rc = too_big(op, N * C)) || (rc = too_big(op, V * C)))
        return rc;
    fp_pipeline *p;
    if ((rc = get_plain(&p, fp_stream_ctx(s), "embedding_fwd", EW_WG)))
        return rc;
    uint32_t g[3];
    grid_rows_cols(N, C, EW_WG, g);
    uint32_t push[4] = {(uint32_t)N, (uint32_t)C, (uint32_t)V, g[1]};
    fp_binding b[3] = {FP_R(table), FP_R(ids), FP_W(out)};
    return fp_stream_dispatch(s, p, b, 3, push, sizeof push, g[0], g[1], g[2]);
}

int fp_embedding_bwd(fp_stream *s, fp_tensor *dtable, const fp_tensor *dout, const fp_tensor *ids,
                     fp_tensor *work)
{
    const char *op = "embedding_bwd";
    int rc;
    if (!s || !ids || !work)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    if ((rc = need_f32(op, "dtable", dtable)) || (rc = need_f32(op, "dout", dout)))
        return rc;
    if (dtable->ndim != 2)
        return fp_seterr(FP_ESHAPE, "%s: dtable must be [V, C], has %d dims", op, dtable->ndim);
    if (ids->dtype != FP_I32)
        return fp_seterr(FP_ESHAPE, "%s: ids must be i32, not %s", op, fp_dtype_name(ids->dtype));
    int64_t V = dtable->shape[0], C = dtable->shape[1], N = fp_tensor_numel(ids);
    if (last_dim(dout) != C || fp_tensor_numel(dout) != N * C)
        return fp_seterr(FP_ESHAPE, "%s: dout must be [%lld, %lld] for %lld ids and dtable [%lld, %lld]", op,
                         (long long)N, (long long)C, (long long)N, (long long)V, (long long)C);
    if ((work->dtype != FP_I32 && work->dtype != FP_U32) || fp_tensor_numel(work) < N)
        return fp_seterr(FP_ESHAPE, "%s: work must be i32/u32 with >= %lld elements (is %s[%lld])", op,
                         (long long)N, fp_dtype_name(work->dtype), (long long)fp_tensor_numel(work));
    if ((rc = too_big(op, N * C)) || (rc = too_big(op, V * C)) || (rc = too_big(op, 2 * N)))
        return rc;
    fp_ctx *ctx = fp_stream_ctx(s);
    uint32_t push1[2] = {(uint32_t)N, (uint32_t)V};
    fp_binding b1[2] = {FP_R(ids), FP_W(work)};
    if ((rc = ew_dispatch(s, "embedding_link", b1, 2, push1, sizeof push1, N)))
        return rc;
    fp_pipeline *p;
    if ((rc = get_plain(&p, ctx, "embedding_bwd", EW_WG)))
        return rc;
    uint32_t g[3];
    grid_rows_cols(N, C, EW_WG, g);
    uint32_t push[4] = {(uint32_t)N, (uint32_t)C, (uint32_t)V, g[1]};
    fp_binding b[4] = {FP_R(dout), FP_R(ids), FP_R(work), FP_W(dtable)};
    return fp_stream_dispatch(s, p, b, 4, push, sizeof push, g[0], g[1], g[2]);
}

/* ---- RMSNorm -------------------------------------------------------------- */

int fp_rmsnorm_fwd(fp_stream *s, fp_tensor *y, fp_tensor *rstd, const fp_tensor *x, const fp_tensor *w, float eps)
{
    const char *op = "rmsnorm_fwd";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "y", y)) || (rc = need_f32(op, "rstd", rstd)) || (rc = need_f32(op, "x", x)) ||
        (rc = need_f32(op, "w", w)))
        return rc;
    int64_t C = last_dim(x), R = rows_of(x);
    if (C < 1)
        return fp_seterr(FP_ESHAPE, "%s: x has rows of width 0", op);
    if ((rc = need_numel(op, "w", w, C)) || (rc = need_numel(op, "y", y, R * C)) ||
        (rc = need_numel(op, "rstd", rstd, R)) || (rc = too_big(op, R * C)))
        return rc;
    if (last_dim(y) != C)
        return fp_seterr(FP_ESHAPE, "%s: y's last dim %lld is not x's %lld", op, (long long)last_dim(y),
                         (long long)C);
    if (y == x)
        return fp_seterr(FP_EINVAL, "%s: y must not be x", op);
    fp_ctx *ctx = fp_stream_ctx(s);
    fp_pipeline *p;
    uint32_t gx, gy;
    int v4 = C % 4 == 0; /* rows of whole vec4s */
    if ((rc = get_rows(&p, ctx, v4 ? "rmsnorm_fwd_vec4" : "rmsnorm_fwd", R, v4 ? C / 4 : C, &gx, &gy)))
        return rc;
    struct { uint32_t rows, C; float eps; } push = {(uint32_t)R, (uint32_t)C, eps};
    fp_binding b[4] = {FP_R(x), FP_R(w), FP_W(y), FP_W(rstd)};
    return fp_stream_dispatch(s, p, b, 4, &push, sizeof push, gx, gy, 1);
}

int fp_rmsnorm_bwd(fp_stream *s, fp_tensor *dx, fp_tensor *dw, const fp_tensor *dy, const fp_tensor *x,
                   const fp_tensor *w, const fp_tensor *rstd, int accumulate_dw)
{
    const char *op = "rmsnorm_bwd";
    int rc;
    if (!s || (!dx && !dw))
        return fp_seterr(FP_EINVAL, "%s: NULL stream or neither dx nor dw", op);
    if ((dx && (rc = need_f32(op, "dx", dx))) || (dw && (rc = need_f32(op, "dw", dw))) ||
        (rc = need_f32(op, "dy", dy)) || (rc = need_f32(op, "x", x)) || (rc = need_f32(op, "w", w)) ||
        (rc = need_f32(op, "rstd", rstd)))
        return rc;
    int64_t C = last_dim(x), R = rows_of(x);
    if (C < 1)
        return fp_seterr(FP_ESHAPE, "%s: x has rows of width 0", op);
    if ((rc = need_numel(op, "w", w, C)) || (rc = need_numel(op, "dy", dy, R * C)) ||
        (rc = need_numel(op, "rstd", rstd, R)) || (dx && (rc = need_numel(op, "dx", dx, R * C))) ||
        (dw && (rc = need_numel(op, "dw", dw, C))) || (rc = too_big(op, R * C)))
        return rc;
    fp_ctx *ctx = fp_stream_ctx(s);
    fp_pipeline *p;
    if (dx) {
        uint32_t gx, gy;
        int v4 = C % 4 == 0;
        if ((rc = get_rows(&p, ctx, v4 ? "rmsnorm_bwd_vec4" : "rmsnorm_bwd", R, v4 ? C / 4 : C, &gx, &gy)))
            return rc;
        struct { uint32_t rows, C; float eps; } push = {(uint32_t)R, (uint32_t)C, 0.0f};
        fp_binding b[5] = {FP_R(x), FP_R(w), FP_R(dy), FP_R(rstd), FP_W(dx)};
        if ((rc = fp_stream_dispatch(s, p, b, 5, &push, sizeof push, gx, gy, 1)))
            return rc;
    }
    if (dw) {
        uint32_t push[3] = {(uint32_t)R, (uint32_t)C, accumulate_dw ? 1u : 0u};
        fp_binding b[4] = {FP_R(x), FP_R(dy), FP_R(rstd), FP_W(dw)};
        int v4 = C % 4 == 0;
        if ((rc = ew_dispatch(s, v4 ? "rmsnorm_dw_vec4" : "rmsnorm_dw", b, 4, push, sizeof push, v4 ? C / 4 : C)))
            return rc;
    }
    return 0;
}

/* ---- SwiGLU and elementwise ------------------------------------------------ */

int fp_swiglu_fwd(fp_stream *s, fp_tensor *h, const fp_tensor *gate, const fp_tensor *up)
{
    const char *op = "swiglu_fwd";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "h", h)) || (rc = need_f32(op, "gate", gate)) || (rc = need_f32(op, "up", up)))
        return rc;
    int64_t n = fp_tensor_numel(gate);
    if ((rc = need_numel(op, "up", up, n)) || (rc = need_numel(op, "h", h, n)) || (rc = too_big(op, n)))
        return rc;
    uint32_t push[2];
    fp_binding b[3] = {FP_R(gate), FP_R(up), FP_W(h)};
    return ew_split(s, "swiglu_fwd", b, 3, push, sizeof push, n);
}

int fp_swiglu_bwd(fp_stream *s, fp_tensor *dgate, fp_tensor *dup, const fp_tensor *dh, const fp_tensor *gate,
                  const fp_tensor *up)
{
    const char *op = "swiglu_bwd";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "dgate", dgate)) || (rc = need_f32(op, "dup", dup)) || (rc = need_f32(op, "dh", dh)) ||
        (rc = need_f32(op, "gate", gate)) || (rc = need_f32(op, "up", up)))
        return rc;
    int64_t n = fp_tensor_numel(gate);
    if ((rc = need_numel(op, "up", up, n)) || (rc = need_numel(op, "dh", dh, n)) ||
        (rc = need_numel(op, "dgate", dgate, n)) || (rc = need_numel(op, "dup", dup, n)) || (rc = too_big(op, n)))
        return rc;
    uint32_t push[2];
    fp_binding b[5] = {FP_R(gate), FP_R(up), FP_R(dh), FP_W(dgate), FP_W(dup)};
    return ew_split(s, "swiglu_bwd", b, 5, push, sizeof push, n);
}

int fp_add(fp_stream *s, fp_tensor *y, const fp_tensor *a, const fp_tensor *b)
{
    const char *op = "add";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "y", y)) || (rc = need_f32(op, "a", a)) || (rc = need_f32(op, "b", b)))
        return rc;
    int64_t n = fp_tensor_numel(y);
    if ((rc = need_numel(op, "a", a, n)) || (rc = need_numel(op, "b", b, n)) || (rc = too_big(op, n)))
        return rc;
    struct { uint32_t n, off; float alpha; } push = {0, 0, 1.0f};
    fp_binding bd[3] = {FP_R(a), FP_R(b), FP_W(y)};
    return ew_split(s, "add_f32", bd, 3, &push, sizeof push, n);
}

int fp_axpy(fp_stream *s, fp_tensor *y, float alpha, const fp_tensor *x)
{
    const char *op = "axpy";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "y", y)) || (rc = need_f32(op, "x", x)))
        return rc;
    int64_t n = fp_tensor_numel(y);
    if ((rc = need_numel(op, "x", x, n)) || (rc = too_big(op, n)))
        return rc;
    if (x == y)
        return fp_scale(s, y, 1.0f + alpha);
    struct { uint32_t n, off; float alpha; } push = {0, 0, alpha};
    fp_binding bd[2] = {FP_R(x), FP_W(y)};
    return ew_split(s, "axpy_f32", bd, 2, &push, sizeof push, n);
}

int fp_scale(fp_stream *s, fp_tensor *y, float alpha)
{
    const char *op = "scale";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "y", y)) || (rc = too_big(op, fp_tensor_numel(y))))
        return rc;
    int64_t n = fp_tensor_numel(y);
    struct { uint32_t n, off; float alpha; } push = {0, 0, alpha};
    fp_binding bd[1] = {FP_W(y)};
    return ew_split(s, "scale_f32", bd, 1, &push, sizeof push, n);
}

/* ---- softmax cross-entropy ------------------------------------------------ */

static int ce_check(const char *op, const fp_tensor *logits, const fp_tensor *targets, int64_t *R, int64_t *V)
{
    int rc;
    if ((rc = need_f32(op, "logits", logits)))
        return rc;
    if (!targets)
        return fp_seterr(FP_EINVAL, "%s: targets is NULL", op);
    if (targets->dtype != FP_I32)
        return fp_seterr(FP_ESHAPE, "%s: targets must be i32, not %s", op, fp_dtype_name(targets->dtype));
    *V = last_dim(logits);
    *R = rows_of(logits);
    if (*V < 1)
        return fp_seterr(FP_ESHAPE, "%s: logits have rows of width 0", op);
    if ((rc = need_numel(op, "targets", targets, *R)) || (rc = too_big(op, *R * *V)))
        return rc;
    return 0;
}

/* Rows per chunk: logits bound in windows of whole rows, never past the
 * storage range (DESIGN.md section 4); a single row past it is refused. */
static int ce_chunk_rows(const char *op, fp_ctx *ctx, int64_t R, int64_t V, int64_t *rows)
{
    int64_t maxe = fp_win_max_elems(ctx);
    if (V > maxe)
        return fp_seterr(FP_EUNSUPPORTED,
                         "%s: one row of %lld logits (%lld bytes) is larger than %s's storage range (%llu bytes)", op,
                         (long long)V, (long long)V * 4, fp_ctx_profile(ctx)->name,
                         (unsigned long long)fp_ctx_profile(ctx)->storage_range);
    if (R > maxe)
        return fp_seterr(FP_EUNSUPPORTED, "%s: %lld rows of per-row results exceed one binding", op, (long long)R);
    *rows = maxe / V < R ? maxe / V : R;
    return 0;
}

/* Windows over rows [r0, r0 + n) of each tensor (row length len[i] elements). */
static int ce_windows(fp_win *w, const fp_tensor *const *t, const int64_t *len, int count, int64_t r0, int64_t n)
{
    for (int i = 0; i < count; i++) {
        int rc = fp_win_open(&w[i], t[i], r0 * len[i], n * len[i]);
        if (rc) {
            while (i-- > 0)
                fp_win_close(&w[i]);
            return rc;
        }
    }
    return 0;
}

static void ce_close(fp_win *w, int count)
{
    for (int i = 0; i < count; i++)
        fp_win_close(&w[i]);
}

int fp_softmax_ce_fwd(fp_stream *s, fp_tensor *losses, fp_tensor *lse, fp_tensor *stats, const fp_tensor *logits,
                      const fp_tensor *targets)
{
    const char *op = "softmax_ce_fwd";
    int rc;
    int64_t R, V, chunk;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = ce_check(op, logits, targets, &R, &V)))
        return rc;
    if ((rc = need_f32(op, "losses", losses)) || (rc = need_f32(op, "lse", lse)) ||
        (rc = need_f32(op, "stats", stats)) || (rc = need_numel(op, "losses", losses, R)) ||
        (rc = need_numel(op, "lse", lse, R)) || (rc = need_numel(op, "stats", stats, 2)))
        return rc;
    fp_ctx *ctx = fp_stream_ctx(s);
    if ((rc = ce_chunk_rows(op, ctx, R, V, &chunk)))
        return rc;
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        int64_t n = R - r0 < chunk ? R - r0 : chunk;
        fp_pipeline *p;
        uint32_t gx, gy;
        if ((rc = get_rows(&p, ctx, "softmax_ce", n, V, &gx, &gy)))
            return rc;
        fp_win w[4];
        const fp_tensor *ts[4] = {logits, targets, losses, lse};
        const int64_t len[4] = {V, 1, 1, 1};
        if ((rc = ce_windows(w, ts, len, 4, r0, n)))
            return fp_adderr(rc, "%s", op);
        struct { uint32_t rows, V; int32_t ignore; uint32_t loff, toff, ooff, soff; } push = {
            (uint32_t)n, (uint32_t)V, FP_IGNORE_INDEX, w[0].delta, w[1].delta, w[2].delta, w[3].delta};
        fp_binding b[4] = {FP_R(w[0].t), FP_R(w[1].t), FP_W(w[2].t), FP_W(w[3].t)};
        rc = fp_stream_dispatch(s, p, b, 4, &push, sizeof push, gx, gy, 1);
        ce_close(w, 4);
        if (rc)
            return rc;
    }
    fp_pipeline *p;
    if ((rc = get_red(&p, ctx, "ce_mean", red_wg(ctx, R))))
        return rc;
    struct { uint32_t rows, V; int32_t ignore; } push = {(uint32_t)R, (uint32_t)V, FP_IGNORE_INDEX};
    fp_binding b2[3] = {FP_R(losses), FP_R(targets), FP_W(stats)};
    return fp_stream_dispatch(s, p, b2, 3, &push, sizeof push, 1, 1, 1);
}

int fp_softmax_ce_bwd(fp_stream *s, fp_tensor *dlogits, const fp_tensor *logits, const fp_tensor *targets,
                      const fp_tensor *lse, const fp_tensor *stats, float dloss)
{
    const char *op = "softmax_ce_bwd";
    int rc;
    int64_t R, V, chunk;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = ce_check(op, logits, targets, &R, &V)))
        return rc;
    if ((rc = need_f32(op, "dlogits", dlogits)) || (rc = need_f32(op, "lse", lse)) ||
        (rc = need_f32(op, "stats", stats)) || (rc = need_numel(op, "dlogits", dlogits, R * V)) ||
        (rc = need_numel(op, "lse", lse, R)) || (rc = need_numel(op, "stats", stats, 2)))
        return rc;
    fp_ctx *ctx = fp_stream_ctx(s);
    if ((rc = ce_chunk_rows(op, ctx, R, V, &chunk)))
        return rc;
    int inplace = dlogits == logits;
    fp_pipeline *p, *pv = NULL;
    const char *name = inplace ? "softmax_ce_bwd_inplace" : "softmax_ce_bwd";
    char vname[40];
    snprintf(vname, sizeof vname, "%s_vec4", name);
    if ((rc = get_plain(&p, ctx, name, EW_WG)) || (V % 4 == 0 && (rc = get_plain(&pv, ctx, vname, EW_WG))))
        return rc;
    for (int64_t r0 = 0; r0 < R && !rc; r0 += chunk) {
        int64_t n = R - r0 < chunk ? R - r0 : chunk;
        fp_win w[4];
        const fp_tensor *ts[4] = {logits, targets, lse, dlogits};
        const int64_t len[4] = {V, 1, 1, V};
        int nw = inplace ? 3 : 4;
        if ((rc = ce_windows(w, ts, len, nw, r0, n)))
            return fp_adderr(rc, "%s", op);
        uint32_t doff = inplace ? w[0].delta : w[3].delta;
        /* four columns per invocation where rows and both windows start on vec4s */
        uint32_t u = pv && w[0].delta % 4 == 0 && doff % 4 == 0 ? 4 : 1;
        uint32_t g[3];
        grid_rows_cols(n, V / u, EW_WG, g);
        struct { uint32_t rows, V; int32_t ignore; float dloss; uint32_t ystride, loff, toff, soff, doff; } push = {
            (uint32_t)n, (uint32_t)V, FP_IGNORE_INDEX, dloss, g[1], w[0].delta / u, w[1].delta, w[2].delta, doff / u};
        fp_pipeline *pp = u == 4 ? pv : p;
        note(pp);
        if (inplace) {
            fp_binding b[4] = {FP_W(w[0].t), FP_R(w[1].t), FP_R(w[2].t), FP_R(stats)};
            rc = fp_stream_dispatch(s, pp, b, 4, &push, sizeof push, g[0], g[1], g[2]);
        } else {
            fp_binding b[5] = {FP_R(w[0].t), FP_R(w[1].t), FP_R(w[2].t), FP_R(stats), FP_W(w[3].t)};
            rc = fp_stream_dispatch(s, pp, b, 5, &push, sizeof push, g[0], g[1], g[2]);
        }
        ce_close(w, nw);
    }
    return rc;
}

/* ---- gradient norm and clipping ----------------------------------------------- */

/* SUMSQ chunks (gradnorm.comp): NORM_CHUNK units per workgroup (16 per
 * invocation at 256, 64 at lavapipe's 64), longer when a tensor would need
 * more workgroups than the device dispatches in x; always whole multiples of
 * the workgroup size. One partial per workgroup. */
#define NORM_CHUNK 4096

static int64_t norm_chunk(fp_ctx *ctx, int64_t n, uint32_t wg)
{
    int64_t c = NORM_CHUNK, maxg = fp_ctx_profile(ctx)->max_wg_count[0];
    if (maxg > 0 && (n + c - 1) / c > maxg)
        c = (n + maxg - 1) / maxg;
    return (c + wg - 1) / wg * wg;
}

static uint32_t norm_groups(int64_t n, int64_t chunk)
{
    int64_t g = (n + chunk - 1) / chunk;
    return g < 1 ? 1u : (uint32_t)g;
}

/* gradnorm.comp's push constants (every stage; chunk: SUMSQ only) */
struct norm_push {
    uint32_t n, off;
    float max_norm;
    uint32_t xoff, chunk;
};

static uint32_t norm_wg(fp_ctx *ctx) { return red_wg(ctx, 1 << 20); }

/* Partials one tensor of n elements contributes: the vec4 body's groups, plus one for a scalar tail. */
static uint32_t norm_parts(fp_ctx *ctx, int64_t n, uint32_t wg)
{
    return (n / 4 ? norm_groups(n / 4, norm_chunk(ctx, n / 4, wg)) : 0) + (n % 4 ? 1u : 0u);
}

int64_t fp_grad_norm_work_size(fp_ctx *ctx, const fp_tensor *const *grads, int count)
{
    if (!ctx || !grads)
        return 1;
    uint32_t wg = norm_wg(ctx);
    int64_t tot = 0;
    for (int i = 0; i < count; i++)
        if (grads[i])
            tot += norm_parts(ctx, fp_tensor_numel(grads[i]), wg);
    return tot ? tot : 1;
}

int fp_grad_norm(fp_stream *s, fp_tensor *out, fp_tensor *work, const fp_tensor *const *grads, int count,
                 float max_norm)
{
    const char *op = "grad_norm";
    int rc;
    if (!s || !grads || count < 0)
        return fp_seterr(FP_EINVAL, "%s: NULL argument or negative count", op);
    if ((rc = need_f32(op, "out", out)) || (rc = need_f32(op, "work", work)) ||
        (rc = need_numel(op, "out", out, 2)))
        return rc;
    fp_ctx *ctx = fp_stream_ctx(s);
    for (int i = 0; i < count; i++) {
        char what[32];
        snprintf(what, sizeof what, "grads[%d]", i);
        if ((rc = need_f32(op, what, grads[i])) || (rc = too_big(op, fp_tensor_numel(grads[i]))))
            return rc;
    }
    int64_t need = fp_grad_norm_work_size(ctx, grads, count);
    if (fp_tensor_numel(work) < need)
        return fp_seterr(FP_ESHAPE, "%s: work has %lld elements, needs %lld (fp_grad_norm_work_size)", op,
                         (long long)fp_tensor_numel(work), (long long)need);
    uint32_t wg = norm_wg(ctx);
    fp_pipeline *p, *pv, *pt = NULL, *body = NULL;
    uint32_t off = 0;
    int tex = fp_ops_texel_reads(ctx); /* the vec4 body through texels where a gradient fits them */
    if (count > 0) {
        if ((rc = get_red(&pv, ctx, "gradnorm_sumsq_vec4", wg)) || (rc = get_red(&p, ctx, "gradnorm_sumsq", wg)) ||
            (tex && (rc = get_red(&pt, ctx, "gradnorm_sumsq_tex_vec4", wg))))
            return rc;
        for (int i = 0; i < count; i++) {
            int64_t n = fp_tensor_numel(grads[i]), nv = n / 4;
            fp_binding b[2] = {FP_R(grads[i]), FP_W(work)};
            if (nv) { /* vec4 body */
                int64_t chunk = norm_chunk(ctx, nv, wg);
                uint32_t groups = norm_groups(nv, chunk);
                struct norm_push push = {(uint32_t)nv, off, max_norm, 0, (uint32_t)chunk};
                int t4 = tex && fp_ctx_texel_fits(ctx, grads[i], 4);
                fp_binding bt[2] = {FP_TEX4(grads[i]), FP_W(work)};
                body = t4 ? pt : pv;
                if ((rc = fp_stream_dispatch(s, body, t4 ? bt : b, 2, &push, sizeof push, groups, 1, 1)))
                    return rc;
                off += groups;
            }
            if (n % 4) { /* scalar tail: one more partial */
                struct norm_push push = {(uint32_t)(n % 4), off, max_norm, (uint32_t)(nv * 4), 4};
                if ((rc = fp_stream_dispatch(s, p, b, 2, &push, sizeof push, 1, 1, 1)))
                    return rc;
                off += 1;
            }
        }
    }
    if ((rc = get_red(&p, ctx, "gradnorm_final", wg)))
        return rc;
    /* no tensors: n = 0 partials sum to a norm of 0 */
    struct norm_push push = {off, 0, max_norm, 0, 0};
    fp_binding b[2] = {FP_R(work), FP_W(out)};
    rc = fp_stream_dispatch(s, p, b, 2, &push, sizeof push, 1, 1, 1);
    if (!rc && body)
        note(body); /* the variant that read the gradients, not the final sum */
    return rc;
}

int fp_grad_clip(fp_stream *s, fp_tensor *const *grads, int count, const fp_tensor *norm_out)
{
    const char *op = "grad_clip";
    int rc;
    if (!s || !grads || count < 0)
        return fp_seterr(FP_EINVAL, "%s: NULL argument or negative count", op);
    if ((rc = need_f32(op, "norm_out", norm_out)) || (rc = need_numel(op, "norm_out", norm_out, 2)))
        return rc;
    for (int i = 0; i < count; i++) {
        char what[32];
        snprintf(what, sizeof what, "grads[%d]", i);
        if ((rc = need_f32(op, what, grads[i])) || (rc = too_big(op, fp_tensor_numel(grads[i]))))
            return rc;
        int64_t n = fp_tensor_numel(grads[i]);
        struct norm_push push = {0, 0, 0.0f, 0, 0};
        fp_binding b[2] = {FP_W(grads[i]), FP_R(norm_out)};
        if ((rc = ew_split(s, "gradnorm_clip", b, 2, &push, sizeof push, n)))
            return rc;
    }
    return 0;
}

/* ---- optimizers ------------------------------------------------------------------ */

struct optim_push {
    uint32_t n, off; /* set by ew_split */
    float lr, b1, b2, eps, wd;
    uint32_t t;
};

int fp_adamw_step(fp_stream *s, fp_tensor *p, const fp_tensor *g, fp_tensor *m, fp_tensor *v,
                  const fp_adamw_params *hp, const fp_tensor *gscale)
{
    const char *op = "adamw_step";
    int rc;
    if (!s || !hp)
        return fp_seterr(FP_EINVAL, "%s: NULL stream or params", op);
    if ((rc = need_f32(op, "p", p)) || (rc = need_f32(op, "g", g)) || (rc = need_f32(op, "m", m)) ||
        (rc = need_f32(op, "v", v)))
        return rc;
    int64_t n = fp_tensor_numel(p);
    if ((rc = need_numel(op, "g", g, n)) || (rc = need_numel(op, "m", m, n)) || (rc = need_numel(op, "v", v, n)) ||
        (rc = too_big(op, n)))
        return rc;
    if (gscale && ((rc = need_f32(op, "gscale", gscale)) || (rc = need_numel(op, "gscale", gscale, 2))))
        return rc;
    if (hp->step < 1)
        return fp_seterr(FP_EINVAL, "%s: step must be >= 1 (bias correction), got %u", op, hp->step);
    if (!(hp->beta1 >= 0 && hp->beta1 < 1 && hp->beta2 >= 0 && hp->beta2 < 1))
        return fp_seterr(FP_EINVAL, "%s: betas must lie in [0, 1) (got %g, %g)", op, hp->beta1, hp->beta2);
    struct optim_push push = {0, 0, hp->lr, hp->beta1, hp->beta2, hp->eps, hp->weight_decay, hp->step};
    fp_binding b[5] = {FP_W(p), FP_R(g), FP_W(m), FP_W(v), gscale ? FP_R(gscale) : FP_R(g)};
    static const int tex[5] = {4, 4, 4, 4, 0};
    return ew_split_tex(s, gscale ? "adamw_gs" : "adamw", b, gscale ? 5 : 4, tex, &push, sizeof push, n);
}

int fp_sgd_step(fp_stream *s, fp_tensor *p, const fp_tensor *g, float lr, float weight_decay,
                const fp_tensor *gscale)
{
    const char *op = "sgd_step";
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = need_f32(op, "p", p)) || (rc = need_f32(op, "g", g)))
        return rc;
    int64_t n = fp_tensor_numel(p);
    if ((rc = need_numel(op, "g", g, n)) || (rc = too_big(op, n)))
        return rc;
    if (gscale && ((rc = need_f32(op, "gscale", gscale)) || (rc = need_numel(op, "gscale", gscale, 2))))
        return rc;
    struct optim_push push = {0, 0, lr, 0, 0, 0, weight_decay, 1};
    fp_binding b[3] = {FP_W(p), FP_R(g), gscale ? FP_R(gscale) : FP_R(g)};
    static const int tex[3] = {4, 4, 0};
    return ew_split_tex(s, gscale ? "sgd_gs" : "sgd", b, gscale ? 3 : 2, tex, &push, sizeof push, n);
}

/* ---- conversions -------------------------------------------------------------- */

static const char *dt_tag(fp_dtype t)
{
    return t == FP_F32 ? "f32" : t == FP_F16 ? "f16" : t == FP_BF16 ? "bf16" : NULL;
}

int fp_convert(fp_stream *s, fp_tensor *dst, const fp_tensor *src)
{
    const char *op = "convert";
    int rc;
    if (!s || !dst || !src)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    if (!dt_tag(dst->dtype) || !dt_tag(src->dtype))
        return fp_seterr(FP_ESHAPE, "%s: %s -> %s is not supported (f32, f16, bf16 only)", op,
                         fp_dtype_name(src->dtype), fp_dtype_name(dst->dtype));
    int64_t n = fp_tensor_numel(src);
    if ((rc = need_numel(op, "dst", dst, n)) || (rc = too_big(op, n)))
        return rc;
    if (dst->dtype == src->dtype)
        return fp_op_copy(s, dst, src);
    char name[32];
    snprintf(name, sizeof name, "convert_%s_%s", dt_tag(src->dtype), dt_tag(dst->dtype));
    fp_binding b[2] = {FP_R(src), FP_W(dst)};
    /* groups of four elements (vec4 / two words), then the rest two per word */
    int64_t nv = n / 4, tail = n % 4;
    char vname[40];
    snprintf(vname, sizeof vname, "%s_vec4", name);
    if (nv) {
        uint32_t push[2] = {(uint32_t)nv, 0};
        if ((rc = ew_dispatch(s, vname, b, 2, push, sizeof push, nv)))
            return rc;
    }
    if (tail) {
        uint32_t push[2] = {(uint32_t)n, (uint32_t)(nv * 2)};
        if ((rc = ew_dispatch(s, name, b, 2, push, sizeof push, (tail + 1) / 2)))
            return rc;
    }
    if (nv)
        snprintf(g_last, sizeof g_last, "%s", vname);
    return 0;
}

/* ---- benchmark ------------------------------------------------------------------ */

#include <cJSON.h>
#include <stdlib.h>

#include "fedproxy/ops_lora.h"

typedef int (*bench_rec)(fp_stream *s, fp_tensor **t, float f);

typedef struct bench_call {
    bench_rec rec;
    fp_tensor **t;
    float f;
} bench_call;

static int bench_call_record(fp_stream *s, void *arg)
{
    bench_call *c = arg;
    return c->rec(s, c->t, c->f);
}

/* Best seconds per call over `trials` submissions of at least `reps` recorded
 * calls (more where a call is short next to the queue's round trip:
 * bench_reps.h), after one warm-up run. */
static int bench_time(fp_stream *s, bench_rec rec, fp_tensor **t, float f, int reps, int trials, double *best)
{
    bench_call c = {rec, t, f};
    return fp_bench_best(s, bench_call_record, &c, reps, trials, best, NULL);
}

static int rec_rms_fwd(fp_stream *s, fp_tensor **t, float f) { return fp_rmsnorm_fwd(s, t[1], t[2], t[0], t[3], 1e-5f); }
static int rec_rms_bwd(fp_stream *s, fp_tensor **t, float f)
{
    return fp_rmsnorm_bwd(s, t[4], t[5], t[1], t[0], t[3], t[2], 0);
}
static int rec_ce(fp_stream *s, fp_tensor **t, float f)
{
    int rc = fp_softmax_ce_fwd(s, t[2], t[3], t[4], t[0], t[1]);
    return rc ? rc : fp_softmax_ce_bwd(s, t[5], t[0], t[1], t[3], t[4], 1.0f);
}
static int rec_adamw(fp_stream *s, fp_tensor **t, float f)
{
    fp_adamw_params hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 10};
    return fp_adamw_step(s, t[0], t[1], t[2], t[3], &hp, NULL);
}
static int rec_conv(fp_stream *s, fp_tensor **t, float f) { return fp_convert(s, t[1], t[0]); }
static int rec_copy(fp_stream *s, fp_tensor **t, float f) { return fp_op_copy(s, t[1], t[0]); }
static int rec_lora(fp_stream *s, fp_tensor **t, float alpha)
{
    int rc = fp_lora_fwd(s, t[4], t[5], t[0], t[1], t[2], t[3], alpha);
    return rc ? rc : fp_lora_bwd(s, t[7], t[8], t[9], t[10], t[6], t[0], t[5], t[1], t[2], t[3], alpha, 0);
}

static int bench_new(fp_tensor **out, fp_ctx *ctx, fp_dtype dt, int64_t r, int64_t c, int fill)
{
    int64_t sh[2] = {r, c};
    int rc = fp_tensor_new(out, ctx, dt, 2, sh);
    if (rc || !fill)
        return rc;
    /* deterministic small values (0.01 .. 1): finite in every op */
    size_t n = (size_t)(r * c), es = fp_dtype_size(dt);
    void *h = malloc(n * es);
    if (!h)
        return fp_seterr(FP_ENOMEM, "bench: out of host memory");
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        float v = 0.01f + (float)(x >> 8) * (1.0f / 16777216.0f);
        if (dt == FP_F32)
            ((float *)h)[i] = v;
        else if (dt == FP_I32)
            ((int32_t *)h)[i] = (int32_t)((x >> 8) % (uint32_t)fill);
        else if (dt == FP_F16)
            ((uint16_t *)h)[i] = fp_ref_f32_to_f16(v);
        else
            ((uint16_t *)h)[i] = fp_ref_f32_to_bf16(v);
    }
    rc = fp_tensor_upload(*out, h, n * es);
    free(h);
    return rc;
}

static void free_all(fp_tensor **t, int n)
{
    for (int i = 0; i < n; i++) {
        fp_tensor_free(t[i]);
        t[i] = NULL;
    }
}

static void add_entry(cJSON *arr, const char *name, const char *shape, const char *variant, double sec,
                      double bytes, double flops, double tokens)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", name);
    cJSON_AddStringToObject(o, "shape", shape);
    cJSON_AddStringToObject(o, "variant", variant);
    cJSON_AddNumberToObject(o, "ms", sec * 1e3);
    if (bytes > 0)
        cJSON_AddNumberToObject(o, "gbps", bytes / sec / 1e9);
    if (flops > 0)
        cJSON_AddNumberToObject(o, "gflops", flops / sec / 1e9);
    if (tokens > 0)
        cJSON_AddNumberToObject(o, "tokens_per_s", tokens / sec);
    cJSON_AddItemToArray(arr, o);
}

int fp_bench_train_ops(fp_ctx *ctx, int quick, char **json_out)
{
    if (!ctx || !json_out)
        return fp_seterr(FP_EINVAL, "bench_train_ops: NULL argument");
    *json_out = NULL;
    fp_stream *s;
    int rc = fp_stream_new(&s, ctx);
    if (rc)
        return rc;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    const fp_profile *pr = fp_ctx_profile(ctx);
    cJSON_AddStringToObject(root, "family", "train");
    cJSON_AddStringToObject(root, "device", pr->name);
    cJSON_AddStringToObject(root, "overlay", pr->overlay);
    cJSON_AddBoolToObject(root, "quick", quick != 0);
    cJSON_AddItemToObject(root, "results", arr);
    fp_tensor *t[12] = {0};
    int trials = quick ? 2 : 3;
    char shape[64], var[128];
    double sec;

    /* device copy of 16M floats (quick: 1M): the bandwidth roof for the rest */
    int64_t n = quick ? (1 << 20) : (16 << 20);
    if ((rc = bench_new(&t[0], ctx, FP_F32, n, 1, 1)) || (rc = bench_new(&t[1], ctx, FP_F32, n, 1, 0)))
        goto out;
    snprintf(shape, sizeof shape, "%lld", (long long)n);
    if ((rc = bench_time(s, rec_copy, t, 0, 2, trials, &sec)))
        goto out;
    add_entry(arr, "copy_f32 (roof)", shape, "copy_vec4", sec, 8.0 * n, 0, 0);
    free_all(t, 12);

    /* RMSNorm */
    int64_t R = quick ? 256 : 1024, C = 2048;
    if ((rc = bench_new(&t[0], ctx, FP_F32, R, C, 1)) || (rc = bench_new(&t[1], ctx, FP_F32, R, C, 1)) ||
        (rc = bench_new(&t[2], ctx, FP_F32, R, 1, 0)) || (rc = bench_new(&t[3], ctx, FP_F32, 1, C, 1)) ||
        (rc = bench_new(&t[4], ctx, FP_F32, R, C, 0)) || (rc = bench_new(&t[5], ctx, FP_F32, 1, C, 0)))
        goto out;
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)R, (long long)C);
    if ((rc = bench_time(s, rec_rms_fwd, t, 0, 4, trials, &sec)))
        goto out;
    add_entry(arr, "rmsnorm_fwd", shape, fp_train_last_pipeline(), sec, 2.0 * R * C * 4, 0, 0);
    /* every reduction variant, for the record (the automatic choice is above) */
    {
        int saved = g_force;
        static const char *modes[] = {"sg", "sh", "rs"};
        for (int m = 0; m < 3 && !rc; m++) {
            if (m == RED_SG && !pr->subgroup_ops)
                continue;
            fp_train_force_reduce(modes[m]);
            rc = bench_time(s, rec_rms_fwd, t, 0, 4, trials, &sec);
            if (!rc)
                add_entry(arr, "rmsnorm_fwd (variant)", shape, fp_train_last_pipeline(), sec, 2.0 * R * C * 4, 0, 0);
        }
        g_force = saved;
        if (rc)
            goto out;
    }
    if ((rc = bench_time(s, rec_rms_bwd, t, 0, 4, trials, &sec)))
        goto out;
    snprintf(var, sizeof var, "rmsnorm_bwd + %s", fp_train_last_pipeline());
    add_entry(arr, "rmsnorm_bwd", shape, var, sec, 5.0 * R * C * 4, 0, 0);
    free_all(t, 12);

    /* softmax cross-entropy forward + backward (separate dlogits) */
    int64_t V = 8192;
    R = quick ? 256 : 1024;
    if ((rc = bench_new(&t[0], ctx, FP_F32, R, V, 1)) || (rc = bench_new(&t[1], ctx, FP_I32, R, 1, (int)V)) ||
        (rc = bench_new(&t[2], ctx, FP_F32, R, 1, 0)) || (rc = bench_new(&t[3], ctx, FP_F32, R, 1, 0)) ||
        (rc = bench_new(&t[4], ctx, FP_F32, 2, 1, 0)) || (rc = bench_new(&t[5], ctx, FP_F32, R, V, 0)))
        goto out;
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)R, (long long)V);
    if ((rc = bench_time(s, rec_ce, t, 0, 2, trials, &sec)))
        goto out;
    add_entry(arr, "softmax_ce_fwd_bwd", shape, "softmax_ce + ce_mean + softmax_ce_bwd", sec, 3.0 * R * V * 4, 0,
              0);
    free_all(t, 12);

    /* AdamW */
    if ((rc = bench_new(&t[0], ctx, FP_F32, n, 1, 1)) || (rc = bench_new(&t[1], ctx, FP_F32, n, 1, 1)) ||
        (rc = bench_new(&t[2], ctx, FP_F32, n, 1, 1)) || (rc = bench_new(&t[3], ctx, FP_F32, n, 1, 1)))
        goto out;
    snprintf(shape, sizeof shape, "%lld", (long long)n);
    if ((rc = bench_time(s, rec_adamw, t, 0, 1, trials, &sec)))
        goto out;
    add_entry(arr, "adamw", shape, fp_train_last_pipeline(), sec, 7.0 * n * 4, 0, 0);
    free_all(t, 12);

    /* conversions */
    static const fp_dtype pairs[][2] = {{FP_F32, FP_BF16}, {FP_BF16, FP_F32}, {FP_F32, FP_F16}, {FP_F16, FP_F32}};
    for (int k = 0; k < 4; k++) {
        if ((rc = bench_new(&t[0], ctx, pairs[k][0], n, 1, 1)) || (rc = bench_new(&t[1], ctx, pairs[k][1], n, 1, 0)))
            goto out;
        if ((rc = bench_time(s, rec_conv, t, 0, 2, trials, &sec)))
            goto out;
        char name[48];
        snprintf(name, sizeof name, "convert_%s_%s", fp_dtype_name(pairs[k][0]), fp_dtype_name(pairs[k][1]));
        add_entry(arr, name, shape, fp_train_last_pipeline(), sec, (double)n * 6, 0, 0);
        free_all(t, 12);
    }

    /* LoRA forward + backward, hidden 512, r 16 */
    int64_t N = quick ? 256 : 1024, H = 512, r = 16;
    static const fp_dtype wts[] = {FP_F32, FP_BF16};
    for (int k = 0; k < 2; k++) {
        if ((rc = bench_new(&t[0], ctx, FP_F32, N, H, 1)) || (rc = bench_new(&t[1], ctx, wts[k], H, H, 1)) ||
            (rc = bench_new(&t[2], ctx, FP_F32, r, H, 1)) || (rc = bench_new(&t[3], ctx, FP_F32, H, r, 1)) ||
            (rc = bench_new(&t[4], ctx, FP_F32, N, H, 0)) || (rc = bench_new(&t[5], ctx, FP_F32, N, r, 0)) ||
            (rc = bench_new(&t[6], ctx, FP_F32, N, H, 1)) || (rc = bench_new(&t[7], ctx, FP_F32, N, H, 0)) ||
            (rc = bench_new(&t[8], ctx, FP_F32, r, H, 0)) || (rc = bench_new(&t[9], ctx, FP_F32, H, r, 0)) ||
            (rc = bench_new(&t[10], ctx, FP_F32, N, r, 0)))
            goto out;
        snprintf(shape, sizeof shape, "N%lld in%lld out%lld r%lld W %s", (long long)N, (long long)H, (long long)H,
                 (long long)r, fp_dtype_name(wts[k]));
        if ((rc = bench_time(s, rec_lora, t, 16.0f, 1, trials, &sec)))
            goto out;
        double fl = 2.0 * N * H * H * 2 + 2.0 * N * H * r * 3 + 2.0 * N * r * H * 3;
        add_entry(arr, "lora_fwd_bwd", shape, fp_lora_last_pipeline(), sec, 0, fl, (double)N);
        free_all(t, 12);
    }
out:
    free_all(t, 12);
    fp_stream_free(s);
    if (!rc) {
        *json_out = cJSON_PrintUnformatted(root);
        if (!*json_out)
            rc = fp_seterr(FP_ENOMEM, "bench_train_ops: cannot print JSON");
    }
    cJSON_Delete(root);
    return rc;
}
