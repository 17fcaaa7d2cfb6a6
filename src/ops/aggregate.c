/* Host wrappers for the aggregation shaders in shaders/aggregate/ (see
 * include/fedproxy/ops_aggregate.h for the semantics).
 *
 * Every op works on windows: a binding covers at most the device's storage
 * range, so [K, D] inputs are cut into row groups (reductions over clients are
 * accumulated group after group, in client order) and, when one row is larger
 * than a binding, column chunks, each bound through a window (ops/bind_window.h).
 * job_run below drives that for every streaming op. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/ops_aggregate.h"
#include "fedproxy/ops_basic.h"
#include "ops/aggregate_internal.h"
#include "ops/bind_window.h"

static _Thread_local char last_variant[48];

const char *fp_agg_last_variant(void) { return last_variant; }

/* fp_agg_force_set (aggregate_internal.h): the autotuner's candidate, this thread only */
static _Thread_local agg_force g_force;

void fp_agg_force_set(const agg_force *f)
{
    if (f)
        g_force = *f;
    else
        memset(&g_force, 0, sizeof g_force);
}

/* ---- device choices ----------------------------------------------------------- */

/* Workgroup size of the streaming kernels: 256 where allowed (fewer groups to
 * schedule), capped by the profile (64 under "minimal"); a tuned value
 * ("aggregate.wg") from fp-probe wins when present and allowed. */
static uint32_t stream_wg(const fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    uint32_t wg = 256;
    const char *t = fp_measured_tune_get(fp_ctx_measured(ctx), "aggregate.wg");
    if (t) {
        unsigned v = (unsigned)strtoul(t, NULL, 10);
        if (v >= 16 && v <= 1024 && (v & (v - 1)) == 0)
            wg = v;
    }
    while (wg > p->max_wg_invocations || wg > p->max_wg_size[0])
        wg >>= 1;
    return wg;
}

/* Reduction workgroups: small (64) everywhere; lavapipe's barrier trees are slow
 * past that (DESIGN.md section 5) and "minimal" allows no more. */
static uint32_t reduce_wg(const fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    uint32_t wg = 64;
    while (wg > p->max_wg_invocations || wg > p->max_wg_size[0])
        wg >>= 1;
    return wg;
}

/* Most clients one dispatch of a reduction walks per coordinate. GPUs: all that
 * fit one binding. CPU devices (lavapipe): each client row is a separate
 * memory stream and hardware prefetchers track only a few dozen, so groups
 * of 8 rows (re-reading the 4-byte output once per group) stream faster.
 * The blocked texel sums (blocked: wsum, ring sums, ties_masked with
 * TEX_ITEMS columns per invocation) read each row in 1 KiB runs and take 16:
 * K = 100, D = 2^20 on lavapipe (2 vCPUs), 12 alternating windows in one
 * process, median ms for 8 / 16 / 32 / 100 rows: wsum 81 / 60 / 59 / 56, ring
 * sum 93 / 80 / 85 / 86, ties_masked 113 / 81 / 77 / 81; clip, ties_trim and
 * norms (not blocked) showed no gain past 8.
 * fp-probe may tune it ("aggregate.rows"); FP_AGG_ROWS overrides (experiments). */
static int64_t max_rows(const fp_ctx *ctx, int blocked)
{
    const char *t = getenv("FP_AGG_ROWS");
    if (!t || !*t)
        t = fp_measured_tune_get(fp_ctx_measured(ctx), "aggregate.rows");
    if (t && atoll(t) > 0)
        return atoll(t);
    return fp_profile_is_cpu(fp_ctx_profile(ctx)) ? (blocked ? 16 : 8) : INT64_MAX;
}

static int use_vec4(const fp_ctx *ctx)
{
    const char *t = fp_measured_tune_get(fp_ctx_measured(ctx), "aggregate.vec4");
    return !(t && !strcmp(t, "0"));
}

/* Row groups of g rows and column chunks of dc columns such that a window of
 * X ((g-1)*D + dc elements) fits one binding. all_rows: g must be K. */
static int plan(const fp_ctx *ctx, const char *op, int64_t K, int64_t D, int all_rows, int blocked, int64_t *g,
                int64_t *dc)
{
    int64_t R = fp_win_max_elems(ctx);
    if (all_rows) {
        if ((K - 1) * D + 1 > R)
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: %lld clients x %lld coordinates need %lld elements in one binding, more than "
                             "%s's storage range allows (%lld); process column slabs [K, dc] or use the reference",
                             op, (long long)K, (long long)D, (long long)((K - 1) * D + 1), fp_ctx_profile(ctx)->name,
                             (long long)R);
        *g = K;
        int64_t c = R - (K - 1) * D;
        if (c > 64)
            c -= c % 64;
        *dc = c < D ? c : D;
        return 0;
    }
    if (D <= R) {
        int64_t r = R / D, cap = max_rows(ctx, blocked);
        if (r > cap)
            r = cap;
        *g = r < K ? r : K;
        *dc = D;
    } else {
        *g = 1;
        *dc = R - R % 64;
    }
    return 0;
}

/* ---- argument checks ------------------------------------------------------------- */

static int check_mat(const char *op, const char *name, const fp_tensor *X, fp_dtype dt, int64_t *K, int64_t *D)
{
    if (!X)
        return fp_seterr(FP_EINVAL, "%s: %s is NULL", op, name);
    if (X->dtype != dt || X->ndim != 2 || X->shape[0] < 1 || X->shape[1] < 1)
        return fp_seterr(FP_ESHAPE, "%s: %s must be a %s [K, D] tensor (got %s with %d dims, shape[0] = %lld)", op,
                         name, fp_dtype_name(dt), fp_dtype_name(X->dtype), X->ndim, (long long)X->shape[0]);
    if (X->shape[1] > 0xffffffffll)
        return fp_seterr(FP_ESHAPE, "%s: %s has %lld coordinates per client, more than 2^32-1", op, name,
                         (long long)X->shape[1]);
    *K = X->shape[0];
    *D = X->shape[1];
    return 0;
}

static int check_vec(const char *op, const char *name, const fp_tensor *v, fp_dtype dt, int64_t n)
{
    if (!v)
        return fp_seterr(FP_EINVAL, "%s: %s is NULL", op, name);
    if (v->dtype != dt || fp_tensor_numel(v) != n)
        return fp_seterr(FP_ESHAPE, "%s: %s must be %s with %lld elements (got %s with %lld)", op, name,
                         fp_dtype_name(dt), (long long)n, fp_dtype_name(v->dtype), (long long)fp_tensor_numel(v));
    return 0;
}

/* spec3: the shader's own specialization constant 3, or 0 for none */
static int get_pipe(fp_pipeline **p, fp_stream *s, const char *name, uint32_t wg, uint32_t spec3)
{
    uint32_t spec[4] = {wg, 1, 1, spec3};
    int rc = fp_pipeline_get(p, fp_stream_ctx(s), name, spec, spec3 ? 4 : 3);
    if (!rc)
        snprintf(last_variant, sizeof last_variant, "%s", name);
    return rc;
}

static int dispatch_1d(fp_stream *s, const char *name, uint32_t wg, uint32_t spec3, const fp_binding *b,
                       uint32_t nb, const void *push, uint32_t psize, uint32_t n)
{
    fp_pipeline *p;
    int rc = get_pipe(&p, s, name, wg, spec3);
    if (rc)
        return rc;
    uint32_t gx, gy;
    fp_grid_1d(n, wg, &gx, &gy);
    return fp_stream_dispatch(s, p, b, nb, push, psize, gx, gy, 1);
}

/* ---- the chunked driver ---------------------------------------------------------------------- */

/* Every streaming op below is one agg_job: a shader (and its "_vec4" sibling)
 * over operands that are [K, D] matrices, [D] vectors, or small per-client
 * tensors bound whole. job_run cuts the work into row groups and column
 * chunks (plan), binds each operand's window, and dispatches a vec4 body plus
 * a scalar tail where every window's offset allows it; the op only says how
 * its push constants are laid out. */
#define AGG_MAX_ARGS 4

enum { ARG_MAT, ARG_VEC, ARG_WHOLE };

typedef struct agg_arg {
    const fp_tensor *t;
    int kind;  /* ARG_MAT: [K, D], windowed by rows and columns; ARG_VEC: [D], by columns; ARG_WHOLE: as is */
    int write; /* bound FP_W (read-write) rather than FP_R */
    int tex;   /* the "_tex_vec4" variant also reads it as a uniform texel buffer of
                  this many components (4, or 1 for per-client scalars), at
                  FP_TEXEL_BINDING(its index); 0: storage only */
} agg_arg;

