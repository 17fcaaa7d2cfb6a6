/* Host wrappers for shaders/attention/: RoPE, fused causal GQA attention
 * forward / backward / KV-cache decode, and the attention benchmark.
 *
 * Variant choice (see ops_attention.h): "sg" (subgroup shuffles, several rows
 * per invocation; CPU devices), "tiled" (shared-memory tiles sized from the
 * profile's shared memory; GPUs) and "direct" (no shared memory) as the
 * fallback; fp_pipeline_get_first walks them fastest first. All workgroups are
 * 64 invocations (8 for tiny row counts), within every profile's limits.
 * Backward: dq over query rows and dk/dv over key rows in two dispatches with
 * no dependency between them, each recomputing the probabilities from lse;
 * D_i = dout_i . o_i is computed inside both (no workspace). On GPUs with
 * few rows both also split their walk into chunks whose partial sums a reduce
 * pass adds (see "splits" below). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "bench_reps.h"
#include "error_internal.h"
#include "fedproxy/ops_attention.h"
#include "fedproxy/ops_basic.h"

#define WG 64
#define MAX_D 256
#define MAX_TILE 64
#define MAX_SPLIT 32
#define LOG2E 1.4426950408889634

/* ---- helpers ----------------------------------------------------------------- */

typedef struct dims4 {
    int64_t B, T, H, D;
} dims4;

static int get_dims(dims4 *out, const fp_tensor *t, const char *op, const char *what)
{
    if (!t)
        return fp_seterr(FP_EINVAL, "%s: %s is NULL", op, what);
    if (t->dtype != FP_F32)
        return fp_seterr(FP_ESHAPE, "%s: %s must be f32 (got %s)", op, what, fp_dtype_name(t->dtype));
    if (t->ndim == 4) {
        *out = (dims4){t->shape[0], t->shape[1], t->shape[2], t->shape[3]};
    } else if (t->ndim == 3) {
        *out = (dims4){1, t->shape[0], t->shape[1], t->shape[2]};
    } else {
        return fp_seterr(FP_ESHAPE, "%s: %s must be [B, T, H, D] or [T, H, D] (got %d dims)", op, what, t->ndim);
    }
    if (out->B < 1 || out->T < 1 || out->H < 1 || out->D < 1)
        return fp_seterr(FP_ESHAPE, "%s: %s has an empty dimension", op, what);
    if (fp_tensor_numel(t) > 0x7fffffffLL)
        return fp_seterr(FP_ESHAPE, "%s: %s has %lld elements; at most 2^31-1 supported", op, what,
                         (long long)fp_tensor_numel(t));
    return 0;
}

static int same_dims(const dims4 *a, const dims4 *b)
{
    return a->B == b->B && a->T == b->T && a->H == b->H && a->D == b->D;
}

static int overlaps(const fp_tensor *a, const fp_tensor *b)
{
    if (!a || !b || a->block != b->block)
        return 0;
    return a->offset < b->offset + b->nbytes && b->offset < a->offset + a->nbytes;
}

static const char *dstr(const dims4 *d, char *buf, size_t n)
{
    snprintf(buf, n, "[%lld, %lld, %lld, %lld]", (long long)d->B, (long long)d->T, (long long)d->H,
             (long long)d->D);
    return buf;
}

/* ---- variant choice ----------------------------------------------------------- */

typedef enum attn_kind { K_TILED = 0, K_DIRECT, K_SG } attn_kind;

/* Can the subgroup variant run here: shuffles, and every subgroup size the
 * profile allows holds the 8-lane row chunks. */
static int sg_ok(fp_ctx *ctx, uint32_t D)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    return p->subgroup_ops && p->subgroup_min >= 8 && D % 4 == 0;
}

static _Thread_local int g_force = -1;  /* fp_attention_force_variant */
static _Thread_local char g_last[64];   /* fp_attention_last_pipeline */

/* "tiled" | "direct" | "sg" -> kind, anything else -1 */
static int kind_of(const char *name)
{
    static const char *names[] = {"tiled", "direct", "sg"};
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}

int fp_attention_force_variant(const char *name)
{
    if (!name || !*name) {
        g_force = -1;
        return 0;
    }
    int k = kind_of(name);
    if (k < 0)
        return fp_seterr(FP_EINVAL, "attention: unknown variant '%s' (tiled, direct, sg)", name);
    g_force = k;
    return 0;
}

const char *fp_attention_last_pipeline(void) { return g_last; }

/* Forced (this thread), then $FP_ATTN_VARIANT, then fp-probe's tuned
 * "attention.variant" (an unknown value is ignored), then the heuristic. */
static attn_kind preferred(fp_ctx *ctx)
{
    if (g_force >= 0)
        return (attn_kind)g_force;
    int k = kind_of(getenv("FP_ATTN_VARIANT"));
    if (k < 0)
        k = kind_of(fp_measured_tune_get(fp_ctx_measured(ctx), "attention.variant"));
    if (k >= 0)
        return (attn_kind)k;
    const fp_profile *p = fp_ctx_profile(ctx);
    if (p->vendor == FP_VENDOR_MESA_CPU)
        return p->subgroup_ops && p->subgroup_min >= 8 ? K_SG : K_DIRECT;
    return K_TILED;
}

const char *fp_attention_variant(fp_ctx *ctx)
{
    static const char *names[] = {"attn_tiled", "attn_direct", "attn_sg"};
    if (!ctx)
        return "none";
    attn_kind k = preferred(ctx);
    if (k == K_SG && !sg_ok(ctx, 8))
        k = K_DIRECT;
    return names[k];
}

