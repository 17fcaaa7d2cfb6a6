/* Host wrapper of the matmul kernels in shaders/matmul/: variant table, choice
 * by profile / tuned values, shape checks, vec4 alignment checks, chunking past
 * the storage range, batch splitting. */
#include "fedproxy/ops_matmul.h"
#include "error_internal.h"

#include "fedproxy/ops_basic.h"
#include "bind_window.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MM_SPLITK_MAX 16 /* most K chunks of one split-K product */

enum mm_kind { MM_SG, MM_REG, MM_TILED, MM_CM, MM_CM_EMU };

struct mm_var {
    const char *name;
    enum mm_kind kind;
    uint32_t tm, tn;     /* outputs per invocation */
    uint32_t wx, wy;     /* reg: workgroup shape */
    uint32_t bm, bn, bk; /* tiled, cm: workgroup tile */
    int heavy;           /* slow to build: llvmpipe's LLVM needs 10 s to a minute for each
                            of its pipelines (once per machine with Mesa's shader cache),
                            NVIDIA's compiler up to 30 s; quick probes and benches skip it */
    const char *split[MM_SPLITK_MAX - 1]; /* name reported for a split-K run: split[S-2] = "<name>+splitk<S>"
                              (static strings, as fp_matmul_desc.chosen promises) */
};

#define SK(n)                                                                                                  \
    {n "+splitk2",  n "+splitk3",  n "+splitk4",  n "+splitk5",  n "+splitk6",  n "+splitk7",  n "+splitk8",   \
     n "+splitk9",  n "+splitk10", n "+splitk11", n "+splitk12", n "+splitk13", n "+splitk14", n "+splitk15", \
     n "+splitk16"}

/* Measured on lavapipe (2 cores, 8-wide subgroups) with storage-buffer reads:
 * bigger per-invocation tiles win there because every non-uniform load is a
 * per-lane scalar loop; the accumulators spill to (L1) stack, which costs
 * less. With texel reads (the CPU default, see record) loads are cheap and the
 * sg tiles land within noise of each other: 19-30 GFLOP/s on 512^3-2048^3 and
 * the engine's shapes (fp bench kernels --only matmul). */
static const struct mm_var VARS[] = {
    {"sg_64x16", MM_SG, 64, 16, 0, 0, 0, 0, 0, 1, SK("sg_64x16")},
    {"sg_64x8", MM_SG, 64, 8, 0, 0, 0, 0, 0, 1, SK("sg_64x8")},
    {"sg_32x16", MM_SG, 32, 16, 0, 0, 0, 0, 0, 1, SK("sg_32x16")},
    {"sg_32x8", MM_SG, 32, 8, 0, 0, 0, 0, 0, 0, SK("sg_32x8")},
    {"sg_16x8", MM_SG, 16, 8, 0, 0, 0, 0, 0, 0, SK("sg_16x8")},
    {"reg_32x32", MM_REG, 32, 32, 8, 1, 0, 0, 0, 1, SK("reg_32x32")},
    {"reg_16x16", MM_REG, 16, 16, 8, 2, 0, 0, 0, 0, SK("reg_16x16")},
    {"reg_8x8", MM_REG, 8, 8, 8, 8, 0, 0, 0, 0, SK("reg_8x8")},
    {"reg_4x4", MM_REG, 4, 4, 8, 8, 0, 0, 0, 0, SK("reg_4x4")},
    {"tiled_small", MM_TILED, 4, 4, 0, 0, 32, 32, 8, 0, SK("tiled_small")},
    {"tiled_medium", MM_TILED, 4, 4, 0, 0, 64, 64, 16, 0, SK("tiled_medium")},
    /* heavy: on an H100 NVIDIA's compiler took 28-30 s per layout for it, and it ran
     * at 0.16-0.24 TFLOP/s (8x8 register tiles sized by spec constants) */
    {"tiled_large", MM_TILED, 8, 8, 0, 0, 128, 128, 16, 1, SK("tiled_large")},
    /* cooperative matrices (f16 inputs, f32 accumulation): 4 subgroups of 32, each
     * a quarter of the tile in 16x16 fragments; BK is fixed at 32 in the shader */
    {"cm_64x64", MM_CM, 0, 0, 128, 1, 64, 64, 32, 0, SK("cm_64x64")},
    {"cm_128x128", MM_CM, 0, 0, 128, 1, 128, 128, 32, 0, SK("cm_128x128")},
    /* test hook, not in fp_matmul_variant_names: mm_cm.comp with CM_EMULATE, the
     * matrix ops in scalar arithmetic on the same f16 tiles (needs f16 only) */
    {"cm_64x64_emu", MM_CM_EMU, 0, 0, 128, 1, 64, 64, 32, 0, SK("cm_64x64_emu")},
    {"cm_128x128_emu", MM_CM_EMU, 0, 0, 128, 1, 128, 128, 32, 0, SK("cm_128x128_emu")},
};
#define NVARS (sizeof VARS / sizeof VARS[0])