/* One dispatch: rows [k0, k0 + nk), coordinates [col, col + cnt * unit). */
typedef struct agg_tile {
    int64_t k0, nk, col;
    uint32_t cnt;               /* invocations: coordinates, or vec4s of them */
    uint32_t unit;              /* 4 in the vec4 body, 1 in the scalar tail */
    uint32_t ld;                /* row stride of ARG_MAT operands, in units */
    uint32_t off[AGG_MAX_ARGS]; /* each windowed operand's first element, in units (0 for ARG_WHOLE) */
    uint32_t acc;               /* 1: add to the output (a later row group, or the caller asked) */
} agg_tile;

/* Writes the shader's push constants for a tile into push (FP_PUSH_MAX bytes); returns their size. */
typedef uint32_t (*agg_push_fn)(void *push, const agg_tile *t, const void *user);

typedef struct agg_job {
    const char *op;     /* for messages */
    const char *shader; /* scalar variant; shader + "_vec4" too where has_vec4 */
    int has_vec4;
    int has_tex;        /* shader + "_tex_vec4": the vec4 body with texel reads (fp_ops_texel_reads) */
    int all_rows;       /* every client in one dispatch (order statistics) */
    int accumulate;
    uint32_t wg;
    uint32_t spec3; /* specialization constant 3 (0: none) */
    uint32_t tex_items, tex_wg; /* texel variant: vec4s per invocation (its constant 3) and workgroup (0: as scalar) */
    int64_t K, D;
    int nargs;
    agg_arg arg[AGG_MAX_ARGS];
    agg_push_fn push;
    const void *user;
} agg_job;

static int job_tile(fp_stream *s, const agg_job *j, int64_t k0, int64_t nk, int64_t d0, int64_t n)
{
    fp_ctx *ctx = fp_stream_ctx(s);
    fp_win w[AGG_MAX_ARGS];
    int rc = 0, opened = 0;
    for (; opened < j->nargs; opened++) {
        const agg_arg *a = &j->arg[opened];
        if (a->kind == ARG_WHOLE)
            w[opened] = (fp_win){a->t, NULL, 0};
        else if (a->kind == ARG_MAT)
            rc = fp_win_open(&w[opened], a->t, k0 * j->D + d0, (nk - 1) * j->D + n);
        else
            rc = fp_win_open(&w[opened], a->t, d0, n);
        if (rc)
            break;
    }
    /* vec4 body: every window starts on a vec4, and rows (if several) are whole vec4s apart */
    int vec = !rc && j->has_vec4 && use_vec4(ctx) && (nk == 1 || j->D % 4 == 0);
    for (int i = 0; i < opened && vec; i++)
        if (j->arg[i].kind != ARG_WHOLE && w[i].delta % 4)
            vec = 0;
    int64_t nv = vec ? n / 4 : 0;
    /* the vec4 body through texel buffers where every texel operand fits one */
    int tex = nv && j->has_tex && fp_ops_texel_reads(ctx);
    for (int i = 0; i < opened && tex; i++)
        if (j->arg[i].tex && !fp_ctx_texel_fits(ctx, w[i].t, (uint32_t)j->arg[i].tex))
            tex = 0;
    char vname[48];
    snprintf(vname, sizeof vname, "%s_%svec4", j->shader, tex ? "tex_" : "");
    fp_binding b[AGG_MAX_ARGS], bt[AGG_MAX_ARGS];
    for (int i = 0; i < opened; i++) {
        b[i] = j->arg[i].write ? FP_W(w[i].t) : FP_R(w[i].t);
        bt[i] = b[i];
        if (tex)
            bt[i].texel = j->arg[i].tex;
    }
    for (int pass = 0; pass < 2 && !rc; pass++) {
        int64_t cnt = pass == 0 ? nv : n - 4 * nv;
        if (!cnt)
            continue;
        uint32_t unit = pass == 0 ? 4 : 1, skip = pass ? (uint32_t)nv * 4 : 0;
        agg_tile t = {k0, nk, d0 + skip, (uint32_t)cnt, unit, (uint32_t)(nk > 1 ? j->D / unit : j->D), {0},
                      (k0 > 0 || j->accumulate) ? 1u : 0u};
        for (int i = 0; i < opened; i++)
            t.off[i] = j->arg[i].kind == ARG_WHOLE ? 0 : (w[i].delta + skip) / unit;
        _Alignas(8) unsigned char push[FP_PUSH_MAX];
        uint32_t psize = j->push(push, &t, j->user);
        uint32_t items = pass == 0 && tex && j->tex_items > 1 ? j->tex_items : 1;
        uint32_t wg = pass == 0 && tex && j->tex_wg ? j->tex_wg : j->wg;
        rc = dispatch_1d(s, pass == 0 ? vname : j->shader, wg, items > 1 ? items : j->spec3, pass == 0 ? bt : b,
                         (uint32_t)opened, push, psize, (uint32_t)((cnt + items - 1) / items));
    }
    if (!rc && nv)
        snprintf(last_variant, sizeof last_variant, "%s", vname); /* the body; a tail is scalar */
    for (int i = 0; i < opened; i++)
        fp_win_close(&w[i]);
    return rc;
}

static int job_run(fp_stream *s, const agg_job *j)
{
    int64_t g = 1, dc = 1;
    fp_ctx *ctx = fp_stream_ctx(s);
    int blocked = j->has_tex && j->tex_items > 1 && fp_ops_texel_reads(ctx);
    int rc = plan(ctx, j->op, j->K, j->D, j->all_rows, blocked, &g, &dc);
    for (int64_t k0 = 0; k0 < j->K && !rc; k0 += g)
        for (int64_t d0 = 0; d0 < j->D && !rc; d0 += dc)
            rc = job_tile(s, j, k0, j->K - k0 < g ? j->K - k0 : g, d0, j->D - d0 < dc ? j->D - d0 : dc);
    return rc ? fp_adderr(rc, "%s", j->op) : 0;
}

#define PUSH_OUT(p, q) (memcpy((p), &(q), sizeof(q)), (uint32_t)sizeof(q))

/* ---- weighted sum and ring sums ----------------------------------------------------------------- */

typedef struct red_user {
    uint32_t flags; /* wsum: 2 = weight from wscale; ring: 2 = subtract */
    float wscale;
} red_user;

static uint32_t push_wsum(void *p, const agg_tile *t, const void *user)
{
    const red_user *u = user;
    struct { uint32_t n, nk, ld, xoff, ooff, woff, flags; float wscale; } q = {
        t->cnt, (uint32_t)t->nk, t->ld, t->off[0], t->off[1], (uint32_t)t->k0, u->flags | t->acc, u->wscale};
    return PUSH_OUT(p, q);
}

static uint32_t push_ring(void *p, const agg_tile *t, const void *user)
{
    const red_user *u = user;
    uint32_t q[6] = {t->cnt, (uint32_t)t->nk, t->ld, t->off[0], t->off[1], u->flags | t->acc};
    return PUSH_OUT(p, q);
}

/* Blocking of the texel sums (wsum, axpy, ring sums): each invocation adds
 * TEX_ITEMS vec4 columns, strided by a workgroup of one subgroup (llvmpipe: its
 * SIMD width, 8), so that every client row is read in runs of 8 * TEX_ITEMS
 * contiguous texels rather than 8. On lavapipe (K x 2^20, best of 8 ops, three
 * alternating rounds): K = 10 8.9-12.5 ms against 9.0-17.6 unblocked, K = 100
 * 50-73 against 69-130 ms; 16 items was no better. */
#define TEX_ITEMS 8
static uint32_t tex_sum_wg(const fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    uint32_t wg = p->subgroup_size;
    if (wg < 4 || (wg & (wg - 1)))
        wg = 64;
    while (wg > p->max_wg_invocations || wg > p->max_wg_size[0])
        wg >>= 1;
    return wg;
}

static int red_job(fp_stream *s, const char *op, int ring, const red_user *u, fp_tensor *out, const fp_tensor *X,
                   const fp_tensor *w, int64_t K, int64_t D, int accumulate)
{
    /* the texel variant fetches the weights one per texel (FP_TEX1, binding 2;
     * once per client and invocation, shared by its TEX_ITEMS columns). axpy
     * (no weights): x stands in, so that the binding is valid; with flag 2 it
     * is never read there */
    agg_arg wa = w ? (agg_arg){w, ARG_WHOLE, 0, 1} : (agg_arg){X, ARG_VEC, 0, 1};
    agg_job j = {.op = op, .shader = ring ? "agg_ring_sum" : "agg_wsum", .has_vec4 = 1, .has_tex = 1,
                 .accumulate = accumulate, .wg = stream_wg(fp_stream_ctx(s)), .K = K, .D = D, .nargs = ring ? 2 : 3,
                 .tex_items = TEX_ITEMS, .tex_wg = tex_sum_wg(fp_stream_ctx(s)),
                 .arg = {{X, ARG_MAT, 0, 4}, {out, ARG_VEC, 1, 4}, wa},
                 .push = ring ? push_ring : push_wsum, .user = u};
    return job_run(s, &j);
}