/* Tile length for `per_row` bytes of shared memory per tile row (plus fixed bytes). */
static uint32_t tile_len(fp_ctx *ctx, uint32_t per_row, uint32_t fixed)
{
    uint32_t shared = fp_ctx_profile(ctx)->shared_mem;
    uint32_t n = shared > fixed ? (shared - fixed) / per_row : 0;
    if (n > MAX_TILE)
        n = MAX_TILE;
    n &= ~7u; /* a multiple of the kernels' 8-key (8-row) unrolled chunk */
    return n;
}

/* Query (or key) rows per invocation of the subgroup variant: more rows reuse
 * each loaded K/V value more; bounded by registers. */
static uint32_t sg_rows(uint32_t D, int kernel)
{
    if (kernel >= 2) /* backward: three or four D-vectors per row; 4 rows measured no faster
                      * on lavapipe and took twice as long to compile */
        return D <= 128 ? 2 : 1;
    return D <= 64 ? 4 : D <= 128 ? 2 : 1;
}

/* Picks the variant of shader family `base` (e.g. "attn_fwd"): the preferred
 * one first (sg only where the profile allows it and `has_sg`), then tiled
 * (with tile length `tile`, if any fits) and direct as fallbacks.
 * *rows_per_wg gets the rows one workgroup covers, *tile_out (if not NULL)
 * the chosen variant's tile length (constant 4). */
static int get_pipe_tile(fp_pipeline **out, uint32_t *rows_per_wg, uint32_t *tile_out, fp_ctx *ctx,
                         const char *base, uint32_t D, uint32_t tile, uint32_t direct_tile, int has_sg,
                         uint32_t wg)
{
    char names[3][64];
    static const char *suffix[3] = {"tiled", "direct", "sg"};
    for (int i = 0; i < 3; i++)
        snprintf(names[i], sizeof names[i], "%s_%s", base, suffix[i]);
    uint32_t st[5] = {wg, 1, 1, D, tile ? tile : 8};
    uint32_t sd[5] = {wg, 1, 1, D, direct_tile};
    uint32_t ss[6] = {wg, 1, 1, D, 8, sg_rows(D, has_sg)};
    fp_variant v[3];
    uint32_t rows[3];
    uint32_t n = 0;
    attn_kind k = preferred(ctx);
    if (k == K_SG && !(has_sg && sg_ok(ctx, D)))
        k = K_DIRECT;
    if (k == K_SG) {
        rows[n] = wg * ss[5];
        v[n++] = (fp_variant){names[K_SG], ss, 6};
    }
    if (k != K_DIRECT && tile) {
        rows[n] = wg;
        v[n++] = (fp_variant){names[K_TILED], st, 5};
    }
    rows[n] = wg;
    v[n++] = (fp_variant){names[K_DIRECT], sd, 5};
    if (k == K_DIRECT && tile) {
        rows[n] = wg;
        v[n++] = (fp_variant){names[K_TILED], st, 5};
    }
    uint32_t chosen = 0;
    int rc = fp_pipeline_get_first(out, &chosen, ctx, v, n);
    *rows_per_wg = rows[chosen < n ? chosen : 0];
    if (tile_out)
        *tile_out = v[chosen < n ? chosen : 0].spec[4];
    if (!rc)
        snprintf(g_last, sizeof g_last, "%s", v[chosen < n ? chosen : 0].name);
    return rc;
}

static int get_pipe(fp_pipeline **out, uint32_t *rows_per_wg, fp_ctx *ctx, const char *base, uint32_t D,
                    uint32_t tile, uint32_t direct_tile, int has_sg, uint32_t wg)
{
    return get_pipe_tile(out, rows_per_wg, NULL, ctx, base, D, tile, direct_tile, has_sg, wg);
}

/* ---- RoPE --------------------------------------------------------------------- */

static int rope_common(fp_stream *s, fp_tensor *y, const fp_tensor *x, const fp_rope_desc *d, float sgn,
                       const char *op)
{
    if (!s || !d)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    dims4 dx, dy;
    int rc = get_dims(&dx, x, op, "x");
    if (!rc)
        rc = get_dims(&dy, y, op, "y");
    if (rc)
        return rc;
    char b1[96], b2[96];
    if (!same_dims(&dx, &dy))
        return fp_seterr(FP_ESHAPE, "%s: y is %s but x is %s", op, dstr(&dy, b1, sizeof b1), dstr(&dx, b2, sizeof b2));
    if (dx.D % 2)
        return fp_seterr(FP_ESHAPE, "%s: head dim %lld must be even", op, (long long)dx.D);
    if (!(d->theta > 1.0f) || !isfinite(d->theta))
        return fp_seterr(FP_EINVAL, "%s: rope_theta %g must be > 1", op, (double)d->theta);
    if (d->start_pos < 0 || d->start_pos + dx.T > (1LL << 24))
        return fp_seterr(FP_EINVAL, "%s: positions %lld..%lld out of range (0..2^24)", op, (long long)d->start_pos,
                         (long long)(d->start_pos + dx.T - 1));
    if (y != x && overlaps(x, y))
        return fp_seterr(FP_EINVAL, "%s: y partially overlaps x (use y == x for in place)", op);
    double c = log2((double)d->theta) / (double)dx.D;
    float c_hi = (float)c;
    struct {
        uint32_t npairs, H, T, half_d, D, start_pos;
        float c_hi, c_lo, sgn;
    } push = {(uint32_t)(fp_tensor_numel(x) / 2), (uint32_t)dx.H, (uint32_t)dx.T, (uint32_t)(dx.D / 2),
              (uint32_t)dx.D, (uint32_t)d->start_pos, c_hi, (float)(c - (double)c_hi), sgn};
    fp_ctx *ctx = fp_stream_ctx(s);
    uint32_t spec[3] = {WG, 1, 1};
    fp_pipeline *p;
    rc = fp_pipeline_get(&p, ctx, "rope_f32", spec, 3);
    if (rc)
        return rc;
    uint32_t gx, gy;
    fp_grid_1d(push.npairs, WG, &gx, &gy);
    fp_binding b[2] = {FP_R(x), FP_W(y)};
    return fp_stream_dispatch(s, p, b, 2, &push, sizeof push, gx, gy, 1);
}