const char *const fp_matmul_variant_names[] = {"sg_64x16", "sg_64x8", "sg_32x16", "sg_32x8", "sg_16x8",
                                               "reg_32x32", "reg_16x16", "reg_8x8", "reg_4x4",
                                               "tiled_small", "tiled_medium", "tiled_large",
                                               "cm_64x64", "cm_128x128", NULL};

static const struct mm_var *find_var(const char *name)
{
    for (size_t i = 0; i < NVARS; i++)
        if (!strcmp(VARS[i].name, name))
            return &VARS[i];
    return NULL;
}

/* Shared memory of mm_cm.comp: f16 A and B slabs with rows padded by 8 halves,
 * plus one 16x16 f32 scratch per subgroup. */
static uint32_t cm_shared(const struct mm_var *v)
{
    return v->bm * (v->bk + 8) * 2 + v->bk * (v->bn + 8) * 2 + 4 * 256 * 4;
}

static int var_fits(const fp_profile *p, const struct mm_var *v)
{
    switch (v->kind) {
    case MM_SG:
        return p->subgroup_ops && p->subgroup_min == p->subgroup_max && p->subgroup_min >= 4 &&
               p->subgroup_min <= 128 && p->subgroup_min <= p->max_wg_invocations &&
               p->subgroup_min <= p->max_wg_size[0];
    case MM_REG:
        return v->wx * v->wy <= p->max_wg_invocations && v->wx <= p->max_wg_size[0] && v->wy <= p->max_wg_size[1];
    case MM_TILED: {
        uint32_t wx = v->bn / v->tn, wy = v->bm / v->tm;
        return wx * wy <= p->max_wg_invocations && wx <= p->max_wg_size[0] && wy <= p->max_wg_size[1] &&
               (v->bm + v->bn) * v->bk * 4u <= p->shared_mem;
    }
    case MM_CM:
        /* the shader addresses its 4 fragment quarters by gl_SubgroupID: exactly
         * 32-wide subgroups (NVIDIA's), f16 arithmetic and the coopmat features the
         * device was created with (profile coopmat) */
        return p->coopmat && p->fp16_arith && p->subgroup_ops && p->subgroup_min == 32 && p->subgroup_max == 32 &&
               v->wx <= p->max_wg_invocations && v->wx <= p->max_wg_size[0] && cm_shared(v) <= p->shared_mem;
    case MM_CM_EMU:
        return p->fp16_arith && v->wx <= p->max_wg_invocations && v->wx <= p->max_wg_size[0] &&
               cm_shared(v) <= p->shared_mem;
    }
    return 0;
}

int fp_matmul_variant_heavy(const char *name)
{
    const struct mm_var *v = name ? find_var(name) : NULL;
    return v && v->heavy;
}

int fp_matmul_variant_ok(fp_ctx *ctx, const char *name)
{
    const struct mm_var *v = name ? find_var(name) : NULL;
    return v && ctx && var_fits(fp_ctx_profile(ctx), v);
}

int fp_matmul_variant_f16(const char *name)
{
    const struct mm_var *v = name ? find_var(name) : NULL;
    return v && (v->kind == MM_CM || v->kind == MM_CM_EMU);
}

int fp_matmul_f16_allowed(fp_ctx *ctx)
{
    const char *e = getenv("FP_MATMUL_F16");
    if (e && e[0])
        return strcmp(e, "0") != 0;
    const char *t = ctx ? fp_measured_tune_get(fp_ctx_measured(ctx), "matmul.allow_f16") : NULL;
    return t && !strcmp(t, "1");
}

fp_matmul_desc fp_matmul_desc_make(int64_t M, int64_t N, int64_t K)
{
    fp_matmul_desc d;
    memset(&d, 0, sizeof d);
    d.M = M;
    d.N = N;
    d.K = K;
    d.batch = 1;
    d.alpha = 1.0f;
    return d;
}

fp_matmul_desc fp_matmul_desc_packed(int64_t M, int64_t N, int64_t K, int trans_a, int trans_b, float alpha,
                                     float beta)
{
    fp_matmul_desc d = fp_matmul_desc_make(M, N, K);
    d.trans_a = trans_a;
    d.trans_b = trans_b;
    d.lda = trans_a ? M : K;
    d.ldb = trans_b ? K : N;
    d.ldc = N;
    d.alpha = alpha;
    d.beta = beta;
    return d;
}