int fp_agg_wsum(fp_stream *s, fp_tensor *out, const fp_tensor *X, const fp_tensor *w, int accumulate)
{
    const char *op = "aggregate wsum";
    int64_t K, D;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    int rc = check_mat(op, "X", X, FP_F32, &K, &D);
    if (!rc)
        rc = check_vec(op, "out", out, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "weights", w, FP_F32, K);
    if (!rc && w->nbytes > fp_ctx_profile(fp_stream_ctx(s))->storage_range)
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: %lld weights exceed one binding", op, (long long)K);
    if (rc)
        return rc;
    red_user u = {0, 0.0f};
    return red_job(s, op, 0, &u, out, X, w, K, D, accumulate);
}

int fp_agg_axpy(fp_stream *s, fp_tensor *out, const fp_tensor *x, float w)
{
    const char *op = "aggregate axpy";
    if (!s || !x)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    int64_t D = fp_tensor_numel(x);
    int rc = check_vec(op, "x", x, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "out", out, FP_F32, D);
    if (rc)
        return rc;
    red_user u = {2u, w};
    return red_job(s, op, 0, &u, out, x, NULL, 1, D, 1);
}

int fp_agg_ring_sum(fp_stream *s, fp_tensor *out, const fp_tensor *Q, int accumulate)
{
    const char *op = "aggregate ring_sum";
    int64_t K, D;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    int rc = check_mat(op, "Q", Q, FP_U32, &K, &D);
    if (!rc)
        rc = check_vec(op, "out", out, FP_U32, D);
    if (rc)
        return rc;
    red_user u = {0, 0.0f};
    return red_job(s, op, 1, &u, out, Q, NULL, K, D, accumulate);
}

static int ring_addsub(fp_stream *s, fp_tensor *acc, const fp_tensor *x, int sub)
{
    const char *op = sub ? "aggregate ring_sub" : "aggregate ring_add";
    if (!s || !x)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    int64_t D = fp_tensor_numel(x);
    int rc = check_vec(op, "x", x, FP_U32, D);
    if (!rc)
        rc = check_vec(op, "acc", acc, FP_U32, D);
    if (rc)
        return rc;
    red_user u = {sub ? 2u : 0u, 0.0f};
    return red_job(s, op, 1, &u, acc, x, NULL, 1, D, 1);
}

int fp_agg_ring_add(fp_stream *s, fp_tensor *acc, const fp_tensor *x) { return ring_addsub(s, acc, x, 0); }
int fp_agg_ring_sub(fp_stream *s, fp_tensor *acc, const fp_tensor *x) { return ring_addsub(s, acc, x, 1); }

/* ---- elementwise vector ops (quantise, dequantise, TIES mean) ----------------------------- */

int fp_agg_qparams_check(const fp_agg_qparams *p, uint32_t n_clients)
{
    if (!p)
        return fp_seterr(FP_EINVAL, "quantise: NULL parameters");
    if (!(p->clip > 0.0f) || !isfinite(p->clip))
        return fp_seterr(FP_EINVAL, "quantise: clip must be positive and finite (got %g)", (double)p->clip);
    if (p->scale_bits > 30)
        return fp_seterr(FP_EINVAL, "quantise: scale_bits %u exceeds 30", p->scale_bits);
    double m = ceil((double)p->clip * ldexp(1.0, (int)p->scale_bits));
    if (m > 2147483647.0)
        return fp_seterr(FP_EINVAL, "quantise: clip %g * 2^%u does not fit a signed 32-bit integer", (double)p->clip,
                         p->scale_bits);
    if (n_clients && m * n_clients > 2147483647.0)
        return fp_seterr(FP_EOVERFLOW,
                         "quantise: %u clients of values up to %.0f (clip %g * 2^%u) can sum past 2^31-1; use "
                         "fewer scale bits",
                         n_clients, m, (double)p->clip, p->scale_bits);
    return 0;
}

/* vec4s per invocation of the texel quantiser (quant.comp, at most its
 * QUANT_MAX_ITEMS): its hash chains overlap on a CPU */
#define QUANT_TEX_ITEMS 4
_Static_assert(QUANT_TEX_ITEMS >= 1 && QUANT_TEX_ITEMS <= 4, "quant.comp computes at most QUANT_MAX_ITEMS (4)");

static uint32_t push_quant(void *p, const agg_tile *t, const void *user)
{
    const fp_agg_qparams *qp = user;
    struct { uint32_t n, xoff, qoff, idx0, lo, hi; float clip, scale; } q = {
        t->cnt, t->off[0], t->off[1], qp->index0 + (uint32_t)t->col, (uint32_t)qp->seed, (uint32_t)(qp->seed >> 32),
        qp->clip, ldexpf(1.0f, (int)qp->scale_bits)};
    return PUSH_OUT(p, q);
}

int fp_agg_quantize(fp_stream *s, fp_tensor *q, const fp_tensor *x, const fp_agg_qparams *p)
{
    const char *op = "aggregate quantize";
    if (!s || !x)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    int rc = fp_agg_qparams_check(p, 0);
    int64_t D = fp_tensor_numel(x);
    if (!rc)
        rc = check_vec(op, "x", x, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "q", q, FP_U32, D);
    if (rc)
        return rc;
    agg_job j = {.op = op, .shader = "agg_quant", .has_vec4 = 1, .has_tex = 1, .wg = stream_wg(fp_stream_ctx(s)),
                 .tex_items = QUANT_TEX_ITEMS, .K = 1, .D = D, .nargs = 2,
                 .arg = {{x, ARG_VEC, 0, 4}, {q, ARG_VEC, 1, 0}}, .push = push_quant, .user = p};
    return job_run(s, &j);
}

typedef struct dequant_user {
    float step, post;
} dequant_user;

static uint32_t push_dequant(void *p, const agg_tile *t, const void *user)
{
    const dequant_user *u = user;
    struct { uint32_t n, qoff, ooff; float step, post; } q = {t->cnt, t->off[0], t->off[1], u->step, u->post};
    return PUSH_OUT(p, q);
}

int fp_agg_dequantize(fp_stream *s, fp_tensor *out, const fp_tensor *sum, uint32_t scale_bits, float post)
{
    const char *op = "aggregate dequantize";
    if (!s || !sum)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    if (scale_bits > 30)
        return fp_seterr(FP_EINVAL, "%s: scale_bits %u exceeds 30", op, scale_bits);
    int64_t D = fp_tensor_numel(sum);
    int rc = check_vec(op, "sum", sum, FP_U32, D);
    if (!rc)
        rc = check_vec(op, "out", out, FP_F32, D);
    if (rc)
        return rc;
    dequant_user u = {ldexpf(1.0f, -(int)scale_bits), post};
    agg_job j = {.op = op, .shader = "agg_dequant", .has_vec4 = 1, .has_tex = 1, .wg = stream_wg(fp_stream_ctx(s)),
                 .K = 1, .D = D, .nargs = 2, .arg = {{sum, ARG_VEC, 0, 4}, {out, ARG_VEC, 1, 0}},
                 .push = push_dequant, .user = &u};
    return job_run(s, &j);
}

static uint32_t push_offsets(void *p, const agg_tile *t, const void *user)
{
    (void)user;
    uint32_t q[4] = {t->cnt, t->off[0], t->off[1], t->off[2]};
    return PUSH_OUT(p, q);
}

int fp_agg_ties_mean(fp_stream *s, fp_tensor *out, const fp_tensor *msum, const fp_tensor *count)
{
    const char *op = "aggregate ties_mean";
    if (!s || !msum)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", op);
    int64_t D = fp_tensor_numel(msum);
    int rc = check_vec(op, "msum", msum, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "count", count, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "out", out, FP_F32, D);
    if (rc)
        return rc;
    agg_job j = {.op = op, .shader = "agg_ties_mean", .has_vec4 = 1, .wg = stream_wg(fp_stream_ctx(s)), .K = 1,
                 .D = D, .has_tex = 1, .nargs = 3,
                 .arg = {{msum, ARG_VEC, 0, 4}, {count, ARG_VEC, 0, 4}, {out, ARG_VEC, 1, 0}},
                 .push = push_offsets};
    return job_run(s, &j);
}

/* ---- per-client row ops (clip, TIES trim) ---------------------------------------------------- */

static uint32_t push_rowop(void *p, const agg_tile *t, const void *user)
{
    struct { uint32_t n, nk, ld, xoff, voff; float c; } q = {t->cnt, (uint32_t)t->nk, t->ld, t->off[0],
                                                               (uint32_t)t->k0, *(const float *)user};
    return PUSH_OUT(p, q);
}