int fp_rope(fp_stream *s, fp_tensor *y, const fp_tensor *x, const fp_rope_desc *d)
{
    return rope_common(s, y, x, d, 1.0f, "rope");
}

int fp_rope_backward(fp_stream *s, fp_tensor *dx, const fp_tensor *dy, const fp_rope_desc *d)
{
    return rope_common(s, dx, dy, d, -1.0f, "rope_backward");
}

/* ---- attention: shapes ------------------------------------------------------- */

static int check_qkv(const char *op, dims4 *dq, dims4 *dk, const fp_tensor *q, const fp_tensor *k,
                     const fp_tensor *v, int same_t)
{
    dims4 dv;
    int rc = get_dims(dq, q, op, "q");
    if (!rc)
        rc = get_dims(dk, k, op, "k");
    if (!rc)
        rc = get_dims(&dv, v, op, "v");
    if (rc)
        return rc;
    char b1[96], b2[96];
    if (!same_dims(dk, &dv))
        return fp_seterr(FP_ESHAPE, "%s: v is %s but k is %s", op, dstr(&dv, b1, sizeof b1), dstr(dk, b2, sizeof b2));
    if (dq->B != dk->B || dq->D != dk->D || (same_t && dq->T != dk->T))
        return fp_seterr(FP_ESHAPE, "%s: q %s and k %s disagree in batch, %shead dim", op, dstr(dq, b1, sizeof b1),
                         dstr(dk, b2, sizeof b2), same_t ? "sequence length or " : "");
    if (dq->H % dk->H)
        return fp_seterr(FP_ESHAPE, "%s: %lld query heads are not a multiple of %lld kv heads", op, (long long)dq->H,
                         (long long)dk->H);
    if (dq->D > MAX_D)
        return fp_seterr(FP_EUNSUPPORTED, "%s: head dim %lld > %d not supported", op, (long long)dq->D, MAX_D);
    if ((dq->T * (dq->H / dk->H) + WG - 1) / WG > 65535 || dq->B > 65535 || dk->H * MAX_SPLIT > 65535)
        return fp_seterr(FP_ESHAPE, "%s: grid too large (T=%lld, B=%lld)", op, (long long)dq->T, (long long)dq->B);
    return 0;
}

static int check_like(const char *op, const char *what, const fp_tensor *t, const dims4 *want)
{
    dims4 d;
    int rc = get_dims(&d, t, op, what);
    if (rc)
        return rc;
    char b1[96], b2[96];
    if (!same_dims(&d, want))
        return fp_seterr(FP_ESHAPE, "%s: %s is %s, expected %s", op, what, dstr(&d, b1, sizeof b1),
                         dstr(want, b2, sizeof b2));
    return 0;
}

static int check_lse(const char *op, const fp_tensor *lse, const dims4 *dq)
{
    if (!lse)
        return fp_seterr(FP_EINVAL, "%s: lse is NULL", op);
    int64_t want = dq->B * dq->H * dq->T;
    if (lse->dtype != FP_F32 || fp_tensor_numel(lse) != want)
        return fp_seterr(FP_ESHAPE, "%s: lse must be f32 [B=%lld, Hq=%lld, T=%lld] (%lld elements; got %s with %lld)",
                         op, (long long)dq->B, (long long)dq->H, (long long)dq->T, (long long)want,
                         fp_dtype_name(lse->dtype), (long long)fp_tensor_numel(lse));
    return 0;
}

static float scale_of(const fp_attn_desc *d, int64_t D)
{
    return d && d->scale != 0.0f ? d->scale : (float)(1.0 / sqrt((double)D));
}

typedef struct fwd_push {
    uint32_t Tq, Tk, kv_rows, Hq, Hkv, G, q_pos0, causal, split_len, nsplit, split_out;
    float scale_log2;
    uint32_t has_lse;
} fwd_push;

/* Forward / decode pipeline; few rows (decode: one token's heads of one kv
 * head) get 8-invocation workgroups instead of 64 idle ones. */
static int fwd_pipe(fp_pipeline **p, uint32_t *rows_per_wg, fp_ctx *ctx, uint32_t D, int64_t rows)
{
    uint32_t wg = rows <= 8 * (int64_t)sg_rows(D, 1) ? 8 : WG;
    return get_pipe(p, rows_per_wg, ctx, "attn_fwd", D, tile_len(ctx, 8 * D, 0), 16, 1, wg);
}