const char *fp_matmul_class(int64_t M, int64_t N, int64_t K)
{
    double f = (double)M * (double)N * (double)K;
    if (f <= 256.0 * 256.0 * 256.0)
        return "small";
    if (M <= 64 || N <= 64)
        return "skinny";
    if (f >= 1024.0 * 1024.0 * 1024.0)
        return "large";
    return "medium";
}

static const char *default_pick(const fp_profile *p, const char *cls, int64_t M, double flops)
{
    int cpu = fp_profile_is_cpu(p) || (p->quirks & FP_QUIRK_SLOW_WG_BARRIERS);
    int small = !strcmp(cls, "small") || !strcmp(cls, "skinny");
    /* CPU: small shapes sg_16x8, big ones sg_32x8 (the heavier tiles are faster
     * still but take llvmpipe's LLVM 10-60 s per pipeline to compile: tuning
     * only). Shapes under 128^3 (a LoRA step's rank-r products) take sg_32x8
     * from 64 rows and sg_16x8 below: on lavapipe (bench_matmul_splitk with
     * every variant) u = x A^T at 128x16x512 took 352 us with sg_32x8, 421 with
     * sg_16x8 and 910 with reg_8x8, their old pick; dB = dy^T u at 512x16x128
     * 485 / 553 / 862; dA = du^T x at 16x512x128 239 / 166 / 588 us. */
    int tiny = flops < 128.0 * 128.0 * 128.0;
    const char *order_cpu_sg[] = {tiny ? (M >= 64 ? "sg_32x8" : "sg_16x8") : small ? "sg_16x8" : "sg_32x8",
                                  "reg_16x16", "reg_8x8", "reg_4x4", NULL};
    /* GPU without a tuned choice: tiled_medium. On an H100 (fp bench kernels)
     * it reached 2.3-4.3 TFLOP/s on 1024-2048 and the engine's shapes, reg_4x4
     * 1.2-5.5, and tiled_large 0.16-0.24: never the untuned default */
    const char *order_gpu_big[] = {"tiled_medium", "reg_4x4", "tiled_small", "reg_8x8", NULL};
    const char *order_gpu_small[] = {"tiled_small", "reg_8x8", "reg_4x4", NULL};
    const char *const *order = cpu ? order_cpu_sg : small ? order_gpu_small : order_gpu_big;
    for (int i = 0; order[i]; i++) {
        const struct mm_var *v = find_var(order[i]);
        if (v && var_fits(p, v))
            return v->name;
    }
    return "reg_4x4";
}

const char *fp_matmul_pick(fp_ctx *ctx, int64_t M, int64_t N, int64_t K)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    const char *cls = fp_matmul_class(M, N, K);
    char key[64];
    if (fp_matmul_f16_allowed(ctx)) {
        /* reduced precision allowed: the tuned winner among all variants, else a
         * cooperative-matrix variant where one fits (128x128 tiles for large
         * shapes), else the f32 choice below */
        snprintf(key, sizeof key, "matmul.f16.%s", cls);
        const char *t = fp_measured_tune_get(fp_ctx_measured(ctx), key);
        const struct mm_var *v = t ? find_var(t) : NULL;
        if (v && v->kind != MM_CM_EMU && var_fits(p, v))
            return v->name;
        const char *cm[] = {!strcmp(cls, "large") ? "cm_128x128" : "cm_64x64", "cm_64x64"};
        for (int i = 0; i < 2; i++)
            if (var_fits(p, find_var(cm[i])))
                return cm[i];
    }
    snprintf(key, sizeof key, "matmul.f32.%s", cls);
    const char *t = fp_measured_tune_get(fp_ctx_measured(ctx), key);
    if (t) {
        const struct mm_var *v = find_var(t);
        if (v && v->kind != MM_CM && v->kind != MM_CM_EMU && var_fits(p, v))
            return v->name;
    }
    return default_pick(p, cls, M, (double)M * (double)N * (double)K);
}

struct mm_push {
    uint32_t M, N, K, lda, ldb, ldc, sa, sb, sc, oa, ob, oc;
    float alpha, beta;
    uint32_t zbase;
};

static int64_t need_elems(int64_t batch, int64_t stride, int64_t rows, int64_t cols, int64_t ld)
{
    if (rows == 0 || cols == 0)
        return 0;
    return (batch - 1) * stride + (rows - 1) * ld + cols;
}