static int rowop(fp_stream *s, const char *op, const char *shader, fp_tensor *X, const fp_tensor *v, float c)
{
    int64_t K, D;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    int rc = check_mat(op, "X", X, FP_F32, &K, &D);
    if (!rc)
        rc = check_vec(op, shader[4] == 'c' ? "norms" : "thresholds", v, FP_F32, K);
    if (rc)
        return rc;
    agg_job j = {.op = op, .shader = shader, .has_vec4 = 1, .wg = stream_wg(fp_stream_ctx(s)), .K = K, .D = D,
                 .has_tex = 1, .nargs = 2, .arg = {{X, ARG_MAT, 1, 4}, {v, ARG_WHOLE, 0, 1}}, .push = push_rowop,
                 .user = &c};
    return job_run(s, &j);
}

int fp_agg_clip(fp_stream *s, fp_tensor *X, const fp_tensor *norms, float c)
{
    if (!(c > 0.0f))
        return fp_seterr(FP_EINVAL, "aggregate clip: the bound must be positive (got %g)", (double)c);
    return rowop(s, "aggregate clip", "agg_clip", X, norms, c);
}

int fp_agg_ties_trim(fp_stream *s, fp_tensor *X, const fp_tensor *thr)
{
    return rowop(s, "aggregate ties_trim", "agg_trim", X, thr, 0.0f);
}
/* ---- norms ----------------------------------------------------------------------------------- */

#define NORM_SLICE 4096 /* tree: coordinates per stage-1 workgroup (at most NORM_MAXP of them per chunk) */
#define NORM_MAXP 256

/* How stage 1 runs (a pure function of the context, K and D, so that
 * fp_agg_norms_worksize and fp_agg_norms agree):
 *  - tree (GPUs): workgroups of reduce_wg invocations reduce a slice each
 *    (subgroupAdd where the profile has it, else a shared-memory tree) to one
 *    partial; few partials.
 *  - flat (CPU devices by default): no barrier, no
 *    shared memory; each invocation accumulates `items` coordinates serially
 *    and writes its own partial, or one per subgroup after subgroupAdd. On
 *    lavapipe a barrier is a coroutine switch per subgroup and a workgroup runs
 *    on one core, so the tree spends more time reducing than loading.
 * Which one: the autotuner's forced candidate (this thread), then FP_AGG_NORM
 * = tree | flat (experiments), then fp_agg_autotune's measured choice (tuned
 * "aggregate.norm"; another value is ignored), then the device default above.
 * FP_AGG_NORM_WG, FP_AGG_NORM_ITEMS (or tuned norm_wg / norm_items) size flat. */
typedef struct norm_cfg {
    int flat, sg;
    uint32_t wg, items, slots; /* flat: coordinates per invocation, partials per workgroup */
} norm_cfg;

static uint32_t env_u32(const char *name, const char *tune, const fp_ctx *ctx)
{
    const char *t = getenv(name);
    if ((!t || !*t) && tune)
        t = fp_measured_tune_get(fp_ctx_measured(ctx), tune);
    return t && *t ? (uint32_t)strtoul(t, NULL, 10) : 0;
}

static norm_cfg norm_config(const fp_ctx *ctx, int64_t K, int64_t D)
{
    const fp_profile *pr = fp_ctx_profile(ctx);
    norm_cfg c = {0};
    c.flat = fp_profile_is_cpu(pr);
    if (g_force.norm) {
        c.flat = g_force.norm == AGG_NORM_FLAT;
    } else {
        const char *t = getenv("FP_AGG_NORM");
        if (!t || !*t)
            t = fp_measured_tune_get(fp_ctx_measured(ctx), "aggregate.norm");
        if (t && (!strcmp(t, "flat") || !strcmp(t, "tree")))
            c.flat = !strcmp(t, "flat"); /* anything else: the device default */
    }
    c.sg = pr->subgroup_ops;
    uint32_t smin = pr->subgroup_min ? pr->subgroup_min : 1;
    if (!c.flat) {
        c.wg = reduce_wg(ctx);
        if (c.sg && c.wg / smin > 128)
            c.sg = 0;
        return c;
    }
    /* One subgroup per workgroup (the driver's default size; on lavapipe the
     * SIMD width, 8): each step of an invocation's loop then reads one
     * contiguous run per workgroup. Measured on lavapipe (D = 2^20): 8
     * invocations ~10 GB/s, 16 or 64 (several subgroups striding past each
     * other) 2-4 GB/s. Partials are per invocation or per subgroup, so any
     * size is correct whatever the real subgroup size. */
    uint32_t wg = env_u32("FP_AGG_NORM_WG", "aggregate.norm_wg", ctx);
    if (!wg)
        wg = pr->subgroup_size;
    if (wg < 4 || (wg & (wg - 1)))
        wg = 64;
    while (wg > pr->max_wg_invocations || wg > pr->max_wg_size[0])
        wg >>= 1;
    c.wg = wg;
    /* coordinates per invocation: 1024 (256..4096 measured alike on lavapipe),
     * fewer when that would leave fewer than 64 workgroups to spread over cores */
    uint32_t it = env_u32("FP_AGG_NORM_ITEMS", "aggregate.norm_items", ctx);
    if (it >= 4 && it <= 65536 && it % 4 == 0) {
        c.items = it;
    } else {
        c.items = 1024;
        while (c.items > 64 && K * ((D + (int64_t)wg * c.items - 1) / ((int64_t)wg * c.items)) < 64)
            c.items >>= 1;
    }
    /* a chunk's workgroups along x stay within the 65535 every device allows */
    int64_t R = fp_win_max_elems(ctx), dc = D <= R ? D : R;
    while ((dc + (int64_t)wg * c.items - 1) / ((int64_t)wg * c.items) > 65535)
        c.items *= 2;
    c.slots = c.sg ? (wg + smin - 1) / smin : wg;
    return c;
}

/* Column chunks of dc coordinates (a binding's worth), and per chunk P stage-1
 * workgroups of `slots` partials each. */
static void norm_geom(const fp_ctx *ctx, const norm_cfg *c, int64_t D, int64_t *dc, int64_t *nchunks, int64_t *P)
{
    int64_t R = fp_win_max_elems(ctx);
    *dc = D <= R ? D : R - R % 64;
    *nchunks = (D + *dc - 1) / *dc;
    if (c->flat) {
        int64_t span = (int64_t)c->wg * c->items;
        *P = (*dc + span - 1) / span;
    } else {
        int64_t p = (*dc + NORM_SLICE - 1) / NORM_SLICE;
        *P = p < NORM_MAXP ? p : NORM_MAXP;
    }
}

static int64_t norm_slots(const norm_cfg *c) { return c->flat ? c->slots : 1; }

int64_t fp_agg_norms_worksize(const fp_ctx *ctx, int64_t K, int64_t D)
{
    if (!ctx || K < 1 || D < 1)
        return 0;
    norm_cfg c = norm_config(ctx, K, D);
    int64_t dc, nch, P;
    norm_geom(ctx, &c, D, &dc, &nch, &P);
    return K * nch * P * norm_slots(&c);
}