int fp_attention_forward(fp_stream *s, fp_tensor *o, fp_tensor *lse, const fp_tensor *q, const fp_tensor *k,
                         const fp_tensor *v, const fp_attn_desc *d)
{
    const char *op = "attention_forward";
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    dims4 dq, dk;
    int rc = check_qkv(op, &dq, &dk, q, k, v, 1);
    if (!rc)
        rc = check_like(op, "o", o, &dq);
    if (!rc && lse)
        rc = check_lse(op, lse, &dq);
    if (rc)
        return rc;
    if (overlaps(o, q) || overlaps(o, k) || overlaps(o, v) || (lse && overlaps(lse, o)))
        return fp_seterr(FP_EINVAL, "%s: o/lse must not alias the inputs", op);
    fp_ctx *ctx = fp_stream_ctx(s);
    fp_pipeline *p;
    uint32_t rpw;
    rc = fwd_pipe(&p, &rpw, ctx, (uint32_t)dq.D, dq.T * (dq.H / dk.H));
    if (rc)
        return rc;
    uint32_t G = (uint32_t)(dq.H / dk.H);
    fwd_push pc = {(uint32_t)dq.T, (uint32_t)dq.T, (uint32_t)dq.T, (uint32_t)dq.H, (uint32_t)dk.H, G, 0,
                   d ? (uint32_t)(d->causal != 0) : 1u, (uint32_t)dq.T, 1, 0,
                   (float)(scale_of(d, dq.D) * LOG2E), lse != NULL};
    fp_binding b[5] = {FP_R(q), FP_R(k), FP_R(v), FP_W(o), FP_W(lse ? lse : o)};
    uint32_t gx = (uint32_t)((dq.T * G + rpw - 1) / rpw);
    return fp_stream_dispatch(s, p, b, 5, &pc, sizeof pc, gx, (uint32_t)dk.H, (uint32_t)dq.B);
}

int64_t fp_attention_decode_workspace(int64_t B, int64_t Tq, int64_t Hq, int64_t D, int64_t t_max)
{
    int64_t ns = (t_max + 63) / 64;
    if (ns > MAX_SPLIT)
        ns = MAX_SPLIT;
    if (ns < 1)
        ns = 1;
    return ns * B * Tq * Hq * (D + 1);
}

int fp_attention_decode(fp_stream *s, fp_tensor *o, const fp_tensor *q, const fp_tensor *k_cache,
                        const fp_tensor *v_cache, int64_t pos, const fp_attn_desc *d, fp_tensor *workspace)
{
    const char *op = "attention_decode";
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    dims4 dq, dk;
    int rc = check_qkv(op, &dq, &dk, q, k_cache, v_cache, 0);
    if (!rc)
        rc = check_like(op, "o", o, &dq);
    if (rc)
        return rc;
    if (pos < 0 || pos + dq.T > dk.T)
        return fp_seterr(FP_ESHAPE, "%s: %lld new tokens at position %lld do not fit a cache of %lld rows", op,
                         (long long)dq.T, (long long)pos, (long long)dk.T);
    if (overlaps(o, q) || overlaps(o, k_cache) || overlaps(o, v_cache))
        return fp_seterr(FP_EINVAL, "%s: o must not alias the inputs", op);
    fp_ctx *ctx = fp_stream_ctx(s);
    fp_pipeline *p;
    uint32_t rpw;
    rc = fwd_pipe(&p, &rpw, ctx, (uint32_t)dq.D, dq.T * (dq.H / dk.H));
    if (rc)
        return rc;
    uint32_t G = (uint32_t)(dq.H / dk.H);
    uint32_t Tk = (uint32_t)(pos + dq.T);
    uint32_t gx = (uint32_t)((dq.T * G + rpw - 1) / rpw);
    uint32_t groups = gx * (uint32_t)dk.H * (uint32_t)dq.B;
    /* split so that about 32 workgroups run, chunks of at least 64 keys */
    uint32_t ns = groups >= 32 ? 1 : (32 + groups - 1) / groups;
    uint32_t max_ns = (Tk + 63) / 64;
    if (ns > max_ns)
        ns = max_ns;
    if (ns > MAX_SPLIT)
        ns = MAX_SPLIT;
    int64_t per_split = dq.B * dq.T * dq.H * (dq.D + 1);
    if (workspace) {
        if (workspace->dtype != FP_F32 || fp_tensor_numel(workspace) > 0x7fffffffLL)
            return fp_seterr(FP_ESHAPE, "%s: workspace must be f32 with at most 2^31-1 elements", op);
        if (overlaps(workspace, o) || overlaps(workspace, q) || overlaps(workspace, k_cache) ||
            overlaps(workspace, v_cache))
            return fp_seterr(FP_EINVAL, "%s: workspace must not alias the other tensors", op);
        int64_t fit = fp_tensor_numel(workspace) / per_split;
        if ((int64_t)ns > fit)
            ns = (uint32_t)(fit > 0 ? fit : 1);
    } else {
        ns = 1;
    }
    uint32_t split_len = (Tk + ns - 1) / ns;
    split_len = (split_len + 15) / 16 * 16;
    ns = (Tk + split_len - 1) / split_len;
    fwd_push pc = {(uint32_t)dq.T, Tk, (uint32_t)dk.T, (uint32_t)dq.H, (uint32_t)dk.H, G, (uint32_t)pos, 1,
                   split_len, ns, ns > 1, (float)(scale_of(d, dq.D) * LOG2E), 0};
    if (ns <= 1) {
        fp_binding b[5] = {FP_R(q), FP_R(k_cache), FP_R(v_cache), FP_W(o), FP_W(o)};
        return fp_stream_dispatch(s, p, b, 5, &pc, sizeof pc, gx, (uint32_t)dk.H, (uint32_t)dq.B);
    }
    fp_binding b[5] = {FP_R(q), FP_R(k_cache), FP_R(v_cache), FP_W(workspace), FP_W(workspace)};
    rc = fp_stream_dispatch(s, p, b, 5, &pc, sizeof pc, gx, (uint32_t)dk.H * ns, (uint32_t)dq.B);
    if (rc)
        return rc;
    uint32_t spec[3] = {WG, 1, 1};
    fp_pipeline *pcmb;
    rc = fp_pipeline_get(&pcmb, ctx, "attn_combine", spec, 3);
    if (rc)
        return rc;
    struct {
        uint32_t n, B, Tq, Hq, D, nsplit;
    } cp = {(uint32_t)fp_tensor_numel(o), (uint32_t)dq.B, (uint32_t)dq.T, (uint32_t)dq.H, (uint32_t)dq.D, ns};
    uint32_t cx, cy;
    fp_grid_1d(cp.n, WG, &cx, &cy);
    fp_binding cb[2] = {FP_R(workspace), FP_W(o)};
    return fp_stream_dispatch(s, pcmb, cb, 2, &cp, sizeof cp, cx, cy, 1);
}