/* Records one dispatch set (all batches) of variant v on the given bindings. */
static int record(fp_stream *s, const struct mm_var *v, int v4, const char *dt, const fp_tensor *A,
                  const fp_tensor *B, const fp_tensor *C, struct mm_push pc, int64_t batch, int ta, int tb,
                  int *texel)
{
    fp_ctx *ctx = fp_stream_ctx(s);
    const fp_profile *p = fp_ctx_profile(ctx);
    char name[48];
    uint32_t spec[10];
    uint32_t nspec, gx, gy, tile_n, tile_m;
    const char *kind = v->kind == MM_SG ? "sg" : v->kind == MM_REG ? "reg" : v->kind == MM_TILED ? "tiled" : "cm";
    if (v->kind == MM_CM || v->kind == MM_CM_EMU)
        snprintf(name, sizeof name, "mm_cm%u%s_%s", v->bm, v->kind == MM_CM_EMU ? "e" : "", dt);
    else
        snprintf(name, sizeof name, "mm_%s_%s%s", kind, dt, v4 && v->kind != MM_TILED ? "_v4" : "");
    /* sg: A and B as texels where the policy says so and both fit; f16/bf16 B
     * through a u32 view of its packed pairs (whole words only) */
    uint32_t comps = v4 ? 4 : 1;
    int half = B->dtype != FP_F32, tex = 0;
    fp_tensor *bu = NULL;
    if (v->kind == MM_SG && fp_ops_texel_reads(ctx) && fp_ctx_texel_fits(ctx, A, comps)) {
        if (!half) {
            tex = fp_ctx_texel_fits(ctx, B, comps);
        } else if (B->nbytes % 4 == 0) {
            int64_t words = (int64_t)(B->nbytes / 4);
            if (fp_tensor_view(&bu, (fp_tensor *)B, 0, FP_U32, 1, &words))
                fp_errclear(); /* not expected; the storage path runs */
            tex = bu && fp_ctx_texel_fits(ctx, bu, 1);
        }
    }
    if (tex)
        snprintf(name, sizeof name, "mm_sg_%s%s", half ? (B->dtype == FP_BF16 ? "bf16" : "f16") : "f32",
                 v4 ? "_v4t" : "_t");
    *texel = tex ? (int)comps : 0;
    switch (v->kind) {
    case MM_SG: {
        uint32_t sg = p->subgroup_min;
        uint32_t sp[8] = {sg, 1, 1, v->tm, v->tn, (uint32_t)ta, (uint32_t)tb, sg};
        memcpy(spec, sp, sizeof sp);
        nspec = 8;
        tile_n = sg * v->tn;
        tile_m = v->tm;
        break;
    }
    case MM_REG: {
        uint32_t sp[7] = {v->wx, v->wy, 1, v->tm, v->tn, (uint32_t)ta, (uint32_t)tb};
        memcpy(spec, sp, sizeof sp);
        nspec = 7;
        tile_n = v->wx * v->tn;
        tile_m = v->wy * v->tm;
        break;
    }
    case MM_CM:
    case MM_CM_EMU: {
        /* tile sizes are compile-time defines (arrays of fragments); 3, 4 unused */
        uint32_t sp[7] = {v->wx, 1, 1, v->bm, v->bn, (uint32_t)ta, (uint32_t)tb};
        memcpy(spec, sp, sizeof sp);
        nspec = 7;
        tile_n = v->bn;
        tile_m = v->bm;
        break;
    }
    default: {
        uint32_t sp[10] = {v->bn / v->tn, v->bm / v->tm, 1, v->bm, v->bn, (uint32_t)ta, (uint32_t)tb, v->bk, v->tm, v->tn};
        memcpy(spec, sp, sizeof sp);
        nspec = 10;
        tile_n = v->bn;
        tile_m = v->bm;
        break;
    }
    }
    fp_pipeline *pl;
    int rc = fp_pipeline_get(&pl, ctx, name, spec, nspec);
    if (rc) {
        fp_tensor_free(bu);
        return rc;
    }
    uint64_t gxx = (pc.N + (uint64_t)tile_n - 1) / tile_n, gyy = (pc.M + (uint64_t)tile_m - 1) / tile_m;
    uint32_t zmax = p->max_wg_count[2] ? p->max_wg_count[2] : 65535;
    if (gxx > p->max_wg_count[0] || gyy > p->max_wg_count[1]) {
        fp_tensor_free(bu);
        return fp_seterr(FP_EUNSUPPORTED, "matmul: %ux%u output needs %llux%llu workgroups of variant %s, more than %s allows",
                         pc.M, pc.N, (unsigned long long)gxx, (unsigned long long)gyy, v->name, p->name);
    }
    gx = (uint32_t)gxx;
    gy = (uint32_t)gyy;
    fp_binding bd[3] = {FP_R(A), FP_R(B), FP_W(C)};
    if (tex) {
        bd[0] = (fp_binding){A, 0, (int)comps};
        bd[1] = half ? FP_TEX1(bu) : (fp_binding){B, 0, (int)comps};
    }
    for (int64_t z = 0; z < batch && !rc; z += zmax) {
        int64_t nz = batch - z < zmax ? batch - z : zmax;
        pc.zbase = (uint32_t)z;
        rc = fp_stream_dispatch(s, pl, bd, 3, &pc, sizeof pc, gx, gy, (uint32_t)nz);
    }
    fp_tensor_free(bu); /* the stream keeps what it needs of a binding */
    return rc;
}