int fp_agg_norms(fp_stream *s, fp_tensor *norms, const fp_tensor *X, fp_tensor *work)
{
    const char *op = "aggregate norms";
    int64_t K, D;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    int rc = check_mat(op, "X", X, FP_F32, &K, &D);
    if (!rc)
        rc = check_vec(op, "norms", norms, FP_F32, K);
    if (rc)
        return rc;
    fp_ctx *ctx = fp_stream_ctx(s);
    int64_t need = fp_agg_norms_worksize(ctx, K, D);
    if (!work || work->dtype != FP_F32 || fp_tensor_numel(work) < need)
        return fp_seterr(FP_ESHAPE, "%s: work must be f32 with at least %lld elements (got %s%lld)", op,
                         (long long)need, work ? fp_dtype_name(work->dtype) : "", work ? (long long)fp_tensor_numel(work) : 0ll);
    if (work->nbytes > fp_ctx_profile(ctx)->storage_range)
        return fp_seterr(FP_EUNSUPPORTED, "%s: the scratch of %lld elements exceeds one binding", op,
                         (long long)need);
    norm_cfg cf = norm_config(ctx, K, D);
    int64_t dc, nch, P;
    norm_geom(ctx, &cf, D, &dc, &nch, &P);
    /* rows per dispatch: as many as one binding holds (each workgroup reads one
     * row, so the CPU row cap of the streaming ops does not apply) */
    int64_t R = fp_win_max_elems(ctx), g = D <= R ? R / D : 1;
    if (g > K)
        g = K;
    if (g > 65535)
        g = 65535;
    fp_pipeline *p1, *p1v, *p1t = NULL, *p2;
    char n1[24], n1v[40], n1t[40];
    snprintf(n1, sizeof n1, "agg_sumsq%s%s", cf.flat ? "_flat" : "", cf.sg ? "_sg" : "");
    snprintf(n1v, sizeof n1v, "%s_vec4", n1);
    snprintf(n1t, sizeof n1t, "%s_tex_vec4", n1);
    int tex = cf.flat && fp_ops_texel_reads(ctx); /* the flat vec4 body has a texel variant */
    if ((rc = get_pipe(&p2, s, "agg_norm_finish", stream_wg(ctx), 0)) ||
        (rc = get_pipe(&p1v, s, n1v, cf.wg, cf.flat ? cf.items : 0)) ||
        (rc = get_pipe(&p1, s, n1, cf.wg, cf.flat ? cf.items : 0)) ||
        (tex && (rc = get_pipe(&p1t, s, n1t, cf.wg, cf.items))))
        return rc;
    int64_t slots = norm_slots(&cf), pstride = nch * P * slots;
    for (int64_t k0 = 0; k0 < K && !rc; k0 += g) {
        int64_t nk = K - k0 < g ? K - k0 : g;
        for (int64_t c = 0; c < nch && !rc; c++) {
            int64_t d0 = c * dc, n = D - d0 < dc ? D - d0 : dc;
            fp_win wx;
            if ((rc = fp_win_open(&wx, X, k0 * D + d0, (nk - 1) * D + n)))
                break;
            /* vec4 loads where the chunk and every row start on a vec4 (no tail to handle) */
            uint32_t u = use_vec4(ctx) && n % 4 == 0 && (nk == 1 || D % 4 == 0) && wx.delta % 4 == 0 ? 4 : 1;
            /* all P groups run (empty slices write 0), so every slot of work is defined; flat
             * workgroups cover wg*items coordinates in either unit, so P does not depend on u */
            uint32_t sl = cf.flat ? (uint32_t)slots : (uint32_t)((n / u + P - 1) / P);
            uint32_t push[6] = {(uint32_t)(n / u), (uint32_t)(D / u), wx.delta / u, sl,
                                (uint32_t)(k0 * pstride + c * P * slots), (uint32_t)pstride};
            int t4 = u == 4 && tex && fp_ctx_texel_fits(ctx, wx.t, 4);
            fp_binding b[2] = {t4 ? FP_TEX4(wx.t) : FP_R(wx.t), FP_W(work)};
            rc = fp_stream_dispatch(s, t4 ? p1t : u == 4 ? p1v : p1, b, 2, push, sizeof push, (uint32_t)P,
                                    (uint32_t)nk, 1);
            snprintf(last_variant, sizeof last_variant, "%s", t4 ? n1t : u == 4 ? n1v : n1);
            fp_win_close(&wx);
        }
    }
    if (!rc) {
        uint32_t push[2] = {(uint32_t)K, (uint32_t)pstride};
        fp_binding b[2] = {FP_R(work), FP_W(norms)};
        uint32_t gx, gy;
        fp_grid_1d((uint32_t)K, stream_wg(ctx), &gx, &gy);
        rc = fp_stream_dispatch(s, p2, b, 2, push, sizeof push, gx, gy, 1);
    }
    return rc ? fp_adderr(rc, "%s", op) : 0;
}

/* ---- order statistics -------------------------------------------------------------------------- */

#define ORDER_VEC4_MAX_K 16 /* vec4 networks (4 coordinates per invocation) up to here: registers */

/* Whether the network for kp inputs may take four coordinates per invocation
 * (each vec4 body of order_stat.comp; tails stay scalar). GPUs: up to
 * ORDER_VEC4_MAX_K only, since four times the live values would spill past the
 * register file. CPU devices: every size. On llvmpipe an invocation is a SIMD
 * lane, its "registers" are spilled to the stack past 16 values anyway, and a
 * vec4 per lane makes each 8-lane batch read 128 contiguous bytes of every
 * client row (two whole cache lines) instead of 32; at K = 100, D = 2^20 on
 * lavapipe (fp bench kernels --only aggregate, with FP_AGG_ORDER_BANDS=7)
 * median took 738-932 ms against 820-1158 ms scalar, the trimmed mean
 * 839-919 ms against 1169-1185 ms (that machine is noisy: with the in-place
 * default below, a later pass of fp_agg_median alone, best of 4, measured
 * 1.0-1.3x over the old default). FP_AGG_ORDER_VEC4=0 / 1 overrides (tests,
 * experiments: 0 keeps scalar networks past 16, 1 allows vec4 everywhere). */
static int order_vec4_ok(const fp_ctx *ctx, uint32_t kp)
{
    const char *t = getenv("FP_AGG_ORDER_VEC4");
    if (t && (!strcmp(t, "0") || !strcmp(t, "1")))
        return t[0] == '1';
    return kp <= ORDER_VEC4_MAX_K || fp_profile_is_cpu(fp_ctx_profile(ctx));
}

/* Most clients a sorting network takes; radix select beyond. A network of 128
 * needs about a tenth of radix select's compares but 128 live values per
 * invocation: on CPU devices the overflow is L1 traffic, on a GPU scratch
 * memory, and still the network wins where measured: on an H100
 * (fp_agg_autotune, K = 100 x 2^16) median took 0.020 ms with the 128 network
 * against 0.487 ms in radix select (16 counting passes over all K values in
 * global memory), so every device defaults to 128 unless measured otherwise: the
 * autotuner's forced candidate (this thread), then FP_AGG_ORDER_NET (tests run
 * radix select on lavapipe that way, and experiments), then fp_agg_autotune's
 * measured choice (tuned "aggregate.order_net": 32, 64 or 128; another value
 * is ignored), then the device default. */
static int64_t order_net_max(const fp_ctx *ctx)
{
    if (g_force.order_net)
        return g_force.order_net;
    const char *t = getenv("FP_AGG_ORDER_NET");
    if (!t || !*t)
        t = fp_measured_tune_get(fp_ctx_measured(ctx), "aggregate.order_net");
    if (t && (!strcmp(t, "32") || !strcmp(t, "64") || !strcmp(t, "128")))
        return atoi(t);
    return 128;
}

/* Column slab width for the gathered path: K * dc elements fit one binding. */
static int64_t order_slab(const fp_ctx *ctx, int64_t K, int64_t D)
{
    int64_t dc = fp_win_max_elems(ctx) / K;
    if (dc > 64)
        dc -= dc % 64;
    return dc < D ? dc : D;
}

/* Banded network path: X is read in place through up to ORDER_BANDS bindings
 * of rb rows each (order_stat.comp), column chunks of dc, so nothing is
 * gathered as long as rb - 1 rows plus a chunk fit one binding. The fewest
 * bands whose chunks are at least min(D, 256) columns (fewer dispatches);
 * 0 if none fit (then the column slabs are gathered).
 * How many bands to allow by default: 1 on GPUs (X in one binding, as before);
 * all 7 on CPU devices, whose networks read four coordinates per lane (see
 * order_vec4_ok). Gathering first copies every row once more, and on lavapipe
 * the copy costs as much per element as the network's own load: at K = 100,
 * D = 2^20 (rows exactly 4 MiB apart) the vec4 networks read in place took
 * 738-932 ms (median) and 839-919 ms (trimmed mean) against 993-1023 and
 * 1053-1078 ms gathered. (An earlier machine, with scalar networks, found the
 * opposite at that power-of-two stride: 1.4x the gather's time, as each 8-lane
 * batch read 32 bytes of 100 rows mapping to the same cache sets.)
 * "aggregate.order_bands" (1..7, a measured key) or FP_AGG_ORDER_BANDS (tests,
 * experiments) overrides. */
#define ORDER_BANDS 7
static int64_t order_max_bands(const fp_ctx *ctx)
{
    const char *t = getenv("FP_AGG_ORDER_BANDS");
    if (!t || !*t)
        t = fp_measured_tune_get(fp_ctx_measured(ctx), "aggregate.order_bands");
    int64_t def = fp_profile_is_cpu(fp_ctx_profile(ctx)) ? ORDER_BANDS : 1;
    int64_t v = t ? atoll(t) : def;
    return v >= 1 && v <= ORDER_BANDS ? v : def;
}

static int order_bands(const fp_ctx *ctx, int64_t K, int64_t D, int64_t *rb, int64_t *dc)
{
    int64_t R = fp_win_max_elems(ctx), want = D < 256 ? D : 256, maxb = order_max_bands(ctx);
    for (int64_t nb = 1; nb <= maxb; nb++) {
        int64_t r = (K + nb - 1) / nb, c = R - (r - 1) * D;
        if (c > 64)
            c -= c % 64;
        if (c >= want || (nb == 1 && c >= 1)) {
            *rb = r;
            *dc = c < D ? c : D;
            return 1;
        }
    }
    return 0;
}

int64_t fp_agg_order_worksize(const fp_ctx *ctx, int64_t K, int64_t D)
{
    if (!ctx || K < 1 || D < 1)
        return 0;
    int64_t rb, dc;
    if (K <= order_net_max(ctx) ? order_bands(ctx, K, D, &rb, &dc) : (K - 1) * D + 1 <= fp_win_max_elems(ctx))
        return 0; /* X binds directly */
    return K * order_slab(ctx, K, D);
}

/* One column chunk [d0, d0 + n) of the banded network: a vec4 body where every
 * band window starts on a vec4 (and rows are whole vec4s apart), a scalar tail. */