/* ---- backward: query-range (dk/dv) and key-range (dq) splits ------------------------
 *
 * Why: attn_bwd_dkv runs one invocation per key row per kv head (2 rows for
 * sg), each walking every query row i >= j of its G query heads serially. On
 * the benchmark model (T 256, Hq 8, Hkv 2, D 64, B 1: 512 key rows = 8
 * workgroups of 64) an NVIDIA H100 (132 SMs) is almost idle:
 * attn_bwd_dkv_tiled measured 1.07 ms per layer (8.5 of a 40 ms LoRA step)
 * against 0.18 ms for attn_bwd_dq and 0.13 ms for attn_fwd. Splitting the
 * query range into S chunks gives S times the workgroups and cuts the longest
 * walk (key row 0: T*G query rows) to chunk_len*G; attn_reduce_dkv then sums
 * the S partial slices (2*S*B*T*Hkv*D floats of stream scratch) in fixed
 * order, so results are deterministic. attn_bwd_dq (one invocation per query
 * row walking its keys j <= i: 32 workgroups there) splits its key range the
 * same way (S*B*T*Hq*D floats, attn_reduce_dq).
 * When: never on CPU devices (lavapipe has a handful of cores that a few
 * workgroups already fill; a split only adds a pass and scratch traffic). On
 * GPUs when the unsplit grid has fewer than SPLIT_TARGET_WG = 512 workgroups
 * (about 4 resident workgroups per SM of a 132-SM H100) and T >= SPLIT_MIN_T = 64:
 *     S = min(ceil(512 / workgroups), T / q, 16)
 * with q the chunk quantum in rows, so that every chunk holds at least one
 * whole tile: dk/dv ceil(BR / G) query rows, BR being the chosen variant's tile
 * of query-row x head entries (tiled: 64 on an H100 at D 64; direct 16; sg 8);
 * dq BC keys (the key tile: 64 tiled on an H100, 16 direct, 8 sg).
 * chunk_len = ceil(T / S) rounded up to a multiple of q.
 * H100 benchmark layer, tiled: dk/dv 8 workgroups -> S = min(64, 256/16, 16)
 * = 16 chunks of 16 query rows (one 64-entry tile each), 128 workgroups, the
 * causal upper-left half of which exit at once; longest walk 1024 -> 64
 * entries. dq 32 workgroups -> S = min(16, 256/64, 16) = 4 chunks of 64 keys;
 * longest walk 256 -> 64 keys.
 * Overrides (both kernels): fp_attention_force_split (this thread), then
 * $FP_ATTN_SPLIT = S, then the tuned key "attention.split" (written by
 * fp_attention_autotune; "0" or an unparsable value: no override): S >= 2
 * forces chunks of ceil(T / S) rows on any device (no rounding to q; at most
 * MAX_SPLIT), 1 disables splitting. A failed scratch allocation falls back to
 * the unsplit kernel. */
#define SPLIT_TARGET_WG 512u
#define SPLIT_MIN_T 64u
#define SPLIT_MAX_AUTO 16u

static _Thread_local int g_last_split = 1, g_last_split_dq = 1; /* fp_attention_last_split* */
static _Thread_local int g_force_split;                         /* fp_attention_force_split */

int fp_attention_force_split(int S)
{
    if (S < -1)
        return fp_seterr(FP_EINVAL, "attention: forced split %d (-1: GPU rule, 0: clear, >= 1: chunks)", S);
    g_force_split = S > (int)MAX_SPLIT ? (int)MAX_SPLIT : S;
    return 0;
}

int fp_attention_last_split(void) { return g_last_split; }

int fp_attention_last_split_dq(void) { return g_last_split_dq; }

/* "S" (an integer >= 1) -> S capped at MAX_SPLIT; anything else 0 */
static uint32_t parse_split(const char *v)
{
    if (!v || !*v)
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 1)
        return 0;
    return x > MAX_SPLIT ? MAX_SPLIT : (uint32_t)x;
}

/* Rows per chunk of a split backward kernel (T: unsplit). wgs: workgroups of
 * the unsplit grid; q: the chunk quantum in rows (see above). */