/* ---- split-K ------------------------------------------------------------------
 *
 * Why: a LoRA training step on an NVIDIA H100 (8 layers, hidden 512, intermediate
 * 1408, seq 256, rank 16, 7 target modules; fp bench train --profile) spent 28 of
 * its 40 ms GPU time in 370 matmul dispatches averaging 57 us, most of them tiny
 * rank-16 products: u = x A^T and du = dy B (M=256, N=16, K=512..1408), dB = dy^T u
 * (M=512..1408, N=16, K=256), dA = du^T x (M=16, N=512..1408, K=256). With reg_4x4
 * (32x32 outputs per 64-invocation workgroup) those have 8 to 44 workgroups on a
 * 132-SM GPU, each looping serially over the whole K.
 *
 * What: split K into S chunks of kc (the last one shorter when kc does not divide
 * K). For one matrix, chunk s is "batch" s of the same kernel, A and B offset by
 * s*kc along K through the batch strides, so one dispatch computes every full
 * chunk's partial product (alpha 1, beta 0) into slice s of a stream scratch
 * tensor, and a second one the short last chunk; for batch > 1 each chunk is one
 * dispatch over all batches. mm_splitk_reduce then writes C = alpha * sum_s P_s +
 * beta * C, s in fixed order: deterministic, and only the f32 summation order
 * differs from the unsplit kernel. Slices start on the device's storage alignment
 * (bound as separate views: no barrier between the partial dispatches).
 *
 * When (automatic): never on CPU devices (llvmpipe already has enough work per
 * core). On GPUs, when tiles * batch < MM_SPLITK_TARGET = 512 workgroups (about 4
 * per SM of a 132-SM H100; there is no SM count in the profile) and K >= 256:
 * S = min(512 / (tiles * batch), K / 64, 16), split when S >= 2. Chunks stay >= 64
 * long so each workgroup still amortises its partial write. The H100 LoRA shapes
 * above get S = 8 (K=512) to 16 (K=1408) for u/du and 4 for dB/dA (K=256); a
 * 256x512x512 base product (128 tiles) gets 4; 256x1408x512 (352 tiles) none.
 * Overrides: FP_MATMUL_SPLITK in the environment, else the tuned key
 * "matmul.splitk": "1" never splits, S >= 2 splits into S chunks on any device
 * (clamped to 16); "0", "auto" or anything else is the automatic rule.
 * The effective count is ceil(K / kc) with kc = ceil(K / S), kc rounded up to a
 * multiple of 4 when K is one (keeps the vec4 kernels): e.g. S > K gives K chunks
 * of 1, and fewer than 2 chunks means no split. */
#define MM_SPLITK_TARGET 512
#define MM_SPLITK_MIN_K 256
#define MM_SPLITK_MIN_CHUNK 64

static void var_tile(const fp_profile *p, const struct mm_var *v, uint32_t *tile_m, uint32_t *tile_n)
{
    switch (v->kind) {
    case MM_SG:
        *tile_m = v->tm;
        *tile_n = p->subgroup_min * v->tn;
        break;
    case MM_REG:
        *tile_m = v->wy * v->tm;
        *tile_n = v->wx * v->tn;
        break;
    default:
        *tile_m = v->bm;
        *tile_n = v->bn;
        break;
    }
}

/* Requested split: 0 automatic, 1 never, >= 2 forced (clamped to MM_SPLITK_MAX). */
static int splitk_request(fp_ctx *ctx)
{
    const char *e = getenv("FP_MATMUL_SPLITK");
    if (!e || !e[0])
        e = fp_measured_tune_get(fp_ctx_measured(ctx), "matmul.splitk");
    if (!e || !e[0])
        return 0;
    char *end;
    long v = strtol(e, &end, 10);
    if (end == e || *end || v < 1)
        return 0;
    return v > MM_SPLITK_MAX ? MM_SPLITK_MAX : (int)v;
}