static int order_net_chunk(fp_stream *s, const char *name, int vec4_ok, uint32_t nk, int64_t rb, const fp_tensor *X,
                           fp_tensor *out, int64_t D, int64_t d0, int64_t n, const uint32_t lohi[2])
{
    fp_ctx *ctx = fp_stream_ctx(s);
    int64_t K = X->shape[0];
    int nb = (int)((K + rb - 1) / rb), opened = 0, rc = 0;
    fp_win w[1 + ORDER_BANDS];
    rc = fp_win_open(&w[0], out, d0, n);
    if (!rc)
        opened = 1;
    for (int g = 0; g < nb && !rc; g++) {
        int64_t k0 = g * rb, rows = K - k0 < rb ? K - k0 : rb;
        rc = fp_win_open(&w[1 + g], X, k0 * D + d0, (rows - 1) * D + n);
        if (!rc)
            opened++;
    }
    int vec = !rc && vec4_ok && use_vec4(ctx) && (K == 1 || D % 4 == 0);
    for (int i = 0; i < opened && vec; i++)
        if (w[i].delta % 4)
            vec = 0;
    int64_t nv = vec ? n / 4 : 0;
    /* through texel buffers where every band fits one (of vec4 texels for
     * the body, single floats for the tail); the texel variants declare all
     * bands, so the unused ones repeat band 0 */
    int tex = fp_ops_texel_reads(ctx);
    for (int g = 0; g < nb && tex && !rc; g++)
        if (!fp_ctx_texel_fits(ctx, w[1 + g].t, 1)) /* then the vec4 view (4x fewer texels) fits too */
            tex = 0;
    fp_binding b[1 + ORDER_BANDS];
    b[0] = FP_W(w[0].t);
    for (int g = 0; g < nb && !rc; g++)
        b[1 + g] = FP_R(w[1 + g].t);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        int64_t cnt = pass == 0 ? nv : n - 4 * nv;
        if (!cnt)
            continue;
        uint32_t unit = pass == 0 ? 4 : 1, skip = pass ? (uint32_t)nv * 4 : 0;
        uint32_t push[3 + ORDER_BANDS] = {(uint32_t)cnt, (uint32_t)(K > 1 ? D / unit : D), (w[0].delta + skip) / unit};
        for (int g = 0; g < ORDER_BANDS; g++)
            push[3 + g] = g < nb ? (w[1 + g].delta + skip) / unit : 0;
        char pn[48];
        snprintf(pn, sizeof pn, "%s%s%s", name, tex ? "_tex" : "", unit == 4 ? "_vec4" : "");
        /* one pipeline per (K, rows per band, kept ranks): the network is pruned to them */
        uint32_t wg = reduce_wg(ctx), spec[7] = {wg, 1, 1, nk, (uint32_t)rb, lohi[0], lohi[1]}, gx, gy;
        fp_pipeline *p;
        rc = fp_pipeline_get(&p, ctx, pn, spec, 7);
        if (rc)
            break;
        fp_grid_1d((uint32_t)cnt, wg, &gx, &gy);
        if (tex) {
            fp_binding bt[1 + ORDER_BANDS] = {b[0]};
            for (int g = 0; g < ORDER_BANDS; g++)
                bt[1 + g] = (fp_binding){w[1 + (g < nb ? g : 0)].t, 0, (int)unit};
            rc = fp_stream_dispatch(s, p, bt, 1 + ORDER_BANDS, push, sizeof push, gx, gy, 1);
        } else {
            rc = fp_stream_dispatch(s, p, b, (uint32_t)(1 + nb), push, sizeof push, gx, gy, 1);
        }
        if (!rc && (pass == 0 || !nv))
            snprintf(last_variant, sizeof last_variant, "%s", pn); /* the body; a tail is scalar */
    }
    for (int i = 0; i < opened; i++)
        fp_win_close(&w[i]);
    return rc;
}

static uint32_t push_order(void *p, const agg_tile *t, const void *user)
{
    const uint32_t *lohi = user;
    uint32_t q[7] = {t->cnt, (uint32_t)t->nk, t->ld, t->off[0], t->off[1], lohi[0], lohi[1]};
    return PUSH_OUT(p, q);
}

/* X [K, D] read in place (fp_agg_order_worksize(K, D) == 0): small K, a
 * sorting network in registers (vec4 up to 16) over bands of X; beyond, radix
 * select (any K) with X in one binding. */
static int order_direct(fp_stream *s, const char *op, fp_tensor *out, const fp_tensor *X, const uint32_t lohi[2])
{
    fp_ctx *ctx = fp_stream_ctx(s);
    int64_t K = X->shape[0], D = X->shape[1], rb, dc;
    int rc = 0;
    if (K <= order_net_max(ctx) && order_bands(ctx, K, D, &rb, &dc)) {
        uint32_t kp = 4;
        while (kp < K)
            kp <<= 1;
        char name[32];
        snprintf(name, sizeof name, "agg_order_k%u", kp);
        int vec4_ok = order_vec4_ok(ctx, kp);
        for (int64_t d0 = 0; d0 < D && !rc; d0 += dc)
            rc = order_net_chunk(s, name, vec4_ok, (uint32_t)K, rb, X, out, D, d0,
                                 D - d0 < dc ? D - d0 : dc, lohi);
        return rc ? fp_adderr(rc, "%s", op) : 0;
    }
    /* long per-thread loops: small groups (64) */
    agg_job j = {.op = op, .shader = "agg_order_radix", .has_vec4 = 1, .all_rows = 1, .wg = reduce_wg(ctx), .K = K,
                 .D = D, .nargs = 2, .arg = {{X, ARG_MAT, 0}, {out, ARG_VEC, 1}}, .push = push_order, .user = lohi};
    return job_run(s, &j);
}

static int order_stat(fp_stream *s, const char *op, fp_tensor *out, const fp_tensor *X, int median, uint32_t b,
                      fp_tensor *work)
{
    int64_t K, D;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    int rc = check_mat(op, "X", X, FP_F32, &K, &D);
    if (!rc)
        rc = check_vec(op, "out", out, FP_F32, D);
    if (rc)
        return rc;
    if (median)
        b = (uint32_t)((K - 1) / 2);
    if (2 * (int64_t)b >= K)
        return fp_seterr(FP_EINVAL, "%s: trimming %u from each end of %lld clients leaves nothing", op, b,
                         (long long)K);
    fp_ctx *ctx = fp_stream_ctx(s);
    uint32_t lohi[2] = {b, (uint32_t)(K - 1 - b)};
    int64_t need = fp_agg_order_worksize(ctx, K, D);
    if (need == 0)
        return order_direct(s, op, out, X, lohi);
    /* too big for the bindings: gather column slabs [K, dc] into work (transfer copies) */
    if (!work || work->dtype != FP_F32 || fp_tensor_numel(work) < need)
        return fp_seterr(FP_EUNSUPPORTED,
                         "%s: %lld clients x %lld coordinates do not fit the bindings on %s (storage range %llu "
                         "bytes); pass an f32 work tensor of fp_agg_order_worksize = %lld elements",
                         op, (long long)K, (long long)D, fp_ctx_profile(ctx)->name,
                         (unsigned long long)fp_ctx_profile(ctx)->storage_range, (long long)need);
    if (work->offset % fp_ctx_profile(ctx)->min_storage_align)
        return fp_seterr(FP_EINVAL, "%s: the work tensor is not aligned for binding", op);
    int64_t dc = order_slab(ctx, K, D);
    for (int64_t d0 = 0; d0 < D && !rc; d0 += dc) {
        int64_t n = D - d0 < dc ? D - d0 : dc;
        for (int64_t k = 0; k < K && !rc; k++) {
            fp_tensor *src = NULL, *dst = NULL;
            rc = fp_tensor_view(&src, (fp_tensor *)X, k * D + d0, FP_F32, 1, &n);
            if (!rc)
                rc = fp_tensor_view(&dst, work, k * n, FP_F32, 1, &n);
            if (!rc)
                rc = fp_stream_copy(s, dst, src);
            fp_tensor_free(src);
            fp_tensor_free(dst);
        }
        if (rc)
            break;
        /* the slab is a [K, n] matrix of its own; out's columns [d0, d0 + n) a vector */
        int64_t shp[2] = {K, n};
        fp_tensor *slab = NULL, *ov = NULL;
        rc = fp_tensor_view(&slab, work, 0, FP_F32, 2, shp);
        if (!rc)
            rc = fp_tensor_view(&ov, out, d0, FP_F32, 1, &n);
        if (!rc)
            rc = order_direct(s, op, ov, slab, lohi);
        fp_tensor_free(slab);
        fp_tensor_free(ov);
    }
    return rc ? fp_adderr(rc, "%s (gathered column slabs)", op) : 0;
}