static uint32_t split_chunk_len(fp_ctx *ctx, uint32_t T, uint32_t wgs, uint32_t q)
{
    uint32_t S = g_force_split > 0 ? (uint32_t)g_force_split : 0;
    if (!S && !g_force_split)
        S = parse_split(getenv("FP_ATTN_SPLIT"));
    if (!S && !g_force_split)
        S = parse_split(fp_measured_tune_get(fp_ctx_measured(ctx), "attention.split"));
    if (S)
        return S >= 2 ? (T + S - 1) / S : T;
    const fp_profile *p = fp_ctx_profile(ctx);
    int cpu = fp_profile_is_cpu(p);
    if ((cpu && g_force_split != -1) || T < SPLIT_MIN_T || wgs >= SPLIT_TARGET_WG)
        return T;
    if (q < 1)
        q = 1;
    S = (SPLIT_TARGET_WG + wgs - 1) / wgs;
    if (S > T / q)
        S = T / q;
    if (S > SPLIT_MAX_AUTO)
        S = SPLIT_MAX_AUTO;
    if (S < 2)
        return T;
    uint32_t len = (T + S - 1) / S;
    return (len + q - 1) / q * q;
}

/* Stream scratch for `parts` x nsplit slices of n floats and the reduce
 * pipeline that sums them; NULL (error cleared: the caller runs unsplit) when
 * there is nothing to split or either cannot be had. */
static fp_tensor *split_scratch(fp_stream *s, fp_pipeline **reduce, const char *reduce_name, uint32_t nsplit,
                                int64_t n, int parts)
{
    if (nsplit < 2 || (int64_t)parts * nsplit * n > 0x7fffffffLL)
        return NULL;
    uint32_t spec[3] = {WG, 1, 1};
    fp_tensor *ws = NULL;
    int rc = fp_pipeline_get(reduce, fp_stream_ctx(s), reduce_name, spec, 3);
    if (!rc)
        rc = fp_stream_scratch(s, &ws, FP_F32, (int64_t)parts * nsplit * n);
    if (rc) {
        fp_errclear();
        return NULL;
    }
    return ws;
}

/* out (and out2, for dk/dv) = the fixed-order sum of ws's slices; rows of HD
 * floats, T rows per batch. */
static int split_reduce(fp_stream *s, fp_pipeline *p, fp_tensor *ws, fp_tensor *out, fp_tensor *out2, uint32_t T,
                        uint32_t HD, uint32_t chunk, uint32_t nsplit, uint32_t causal)
{
    struct {
        uint32_t n, T, HD, chunk_len, nsplit, causal;
    } rp = {(uint32_t)fp_tensor_numel(out), T, HD, chunk, nsplit, causal};
    uint32_t cx, cy;
    fp_grid_1d(rp.n, WG, &cx, &cy);
    fp_binding b[3] = {FP_R(ws), FP_W(out), FP_W(out2 ? out2 : out)};
    return fp_stream_dispatch(s, p, b, out2 ? 3 : 2, &rp, sizeof rp, cx, cy, 1);
}