/* Number of K chunks for this product (1: no split) and their length *kc. */
static int splitk_count(fp_ctx *ctx, const fp_profile *p, const struct mm_var *v, int64_t M, int64_t N, int64_t K,
                        int64_t batch, int64_t *kc)
{
    int req = splitk_request(ctx);
    int64_t S;
    if (req == 1 || K < 2)
        return 1;
    if (req >= 2) {
        S = req;
    } else {
        if (fp_profile_is_cpu(p) || K < MM_SPLITK_MIN_K)
            return 1;
        uint32_t tm, tn;
        var_tile(p, v, &tm, &tn);
        int64_t tiles = ((M + tm - 1) / tm) * ((N + tn - 1) / tn) * batch;
        if (tiles >= MM_SPLITK_TARGET)
            return 1;
        S = MM_SPLITK_TARGET / tiles;
        if (S > K / MM_SPLITK_MIN_CHUNK)
            S = K / MM_SPLITK_MIN_CHUNK;
        if (S > MM_SPLITK_MAX)
            S = MM_SPLITK_MAX;
        if (S < 2)
            return 1;
    }
    int64_t c = (K + S - 1) / S;
    if (K % 4 == 0)
        c = (c + 3) & ~(int64_t)3;
    *kc = c;
    return (int)((K + c - 1) / c);
}

struct sk_push {
    uint32_t M, N, S, batch, ldc, sc, oc, pstride;
    float alpha, beta;
};

/* Records the split product of S chunks of kc. Returns 1 (nothing recorded, error
 * cleared) when the scratch cannot be had: the caller runs the unsplit path. */
static int record_splitk(fp_stream *s, const struct mm_var *v, int v4, const char *dt, const fp_tensor *A,
                         const fp_tensor *B, fp_tensor *C, struct mm_push pc, int64_t batch, int ta, int tb, int S,
                         int64_t kc, int *texel)
{
    fp_ctx *ctx = fp_stream_ctx(s);
    const fp_profile *p = fp_ctx_profile(ctx);
    int64_t M = pc.M, N = pc.N, K = pc.K;
    int64_t ae = p->min_storage_align > 4 ? (int64_t)p->min_storage_align / 4 : 1;
    int64_t ps = batch * M * N;
    ps = (ps + ae - 1) / ae * ae; /* slice stride: every slice starts aligned */
    int64_t total = ps * S;
    if (total > 0xffffffffLL || (uint64_t)total * 4 > p->storage_range)
        return 1;
    fp_tensor *P = NULL;
    if (fp_stream_scratch(s, &P, FP_F32, total)) {
        fp_errclear();
        return 1;
    }
    int64_t stepa = ta ? pc.lda : 1, stepb = tb ? 1 : pc.ldb; /* elements per step along K */
    int64_t nfull = K / kc, rem = K - nfull * kc;
    struct mm_push q = pc;
    q.ldc = (uint32_t)N;
    q.oc = 0;
    q.alpha = 1.0f;
    q.beta = 0.0f;
    int rc = 0;
    /* batch 1: one dispatch of nfull chunks as batches, then the short one;
     * batch > 1: one dispatch per chunk over all batches */
    int64_t ndisp = batch == 1 ? 1 + (rem > 0) : S;
    for (int64_t i = 0; i < ndisp && !rc; i++) {
        int64_t c0 = batch == 1 ? i * nfull : i;       /* first chunk of this dispatch */
        int64_t nch = batch == 1 && i == 0 ? nfull : 1; /* chunks in it */
        int64_t len = c0 < nfull ? kc : rem;
        q.K = (uint32_t)len;
        q.oa = (uint32_t)(c0 * kc * stepa);
        q.ob = (uint32_t)(c0 * kc * stepb);
        if (batch == 1) {
            q.sa = (uint32_t)(kc * stepa);
            q.sb = (uint32_t)(kc * stepb);
            q.sc = (uint32_t)ps;
        } else {
            q.sc = (uint32_t)(M * N);
        }
        fp_tensor *pv = NULL;
        int64_t ne = nch * ps;
        rc = fp_tensor_view(&pv, P, c0 * ps, FP_F32, 1, &ne);
        if (!rc)
            rc = record(s, v, v4, dt, A, B, pv, q, batch == 1 ? nch : batch, ta, tb, texel);
        fp_tensor_free(pv);
    }
    if (rc)
        return rc;
    fp_pipeline *pl;
    uint32_t spec[3] = {64, 1, 1};
    rc = fp_pipeline_get(&pl, ctx, "mm_splitk_reduce", spec, 3);
    if (rc)
        return rc;
    struct sk_push sp = {(uint32_t)M, (uint32_t)N, (uint32_t)S, (uint32_t)batch, pc.ldc, pc.sc, pc.oc,
                         (uint32_t)ps, pc.alpha, pc.beta};
    uint32_t gx, gy;
    fp_grid_1d((uint32_t)(batch * M * N), 64, &gx, &gy);
    fp_binding bd[2] = {FP_R(P), FP_W(C)};
    rc = fp_stream_dispatch(s, pl, bd, 2, &sp, sizeof sp, gx, gy, 1);
    if (!rc) /* the reduce is P's last use: later split products may reuse it */
        rc = fp_stream_scratch_release(s, P);
    return rc;
}