int fp_agg_trimmed_mean(fp_stream *s, fp_tensor *out, const fp_tensor *X, uint32_t b, fp_tensor *work)
{
    return order_stat(s, "aggregate trimmed_mean", out, X, 0, b, work);
}

int fp_agg_median(fp_stream *s, fp_tensor *out, const fp_tensor *X, fp_tensor *work)
{
    return order_stat(s, "aggregate median", out, X, 1, 0, work);
}

/* ---- TIES masked sums ------------------------------------------------------------------------------ */

static uint32_t push_masked(void *p, const agg_tile *t, const void *user)
{
    (void)user;
    uint32_t q[8] = {t->cnt, (uint32_t)t->nk, t->ld, t->off[0], t->off[1], t->off[2], t->off[3], t->acc};
    return PUSH_OUT(p, q);
}

int fp_agg_ties_masked(fp_stream *s, fp_tensor *msum, fp_tensor *count, const fp_tensor *X,
                       const fp_tensor *total, int accumulate)
{
    const char *op = "aggregate ties_masked";
    int64_t K, D;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    int rc = check_mat(op, "X", X, FP_F32, &K, &D);
    if (!rc)
        rc = check_vec(op, "total", total, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "msum", msum, FP_F32, D);
    if (!rc)
        rc = check_vec(op, "count", count, FP_F32, D);
    if (rc)
        return rc;
    agg_job j = {.op = op, .shader = "agg_ties_masked", .has_vec4 = 1, .accumulate = accumulate,
                 .wg = stream_wg(fp_stream_ctx(s)), .K = K, .D = D, .nargs = 4,
                 .has_tex = 1, .tex_items = TEX_ITEMS, .tex_wg = tex_sum_wg(fp_stream_ctx(s)),
                 .arg = {{X, ARG_MAT, 0, 4}, {total, ARG_VEC, 0, 4}, {msum, ARG_VEC, 1, 4}, {count, ARG_VEC, 1, 4}},
                 .push = push_masked};
    return job_run(s, &j);
}

/* ---- benchmark ---------------------------------------------------------------------------------- */

#include "bench_reps.h"

#include <cJSON.h>

typedef struct bench_env {
    fp_tensor *X, *Xu, *Xr, *w, *out, *out2, *out3, *q, *nrm, *work, *owork, *cbig, *cbig2;
    fp_agg_qparams qp;
} bench_env;

enum { B_COPY, B_TCOPY, B_WSUM, B_AXPY, B_RING_SUM, B_RING_ADD, B_QUANT, B_DEQUANT, B_NORMS, B_CLIP, B_MEDIAN, B_TRIM_MEAN,
       B_TIES_TRIM, B_TIES_MASKED, B_TIES_MEAN, B_COUNT };
static const char *const bench_names[B_COUNT] = {
    "copy", "transfer_copy", "wsum", "axpy", "ring_sum", "ring_add", "quantize", "dequantize", "norms", "clip", "median",
    "trimmed_mean", "ties_trim", "ties_masked", "ties_mean"};
static const int bench_streaming[B_COUNT] = {0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};

static int bench_record(fp_stream *s, bench_env *e, int which, int64_t K)
{
    switch (which) {
    case B_COPY: return fp_op_copy(s, e->cbig2, e->cbig);
    case B_TCOPY: return fp_stream_copy(s, e->cbig2, e->cbig);
    case B_WSUM: return fp_agg_wsum(s, e->out, e->X, e->w, 0);
    case B_AXPY: return fp_agg_axpy(s, e->out, e->out2, 0.5f);
    case B_RING_SUM: return fp_agg_ring_sum(s, e->q, e->Xu, 0);
    case B_RING_ADD: return fp_agg_ring_add(s, e->q, e->Xr);
    case B_QUANT: return fp_agg_quantize(s, e->q, e->out2, &e->qp);
    case B_DEQUANT: return fp_agg_dequantize(s, e->out, e->q, 16, 0.1f);
    case B_NORMS: return fp_agg_norms(s, e->nrm, e->X, e->work);
    case B_CLIP: return fp_agg_clip(s, e->X, e->nrm, 1e30f);
    case B_MEDIAN: return fp_agg_median(s, e->out, e->X, e->owork);
    case B_TRIM_MEAN: return fp_agg_trimmed_mean(s, e->out, e->X, (uint32_t)(K / 10), e->owork);
    case B_TIES_TRIM: return fp_agg_ties_trim(s, e->X, e->w); /* thresholds: any K values */
    case B_TIES_MASKED: return fp_agg_ties_masked(s, e->out, e->out3, e->X, e->out2, 0);
    case B_TIES_MEAN: return fp_agg_ties_mean(s, e->out, e->out2, e->out3);
    }
    return FP_EINVAL;
}

static double bench_bytes(int which, int64_t K, int64_t D, int64_t copy_n)
{
    double kd = (double)K * (double)D * 4.0, d = (double)D * 4.0;
    switch (which) {
    case B_COPY: case B_TCOPY: return 2.0 * (double)copy_n * 4.0;
    case B_WSUM: case B_RING_SUM: return kd + d;
    case B_AXPY: return 3.0 * d;
    case B_RING_ADD: return 3.0 * d;
    case B_QUANT: case B_DEQUANT: return 2.0 * d;
    case B_NORMS: return kd;
    case B_CLIP: case B_TIES_TRIM: return 2.0 * kd;
    case B_MEDIAN: case B_TRIM_MEAN: return kd + d;
    case B_TIES_MASKED: return kd + 3.0 * d;
    case B_TIES_MEAN: return 3.0 * d;
    }
    return 0;
}

typedef struct bench_call {
    bench_env *e;
    int which;
    int64_t K;
} bench_call;

static int bench_call_record(fp_stream *s, void *arg)
{
    bench_call *c = arg;
    return bench_record(s, c->e, c->which, c->K);
}

/* Best seconds per op over `runs` submissions of at least `inner` back-to-back
 * ops each (more where one op is short next to the queue's round trip:
 * bench_reps.h); the count used goes to *reps. */
static int bench_time(fp_stream *s, bench_env *e, int which, int64_t K, int inner, int runs, double *best, int *reps)
{
    bench_call c = {e, which, K};
    return fp_bench_best(s, bench_call_record, &c, inner, runs, best, reps);
}

/* Frees one K's tensors; with also_copy, the copy's too (end of the run). */
static void bench_free(bench_env *e, int also_copy)
{
    fp_tensor **all[] = {&e->Xr,  &e->Xu,  &e->X,    &e->w,     &e->out,   &e->out2, &e->out3,
                         &e->q,   &e->nrm, &e->work, &e->owork, &e->cbig,  &e->cbig2};
    size_t n = sizeof all / sizeof all[0] - (also_copy ? 0 : 2); /* the copy's two come last */
    for (size_t i = 0; i < n; i++) {
        fp_tensor_free(*all[i]);
        *all[i] = NULL;
    }
}

static int bench_fill(fp_tensor *t, int64_t n, uint32_t seed)
{
    float *h = malloc((size_t)n * sizeof *h);
    if (!h)
        return fp_seterr(FP_ENOMEM, "bench: out of memory");
    uint32_t x = seed * 2654435761u + 1u;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        h[i] = ((float)(x >> 8) * 0x1p-24f - 0.5f) * 0.02f;
    }
    int rc = fp_tensor_upload(t, h, (size_t)n * sizeof *h);
    free(h);
    return rc;
}

/* FP_BENCH_AGG_ONLY="norms,clip" times only those kernels (copy always runs:
 * every ratio is against it); for iterating on one kernel. */