int fp_attention_backward(fp_stream *s, fp_tensor *dq_t, fp_tensor *dk_t, fp_tensor *dv_t, const fp_tensor *dout,
                          const fp_tensor *q, const fp_tensor *k, const fp_tensor *v, const fp_tensor *o,
                          const fp_tensor *lse, const fp_attn_desc *d)
{
    const char *op = "attention_backward";
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    dims4 dq, dk;
    int rc = check_qkv(op, &dq, &dk, q, k, v, 1);
    if (!rc)
        rc = check_like(op, "o", o, &dq);
    if (!rc)
        rc = check_like(op, "dout", dout, &dq);
    if (!rc)
        rc = check_like(op, "dq", dq_t, &dq);
    if (!rc)
        rc = check_like(op, "dk", dk_t, &dk);
    if (!rc)
        rc = check_like(op, "dv", dv_t, &dk);
    if (!rc)
        rc = check_lse(op, lse, &dq);
    if (rc)
        return rc;
    const fp_tensor *ins[6] = {dout, q, k, v, o, lse};
    fp_tensor *outs[3] = {dq_t, dk_t, dv_t};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 6; j++)
            if (overlaps(outs[i], ins[j]))
                return fp_seterr(FP_EINVAL, "%s: gradients must not alias the inputs", op);
        for (int j = i + 1; j < 3; j++)
            if (overlaps(outs[i], outs[j]))
                return fp_seterr(FP_EINVAL, "%s: dq, dk and dv must be distinct", op);
    }
    fp_ctx *ctx = fp_stream_ctx(s);
    uint32_t D = (uint32_t)dq.D;
    fp_pipeline *pq, *pkv, *red_q = NULL, *red_kv = NULL;
    uint32_t rq, rkv, tq = 8, tkv = 8;
    rc = get_pipe_tile(&pq, &rq, &tq, ctx, "attn_bwd_dq", D, tile_len(ctx, 8 * D, 0), 16, 2, WG);
    if (!rc)
        rc = get_pipe_tile(&pkv, &rkv, &tkv, ctx, "attn_bwd_dkv", D, tile_len(ctx, 8 * D + 8, 0), 16, 2, WG);
    if (rc)
        return rc;
    uint32_t G = (uint32_t)(dq.H / dk.H), T = (uint32_t)dq.T, Hkv = (uint32_t)dk.H, B = (uint32_t)dq.B;
    uint32_t causal = d ? (uint32_t)(d->causal != 0) : 1u;
    float scale = scale_of(d, dq.D);
    /* grids and their splits (see above): dq over its keys, dk/dv over its queries */
    uint32_t gxq = (T * G + rq - 1) / rq, gxkv = (T + rkv - 1) / rkv;
    uint32_t cq = split_chunk_len(ctx, T, gxq * Hkv * B, tq);
    uint32_t ckv = split_chunk_len(ctx, T, gxkv * Hkv * B, tkv > G ? (tkv + G - 1) / G : 1);
    uint32_t sq = (T + cq - 1) / cq, skv = (T + ckv - 1) / ckv;
    int64_t nq = fp_tensor_numel(dq_t), nk = fp_tensor_numel(dk_t);
    fp_tensor *wq = split_scratch(s, &red_q, "attn_reduce_dq", sq, nq, 1);
    fp_tensor *wkv = split_scratch(s, &red_kv, "attn_reduce_dkv", skv, nk, 2);
    if (!wq) {
        sq = 1;
        cq = T;
    }
    if (!wkv) {
        skv = 1;
        ckv = T;
    }
    g_last_split = (int)skv;
    g_last_split_dq = (int)sq;
    typedef struct bwd_push {
        uint32_t T, Hq, Hkv, G, causal;
        float scale_log2, scale;
        uint32_t chunk_len, slice, dv_off; /* dv_off: dk/dv only */
    } bwd_push;
    bwd_push pcq = {T, (uint32_t)dq.H, Hkv, G, causal, (float)(scale * LOG2E), scale, cq, (uint32_t)nq, 0};
    bwd_push pckv = pcq;
    pckv.chunk_len = ckv;
    pckv.slice = (uint32_t)nk;
    pckv.dv_off = wkv ? skv * (uint32_t)nk : 0;
    fp_binding b1[7] = {FP_R(q), FP_R(k), FP_R(v), FP_R(o), FP_R(dout), FP_R(lse), FP_W(wq ? wq : dq_t)};
    rc = fp_stream_dispatch(s, pq, b1, 7, &pcq, sizeof pcq, gxq, Hkv * sq, B);
    if (rc)
        return rc;
    fp_binding b2[8] = {FP_R(q), FP_R(k), FP_R(v), FP_R(o), FP_R(dout), FP_R(lse), FP_W(wkv ? wkv : dk_t),
                        FP_W(wkv ? wkv : dv_t)};
    rc = fp_stream_dispatch(s, pkv, b2, 8, &pckv, sizeof pckv, gxkv, Hkv * skv, B);
    if (!rc && wq)
        rc = split_reduce(s, red_q, wq, dq_t, NULL, T, (uint32_t)(dq.H * dq.D), cq, sq, causal);
    if (!rc && wkv)
        rc = split_reduce(s, red_kv, wkv, dk_t, dv_t, T, Hkv * D, ckv, skv, causal);
    /* the reduces were the partials' last uses: later ops may reuse them */
    if (!rc && wq)
        rc = fp_stream_scratch_release(s, wq);
    if (!rc && wkv)
        rc = fp_stream_scratch_release(s, wkv);
    return rc;
}

/* ---- benchmark -------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fill_random(fp_tensor *t, uint32_t seed)
{
    int64_t n = fp_tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    if (!h)
        return fp_seterr(FP_ENOMEM, "bench_attention: out of memory");
    uint32_t x = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        h[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    }
    int rc = fp_tensor_upload(t, h, t->nbytes);
    free(h);
    return rc;
}

typedef struct bench_res {
    double fwd_s, bwd_s, decode_alone_s;
    int fwd_reps, bwd_reps, decode_reps;
} bench_res;

typedef struct bench_call {
    fp_tensor *o, *lse, *q, *k, *v, *dout, *dq, *dk, *dv, *q1, *o1, *ws;
    const fp_attn_desc *desc;
    int64_t T;
} bench_call;

static int bench_rec_fwd(fp_stream *s, void *arg)
{
    bench_call *c = arg;
    return fp_attention_forward(s, c->o, c->lse, c->q, c->k, c->v, c->desc);
}

static int bench_rec_bwd(fp_stream *s, void *arg)
{
    bench_call *c = arg;
    return fp_attention_backward(s, c->dq, c->dk, c->dv, c->dout, c->q, c->k, c->v, c->o, c->lse, c->desc);
}

static int bench_rec_decode(fp_stream *s, void *arg)
{
    bench_call *c = arg;
    return fp_attention_decode(s, c->o1, c->q1, c->k, c->v, c->T - 1, c->desc, c->ws);
}

static int bench_one(fp_ctx *ctx, int64_t T, int reps, bench_res *res, double *decode_s)
{
    const int64_t Hq = 8, Hkv = 2, D = 64;
    int64_t sq[4] = {1, T, Hq, D}, sk[4] = {1, T, Hkv, D}, sl[3] = {1, Hq, T};
    fp_tensor *q = NULL, *k = NULL, *v = NULL, *o = NULL, *lse = NULL, *dout = NULL, *dq = NULL, *dk = NULL,
              *dv = NULL, *q1 = NULL, *o1 = NULL, *ws = NULL;
    fp_stream *s = NULL;
    int rc = 0;
    fp_attn_desc desc = {0.0f, 1};
#define TRY(x)                                                                                         \
    do {                                                                                               \
        if ((rc = (x)) != 0)                                                                           \
            goto done;                                                                                 \
    } while (0)
    TRY(fp_tensor_new(&q, ctx, FP_F32, 4, sq));
    TRY(fp_tensor_new(&o, ctx, FP_F32, 4, sq));
    TRY(fp_tensor_new(&dout, ctx, FP_F32, 4, sq));
    TRY(fp_tensor_new(&dq, ctx, FP_F32, 4, sq));
    TRY(fp_tensor_new(&k, ctx, FP_F32, 4, sk));
    TRY(fp_tensor_new(&v, ctx, FP_F32, 4, sk));
    TRY(fp_tensor_new(&dk, ctx, FP_F32, 4, sk));
    TRY(fp_tensor_new(&dv, ctx, FP_F32, 4, sk));
    TRY(fp_tensor_new(&lse, ctx, FP_F32, 3, sl));
    TRY(fill_random(q, 1));
    TRY(fill_random(k, 2));
    TRY(fill_random(v, 3));
    TRY(fill_random(dout, 4));
    TRY(fp_stream_new(&s, ctx));
    /* best of reps submissions, each of as many calls as outlast the queue's
     * round trip (bench_reps.h; warm-up included) */
    memset(res, 0, sizeof *res);
    bench_call c = {.o = o, .lse = lse, .q = q, .k = k, .v = v, .dout = dout, .dq = dq, .dk = dk, .dv = dv,
                    .desc = &desc, .T = T};
    TRY(fp_bench_best(s, bench_rec_fwd, &c, 1, reps, &res->fwd_s, &res->fwd_reps));
    TRY(fp_bench_best(s, bench_rec_bwd, &c, 1, reps, &res->bwd_s, &res->bwd_reps));
    if (decode_s) {
        /* one new token at the last position of a T-row cache: per call in a
         * submission of many (throughput), and alone (the latency a one-token
         * submission sees, the queue's round trip included) */
        int64_t s1[4] = {1, 1, Hq, D};
        int64_t wn = fp_attention_decode_workspace(1, 1, Hq, D, T);
        TRY(fp_tensor_new(&q1, ctx, FP_F32, 4, s1));
        TRY(fp_tensor_new(&o1, ctx, FP_F32, 4, s1));
        TRY(fp_tensor_new(&ws, ctx, FP_F32, 1, &wn));
        TRY(fill_random(q1, 5));
        c.q1 = q1, c.o1 = o1, c.ws = ws;
        TRY(fp_bench_best(s, bench_rec_decode, &c, 1, reps * 4, decode_s, &res->decode_reps));
        res->decode_alone_s = 1e30;
        for (int r = 0; r < reps * 4; r++) {
            double t0 = now_s();
            TRY(bench_rec_decode(s, &c));
            TRY(fp_stream_run(s));
            double t1 = now_s();
            if (t1 - t0 < res->decode_alone_s)
                res->decode_alone_s = t1 - t0;
        }
    }