int fp_matmul(fp_stream *s, fp_tensor *C, const fp_tensor *A, const fp_tensor *B, fp_matmul_desc *d)
{
    if (!s || !C || !A || !B || !d)
        return fp_seterr(FP_EINVAL, "matmul: NULL argument");
    d->chosen = NULL;
    d->texel = 0;
    fp_ctx *ctx = fp_stream_ctx(s);
    const fp_profile *p = fp_ctx_profile(ctx);
    int64_t M = d->M, N = d->N, K = d->K, batch = d->batch > 0 ? d->batch : 1;
    if (M < 0 || N < 0 || K < 0 || d->batch < 0 || d->lda < 0 || d->ldb < 0 || d->ldc < 0 || d->stride_a < 0 ||
        d->stride_b < 0 || d->stride_c < 0)
        return fp_seterr(FP_EINVAL, "matmul: negative size or stride (M=%lld N=%lld K=%lld)", (long long)M,
                         (long long)N, (long long)K);
    if (A->dtype != FP_F32 || C->dtype != FP_F32)
        return fp_seterr(FP_ESHAPE, "matmul: A and C must be f32 (got A %s, C %s)", fp_dtype_name(A->dtype),
                         fp_dtype_name(C->dtype));
    if (B->dtype != FP_F32 && B->dtype != FP_F16 && B->dtype != FP_BF16)
        return fp_seterr(FP_ESHAPE, "matmul: B must be f32, f16 or bf16 (got %s)", fp_dtype_name(B->dtype));
    int ta = d->trans_a != 0, tb = d->trans_b != 0;
    int64_t ar = ta ? K : M, ac = ta ? M : K; /* stored shapes */
    int64_t br = tb ? N : K, bc = tb ? K : N;
    int64_t lda = d->lda ? d->lda : ac, ldb = d->ldb ? d->ldb : bc, ldc = d->ldc ? d->ldc : N;
    int64_t sa = d->stride_a ? d->stride_a : ar * ac, sb = d->stride_b ? d->stride_b : br * bc;
    int64_t sc = d->stride_c ? d->stride_c : M * N;
    if (lda < ac || ldb < bc || ldc < N)
        return fp_seterr(FP_ESHAPE, "matmul: leading dimensions lda=%lld ldb=%lld ldc=%lld below row lengths %lld, %lld, %lld",
                         (long long)lda, (long long)ldb, (long long)ldc, (long long)ac, (long long)bc, (long long)N);
    /* packed 2-D tensors must have exactly the stored matrix shape */
    struct { const fp_tensor *t; int64_t r, c, ld; const char *nm; } chk[3] = {
        {A, ar, ac, d->lda, "A"}, {B, br, bc, d->ldb, "B"}, {C, M, N, d->ldc, "C"}};
    for (int i = 0; i < 3; i++)
        if (batch == 1 && chk[i].ld == 0 && chk[i].t->ndim == 2 &&
            (chk[i].t->shape[0] != chk[i].r || chk[i].t->shape[1] != chk[i].c))
            return fp_seterr(FP_ESHAPE,
                             "matmul: %s is %lldx%lld but M=%lld N=%lld K=%lld%s%s needs %s stored as %lldx%lld",
                             chk[i].nm, (long long)chk[i].t->shape[0], (long long)chk[i].t->shape[1], (long long)M,
                             (long long)N, (long long)K, ta ? " transA" : "", tb ? " transB" : "", chk[i].nm,
                             (long long)chk[i].r, (long long)chk[i].c);
    int64_t na = need_elems(batch, sa, ar, ac, lda), nb = need_elems(batch, sb, br, bc, ldb);
    int64_t ncn = need_elems(batch, sc, M, N, ldc);
    if (fp_tensor_numel(A) < na || fp_tensor_numel(B) < nb || fp_tensor_numel(C) < ncn)
        return fp_seterr(FP_ESHAPE,
                         "matmul: M=%lld N=%lld K=%lld batch=%lld needs %lld elements of A, %lld of B, %lld of C; "
                         "tensors have %lld, %lld, %lld",
                         (long long)M, (long long)N, (long long)K, (long long)batch, (long long)na, (long long)nb,
                         (long long)ncn, (long long)fp_tensor_numel(A), (long long)fp_tensor_numel(B),
                         (long long)fp_tensor_numel(C));
    const int64_t U32 = 0xffffffffLL;
    if (na > U32 || nb > U32 || ncn > U32)
        return fp_seterr(FP_EUNSUPPORTED, "matmul: more than 2^32 elements in one operand (A %lld, B %lld, C %lld)",
                         (long long)na, (long long)nb, (long long)ncn);

    const struct mm_var *v;
    if (d->variant) {
        v = find_var(d->variant);
        if (!v)
            return fp_seterr(FP_EINVAL, "matmul: unknown variant '%s'", d->variant);
        if (!var_fits(p, v))
            return fp_seterr(FP_EUNSUPPORTED, "matmul: variant '%s' cannot run on %s (overlay '%s')%s", v->name,
                             p->name, p->overlay,
                             v->kind == MM_CM_EMU ? ": needs f16 arithmetic, 128 invocations and its shared memory"
                             : v->kind != MM_CM ? ""
                             : !p->coopmat ? ": no usable cooperative matrix (VK_NV_cooperative_matrix with a "
                                             "16x16x16 f16 subgroup shape, f16 arithmetic, Vulkan memory model)"
                                           : ": needs subgroups of exactly 32, subgroup ops and its shared memory");
    } else {
        v = find_var(fp_matmul_pick(ctx, M, N, K));
    }
    d->chosen = v->name;
    if (M == 0 || N == 0)
        return 0;

    const char *dt = B->dtype == FP_F32 ? "f32" : B->dtype == FP_BF16 ? "bf16" : p->storage16 ? "f16s" : "f16";
    int v4 = K % 4 == 0 && lda % 4 == 0 && ldb % 4 == 0 && (batch == 1 || (sa % 4 == 0 && sb % 4 == 0)) &&
             (tb || N % 4 == 0) && (!ta || v->kind != MM_REG || M % 4 == 0);
    struct mm_push pc = {(uint32_t)M, (uint32_t)N, (uint32_t)K, (uint32_t)lda, (uint32_t)ldb, (uint32_t)ldc,
                         (uint32_t)sa, (uint32_t)sb, (uint32_t)sc, 0, 0, 0, d->alpha, d->beta, 0};
    if (K == 0) {
        /* C = beta*C: scale through a tiny K=0 dispatch of the general kernel */
        v4 = 0;
    }
    uint64_t range = p->storage_range;
    if (A->nbytes <= range && B->nbytes <= range && C->nbytes <= range) {
        int64_t kc = 0;
        int S = splitk_count(ctx, p, v, M, N, K, batch, &kc);
        if (S >= 2 && batch * M * N <= 0xffffffffLL) {
            int rc = record_splitk(s, v, v4, dt, A, B, C, pc, batch, ta, tb, S, kc, &d->texel);
            if (rc != 1) {
                if (!rc)
                    d->chosen = v->split[S - 2];
                return rc;
            }
        }
        return record(s, v, v4, dt, A, B, C, pc, batch, ta, tb, &d->texel);
    }

    /* Chunk along M: rows of A (not transposed) and C, one matrix, B bound whole. */
    if (batch != 1 || ta || B->nbytes > range)
        return fp_seterr(FP_EUNSUPPORTED,
                         "matmul: operands of %llu, %llu, %llu bytes exceed %s's storage range of %llu bytes and "
                         "can only be split along M for one matrix with A not transposed and B within range",
                         (unsigned long long)A->nbytes, (unsigned long long)B->nbytes, (unsigned long long)C->nbytes,
                         p->name, (unsigned long long)range);
    uint64_t align = p->min_storage_align ? p->min_storage_align : 4;
    int64_t q = 1; /* row step keeping both view offsets aligned */
    while (((uint64_t)(q * lda * 4) % align) || ((uint64_t)(q * ldc * 4) % align))
        q++;
    int64_t rows_a = (int64_t)(range / 4 - (uint64_t)K) / lda + 1, rows_c = (int64_t)(range / 4 - (uint64_t)N) / ldc + 1;
    int64_t mc = rows_a < rows_c ? rows_a : rows_c;
    mc -= mc % q;
    if (mc <= 0)
        return fp_seterr(FP_EUNSUPPORTED, "matmul: one row of A (%lld) or C (%lld floats) exceeds the storage range",
                         (long long)lda, (long long)ldc);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        int64_t rows = M - m0 < mc ? M - m0 : mc;
        fp_tensor *av = NULL, *cv = NULL;
        int64_t sha = (rows - 1) * lda + K, shc = (rows - 1) * ldc + N;
        int rc = fp_tensor_view(&av, (fp_tensor *)A, m0 * lda, FP_F32, 1, &sha);
        if (!rc)
            rc = fp_tensor_view(&cv, C, m0 * ldc, FP_F32, 1, &shc);
        if (!rc) {
            struct mm_push pcc = pc;
            pcc.M = (uint32_t)rows;
            int t = 0;
            rc = record(s, v, v4, dt, av, B, cv, pcc, 1, ta, tb, &t);
            d->texel = m0 == 0 || t == d->texel ? t : 0; /* 0 if any chunk read storage buffers */
        }
        fp_tensor_free(cv);
        fp_tensor_free(av);
        if (rc)
            return rc;
    }
    return 0;
}