static int bench_selected(int which)
{
    const char *only = getenv("FP_BENCH_AGG_ONLY");
    if (!only || !*only)
        return 1;
    size_t n = strlen(bench_names[which]);
    for (const char *p = only; (p = strstr(p, bench_names[which])) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return 1;
    return 0;
}

int fp_bench_aggregate(fp_ctx *ctx, int quick, char **json_out)
{
    if (!ctx || !json_out)
        return fp_seterr(FP_EINVAL, "bench aggregate: NULL argument");
    *json_out = NULL;
    /* 4 MiB updates (the benchmark model's rank-16 LoRA is 1.16M floats), 64
     * MiB copy. FP_BENCH_AGG_D (2^10..2^24 floats) sets the update size: on an
     * H100 a 4 MiB single-vector kernel lasts a few microseconds, near a
     * dispatch's and a barrier's cost (at 2^22 quantize went from 0.68 to 1.23
     * of the copy), while the K = 100 kernels, whose rows are then 16 MiB
     * apart, fell (median 0.96 -> 0.20). */
    int64_t D = 1 << 20;
    const int64_t copy_n = 16 << 20;
    const char *dv = getenv("FP_BENCH_AGG_D");
    if (dv && *dv) {
        char *end;
        long long v = strtoll(dv, &end, 10);
        if (*end || v < 1024 || v > (1 << 24))
            return fp_seterr(FP_EINVAL, "bench aggregate: FP_BENCH_AGG_D=%s is not a number of floats in 1024..2^24",
                             dv);
        D = v;
    }
    const int64_t Ks[2] = {10, 100};
    int nK = quick ? 1 : 2, runs = quick ? 2 : 3, inner = quick ? 2 : 4;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!root || !arr) {
        cJSON_Delete(root);
        cJSON_Delete(arr);
        return fp_seterr(FP_ENOMEM, "bench aggregate: out of memory");
    }
    cJSON_AddStringToObject(root, "family", "aggregate");
    cJSON_AddStringToObject(root, "device", fp_ctx_profile(ctx)->name);
    cJSON_AddStringToObject(root, "overlay", fp_ctx_profile(ctx)->overlay);
    cJSON_AddNumberToObject(root, "D", (double)D);
    cJSON_AddItemToObject(root, "kernels", arr);
    fp_stream *s = NULL;
    bench_env e;
    memset(&e, 0, sizeof e);
    e.qp = (fp_agg_qparams){.clip = 1.0f, .scale_bits = 16, .seed = 0x1234567890abcdefull, .index0 = 0};
    int rc = fp_stream_new(&s, ctx);
    double copy_gbps = 0, tcopy_gbps = 0;
    /* copy bandwidth first: the reference every kernel is compared with */
    if (!rc)
        rc = fp_tensor_new(&e.cbig, ctx, FP_F32, 1, &copy_n);
    if (!rc)
        rc = fp_tensor_new(&e.cbig2, ctx, FP_F32, 1, &copy_n);
    if (!rc)
        rc = fp_tensor_zero(e.cbig);
    if (!rc) {
        double t;
        int reps;
        rc = bench_time(s, &e, B_COPY, 1, inner, runs, &t, &reps);
        if (!rc)
            copy_gbps = bench_bytes(B_COPY, 1, D, copy_n) / t / 1e9;
        /* the transfer queue's copy (vkCmdCopyBuffer; on lavapipe a host
         * memcpy, no shader): reported beside the kernels' yardstick */
        if (!rc)
            rc = bench_time(s, &e, B_TCOPY, 1, inner, runs, &t, &reps);
        if (!rc)
            tcopy_gbps = bench_bytes(B_TCOPY, 1, D, copy_n) / t / 1e9;
    }
    /* the copy's buffers stay: every kernel is also timed in pairs with it
     * (fp_bench_paired), 128 MiB more for the run */
    /* copy_gbps: fp_op_copy, the compute shader every ratio is against (it
     * reads through texels where the kernels do: fp_ops_texel_reads) */
    cJSON_AddNumberToObject(root, "copy_gbps", copy_gbps);
    cJSON_AddStringToObject(root, "copy_reads", fp_ops_texel_reads(ctx) ? "texel" : "storage");
    cJSON_AddNumberToObject(root, "transfer_copy_gbps", tcopy_gbps);
    double worst_stream_ratio = 1e30, worst_paired = 1e30, worst_stream_paired = 1e30;
    const char *worst_paired_kernel = NULL;
    int64_t worst_paired_K = 0;
    for (int ki = 0; ki < nK && !rc; ki++) {
        int64_t K = Ks[ki], shp[2] = {K, D};
        rc = fp_tensor_new(&e.X, ctx, FP_F32, 2, shp);
        if (!rc)
            rc = fp_tensor_view(&e.Xu, e.X, 0, FP_U32, 2, shp);
        if (!rc)
            rc = fp_tensor_view(&e.Xr, e.X, 0, FP_U32, 1, &D);
        if (!rc)
            rc = fp_tensor_new(&e.w, ctx, FP_F32, 1, &K);
        if (!rc)
            rc = fp_tensor_new(&e.nrm, ctx, FP_F32, 1, &K);
        fp_tensor **vs[4] = {&e.out, &e.out2, &e.out3, NULL};
        for (int i = 0; i < 3 && !rc; i++)
            rc = fp_tensor_new(vs[i], ctx, FP_F32, 1, &D);
        if (!rc)
            rc = fp_tensor_new(&e.q, ctx, FP_U32, 1, &D);
        int64_t ws = fp_agg_norms_worksize(ctx, K, D);
        if (!rc)
            rc = fp_tensor_new(&e.work, ctx, FP_F32, 1, &ws);
        int64_t ows = fp_agg_order_worksize(ctx, K, D);
        if (!rc && ows)
            rc = fp_tensor_new(&e.owork, ctx, FP_F32, 1, &ows);
        if (!rc)
            rc = bench_fill(e.X, K * D, 1);
        if (!rc)
            rc = bench_fill(e.w, K, 2);
        if (!rc)
            rc = bench_fill(e.out2, D, 3);
        if (!rc)
            rc = bench_fill(e.out3, D, 4);
        for (int b = B_WSUM; b < B_COUNT && !rc; b++) {
            if (!bench_selected(b))
                continue;
            if (ki > 0 && (b == B_AXPY || b == B_RING_ADD || b == B_QUANT || b == B_DEQUANT || b == B_TIES_MEAN))
                continue; /* independent of K */
            /* every kernel is timed as the copy is (best of windows of at
             * least inner dispatches each: median and trimmed mean once had
             * one dispatch per window and two windows, when a dispatch took a
             * second; at 0.1-0.2 s that left their ratio to the copy at the
             * mercy of one noisy window), and each of its windows right after
             * a window of the copy: paired_ratio_to_copy is the kernel's
             * share of the copy's rate in the same moment (bench_reps.h), which
             * drift between the run's first copy and the kernel's turn does
             * not move. ratio_to_copy stays against the first copy. */
            bench_call kc = {&e, b, K}, cc = {&e, B_COPY, 1};
            fp_bench_paired_result pr;
            rc = fp_bench_paired(s, bench_call_record, &kc, bench_call_record, &cc, inner, runs, &pr);
            if (rc)
                break;
            double t = pr.best_s;
            int reps = pr.reps;
            double gbps = bench_bytes(b, K, D, copy_n) / t / 1e9;
            double paired = pr.ratio * bench_bytes(b, K, D, copy_n) / bench_bytes(B_COPY, 1, D, copy_n);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "kernel", bench_names[b]);
            cJSON_AddNumberToObject(o, "K", (double)K);
            cJSON_AddStringToObject(o, "variant", fp_agg_last_variant());
            cJSON_AddNumberToObject(o, "ms", t * 1e3);
            cJSON_AddNumberToObject(o, "calls_per_submit", reps);
            cJSON_AddNumberToObject(o, "gbps", gbps);
            cJSON_AddNumberToObject(o, "ratio_to_copy", copy_gbps > 0 ? gbps / copy_gbps : 0);
            cJSON_AddNumberToObject(o, "ratio_to_transfer_copy", tcopy_gbps > 0 ? gbps / tcopy_gbps : 0);
            cJSON_AddNumberToObject(o, "paired_copy_gbps",
                                    pr.yard_s > 0 ? bench_bytes(B_COPY, 1, D, copy_n) / pr.yard_s / 1e9 : 0);
            cJSON_AddNumberToObject(o, "paired_ratio_to_copy", paired);
            cJSON_AddNumberToObject(o, "pairs", runs);
            cJSON_AddBoolToObject(o, "streaming", bench_streaming[b]);
            if (b == B_MEDIAN || b == B_TRIM_MEAN)
                cJSON_AddBoolToObject(o, "gathered", e.owork != NULL);
            cJSON_AddItemToArray(arr, o);
            if (bench_streaming[b] && copy_gbps > 0 && gbps / copy_gbps < worst_stream_ratio)
                worst_stream_ratio = gbps / copy_gbps;
            if (bench_streaming[b] && paired < worst_stream_paired)
                worst_stream_paired = paired;
            if (paired < worst_paired)
                worst_paired = paired, worst_paired_kernel = bench_names[b], worst_paired_K = K;
        }
        bench_free(&e, 0);
    }
    bench_free(&e, 1);
    fp_stream_free(s);
    if (rc) {
        cJSON_Delete(root);
        return fp_adderr(rc, "bench aggregate");
    }
    cJSON_AddNumberToObject(root, "worst_streaming_ratio", worst_stream_ratio < 1e29 ? worst_stream_ratio : 0);
    cJSON_AddNumberToObject(root, "worst_streaming_paired_ratio", worst_stream_paired < 1e29 ? worst_stream_paired : 0);
    /* every kernel timed, streaming or not: the "at least half the
     * copy" is over all of them */
    cJSON_AddNumberToObject(root, "worst_paired_ratio", worst_paired < 1e29 ? worst_paired : 0);
    if (worst_paired_kernel) {
        cJSON_AddStringToObject(root, "worst_paired_kernel", worst_paired_kernel);
        cJSON_AddNumberToObject(root, "worst_paired_K", (double)worst_paired_K);
    }
    *json_out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *json_out ? 0 : fp_seterr(FP_ENOMEM, "bench aggregate: out of memory");
}