#undef TRY
done:
    fp_stream_free(s);
    fp_tensor *all[12] = {q, k, v, o, lse, dout, dq, dk, dv, q1, o1, ws};
    for (int i = 0; i < 12; i++)
        fp_tensor_free(all[i]);
    return rc;
}

int fp_bench_attention(fp_ctx *ctx, int quick, char **json_out)
{
    if (!ctx || !json_out)
        return fp_seterr(FP_EINVAL, "bench_attention: NULL argument");
    *json_out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return fp_seterr(FP_ENOMEM, "bench_attention: out of memory");
    cJSON_AddStringToObject(root, "op", "attention");
    cJSON_AddStringToObject(root, "device", fp_ctx_profile(ctx)->name);
    cJSON_AddStringToObject(root, "variant", fp_attention_variant(ctx));
    cJSON_AddStringToObject(root, "shape", "B=1 Hq=8 Hkv=2 D=64 causal f32");
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    static const int64_t Ts[2] = {256, 1024};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        int64_t T = Ts[i];
        bench_res r;
        double dec = 0;
        int reps = quick ? (T > 256 ? 1 : 2) : (T > 256 ? 3 : 5);
        rc = bench_one(ctx, T, reps, &r, &dec);
        if (rc)
            break;
        double flops = 4.0 * (double)T * (double)T * 64.0 * 8.0 / 2.0;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "seq", (double)T);
        cJSON_AddNumberToObject(e, "fwd_ms", r.fwd_s * 1e3);
        cJSON_AddNumberToObject(e, "fwd_tokens_per_s", (double)T / r.fwd_s);
        cJSON_AddNumberToObject(e, "fwd_gflops", flops / r.fwd_s / 1e9);
        cJSON_AddNumberToObject(e, "bwd_ms", r.bwd_s * 1e3);
        cJSON_AddNumberToObject(e, "bwd_tokens_per_s", (double)T / r.bwd_s);
        cJSON_AddNumberToObject(e, "bwd_gflops", 2.5 * flops / r.bwd_s / 1e9);
        cJSON_AddNumberToObject(e, "decode_ms", dec * 1e3);
        cJSON_AddNumberToObject(e, "decode_tokens_per_s", 1.0 / dec);
        cJSON_AddNumberToObject(e, "decode_alone_ms", r.decode_alone_s * 1e3);
        cJSON_AddNumberToObject(e, "fwd_calls_per_submit", r.fwd_reps);
        cJSON_AddNumberToObject(e, "bwd_calls_per_submit", r.bwd_reps);
        cJSON_AddNumberToObject(e, "decode_calls_per_submit", r.decode_reps);
        cJSON_AddItemToArray(arr, e);
    }
    if (!rc) {
        *json_out = cJSON_PrintUnformatted(root);
        if (!*json_out)
            rc = fp_seterr(FP_ENOMEM, "bench_attention: out of memory");
    }
    cJSON_Delete(root);
    return rc;
}
