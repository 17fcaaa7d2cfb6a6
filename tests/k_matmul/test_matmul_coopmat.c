/* The cooperative-matrix matmul variants (cm_*: f16 inputs, f32 accumulation).
 *
 * Where a profile can run them (an NVIDIA GPU with VK_NV_cooperative_matrix, native
 * profile or the 'nvidia' overlay): fp_matmul forced to each cm variant against
 * fp_matmul_ref on N(0,1) inputs: tile-odd sizes (1, 7, 33, 257, 1000), aligned
 * ones, all four transpositions, beta != 0, alpha != 1, K = 0, padded leading
 * dimensions, batches with gaps, f16 and bf16 B. Threshold NMSE <= 1e-5: rounding
 * each input to f16 is a relative error of at most 2^-11 (std ~2.8e-4), so a
 * product is off by ~4e-4 relative and the NMSE of a K-term sum of N(0,1)
 * products is ~1.6e-7 whatever K; 1e-5 leaves 60x margin while a lost tile,
 * a wrong index or f16 accumulation (NMSE >= 1e-4 at K >= 257) fails it. Max
 * error <= 4e-3 * sqrt(K) * max(1, |alpha|) (~10 sigma of that per-output error).
 *
 * Everywhere else (lavapipe, every overlay that removes them): fp_matmul_variant_ok
 * is false, forcing one by name is FP_EUNSUPPORTED naming it, and fp_matmul_pick
 * never returns one, with or without FP_MATMUL_F16=1.
 *
 * With no profile able to run them the test ends with exit code 77 (SKIP in
 * CTest: SKIP_RETURN_CODE) after those checks: a skip, never a pass.
 *
 * FP_CM_EMU=1 (test_matmul_coopmat_emu) runs the same cases through the test hooks
 * cm_*_emu instead: the cm kernel's staging, zero padding, fragment offsets and
 * epilogue with the matrix operations emulated in scalar arithmetic on the same
 * f16 tiles, which any device with f16 arithmetic runs (lavapipe: so the tiling
 * is checked on every machine, the tensor-core instructions only on a GPU). */
#include "mm_common.h"

static const char *const CM_REAL[] = {"cm_64x64", "cm_128x128"};
static const char *const CM_EMU[] = {"cm_64x64_emu", "cm_128x128_emu"};
#define NCM 2

static fp_ctx *ctx_new(const char *profile)
{
    fp_ctx_opts o = {0};
    o.validate = 1;
    o.profile = profile;
    o.profiling = 1; /* per-dispatch pipeline names: the test prints which one ran */
    fp_ctx *ctx = NULL;
    if (fp_ctx_create(&ctx, &o)) {
        fprintf(stderr, "cannot create a Vulkan context (profile '%s'): %s\n", profile, fp_errmsg());
        exit(2);
    }
    const fp_profile *p = fp_ctx_profile(ctx);
    printf("device: %s, overlay '%s', coopmat %d, fp16 %d, subgroup %u..%u, shared %u\n", p->name, p->overlay,
           p->coopmat, p->fp16_arith, p->subgroup_min, p->subgroup_max, p->shared_mem);
    return ctx;
}

/* One case on N(0,1) data; B in dtype bt (the reference uses the same rounded B). */
static void cm_case(fp_ctx *ctx, fp_matmul_desc d, fp_dtype bt, const char *tag)
{
    int64_t M = d.M, N = d.N, K = d.K, batch = d.batch > 0 ? d.batch : 1;
    int64_t ar = d.trans_a ? K : M, ac = d.trans_a ? M : K, br = d.trans_b ? N : K, bc = d.trans_b ? K : N;
    int64_t lda = d.lda ? d.lda : ac, ldb = d.ldb ? d.ldb : bc, ldc = d.ldc ? d.ldc : N;
    int64_t sa = d.stride_a ? d.stride_a : ar * ac, sb = d.stride_b ? d.stride_b : br * bc;
    int64_t sc = d.stride_c ? d.stride_c : M * N;
    int64_t na = mm_elems(batch, sa, ar, lda), nb = mm_elems(batch, sb, br, ldb), nc = mm_elems(batch, sc, M, ldc);
    if (na < 1) na = 1;
    if (nb < 1) nb = 1;
    if (nc < 1) nc = 1;
    float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb), *c0 = malloc(sizeof(float) * nc);
    float *ref = malloc(sizeof(float) * nc), *out = malloc(sizeof(float) * nc);
    uint16_t *b16 = malloc(sizeof(uint16_t) * nb);
    for (int64_t i = 0; i < na; i++) a[i] = fp_test_normal();
    for (int64_t i = 0; i < nb; i++) {
        b[i] = fp_test_normal();
        if (bt == FP_F16) b16[i] = fp_f32_to_f16(b[i]);
        if (bt == FP_BF16) b16[i] = fp_f32_to_bf16(b[i]);
    }
    for (int64_t i = 0; i < nc; i++) c0[i] = fp_test_normal();
    memcpy(ref, c0, sizeof(float) * nc);
    if (bt == FP_F32)
        fp_matmul_ref(ref, a, b, &d);
    else
        fp_matmul_ref_b16(ref, a, b16, bt, &d);
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 1, &na));
    CHECK_OK(fp_tensor_new(&B, ctx, bt, 1, &nb));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 1, &nc));
    CHECK_OK(fp_stream_new(&s, ctx));
    if (!A || !B || !C || !s)
        goto done;
    CHECK_OK(fp_tensor_upload(A, a, sizeof(float) * na));
    CHECK_OK(fp_tensor_upload(B, bt == FP_F32 ? (void *)b : (void *)b16, (size_t)nb * fp_dtype_size(bt)));
    CHECK_OK(fp_tensor_upload(C, c0, sizeof(float) * nc));
    const char *want = d.variant;
    int rc = fp_matmul(s, C, A, B, &d);
    CHECKF(rc == 0, "%s %s: fp_matmul: %s", tag, want, fp_errmsg());
    if (rc)
        goto done;
    /* on GPUs small-output shapes may run split-K: "<want>+splitk<n>" */
    size_t wl = strlen(want);
    CHECKF(d.chosen && !strncmp(d.chosen, want, wl) && (!d.chosen[wl] || !strncmp(d.chosen + wl, "+splitk", 7)),
           "%s: asked for %s, recorded %s", tag, want, d.chosen);
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(out, sizeof(float) * nc, C));
    fp_dispatch_time dt[4];
    uint32_t ndt = 0;
    if (fp_stream_timings(s, dt, 4, &ndt) != 0)
        ndt = 0;
    double e = fp_test_nmse(out, ref, nc), mx = fp_test_maxerr(out, ref, nc);
    double fa = fabs(d.alpha) > 1 ? fabs(d.alpha) : 1, lim = 4e-3 * sqrt((double)(K > 0 ? K : 1)) * fa;
    printf("  %-12s %-10s %-14s M=%lld N=%lld K=%lld b=%lld %s%s B=%s a=%g b=%g: nmse %.2e max %.2e\n", tag,
           d.chosen, ndt ? dt[0].pipeline : "?", (long long)M, (long long)N, (long long)K, (long long)batch,
           d.trans_a ? "T" : "N", d.trans_b ? "T" : "N", fp_dtype_name(bt), d.alpha, d.beta, e, mx);
    CHECKF(e <= 1e-5 && mx <= lim, "%s %s M=%lld N=%lld K=%lld: nmse %g (limit 1e-5) max %g (limit %g)", tag,
           d.chosen, (long long)M, (long long)N, (long long)K, e, mx, lim);
    if (ndt)
        CHECKF(strncmp(dt[0].pipeline, "mm_cm", 5) == 0, "%s: pipeline %s is not a cooperative-matrix one", tag,
               dt[0].pipeline);
done:
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
    free(a); free(b); free(c0); free(ref); free(out); free(b16);
}

static fp_matmul_desc cd(const char *v, int64_t M, int64_t N, int64_t K, int ta, int tb)
{
    fp_matmul_desc d = mm_d(M, N, K, ta, tb);
    d.variant = v;
    return d;
}

/* The full set on one variant (native profile); small: the big shapes once each
 * (the emulation on lavapipe). */
static void suite(fp_ctx *ctx, const char *v, int small)
{
    static const int sizes[][3] = {{1, 1, 1}, {7, 33, 257}, {33, 7, 19}, {257, 1000, 65}, {128, 128, 128},
                                   {256, 64, 512}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int t = 0; t < 4; t++) {
            if (i == 3 && t != 0 && t != 3) /* the wide one twice */
                continue;
            if (small && i >= 3 && t != (int)i - 3)
                continue;
            cm_case(ctx, cd(v, sizes[i][0], sizes[i][1], sizes[i][2], t >> 1, t & 1), FP_F32, "layout");
        }
    fp_matmul_desc d = cd(v, 70, 45, 100, 0, 0);
    d.beta = 0.75f;
    d.alpha = -1.5f;
    cm_case(ctx, d, FP_F32, "alpha-beta");
    d = cd(v, 64, 64, 64, 1, 1);
    d.beta = 1.0f;
    cm_case(ctx, d, FP_F32, "accumulate");
    d = cd(v, 5, 6, 0, 0, 0);
    d.beta = 2.0f;
    cm_case(ctx, d, FP_F32, "K=0");
    d = cd(v, 9, 10, 11, 0, 1);
    d.lda = 15; d.ldb = 13; d.ldc = 12;
    cm_case(ctx, d, FP_F32, "ld");
    d = cd(v, 33, 17, 40, 0, 1);
    d.batch = 3; d.stride_a = 33 * 40 + 5; d.stride_b = 17 * 40 + 3; d.stride_c = 33 * 17 + 7;
    d.alpha = 0.5f; d.beta = 1.0f;
    cm_case(ctx, d, FP_F32, "batched");
    d = cd(v, 64, 96, 32, 1, 0);
    d.batch = 5;
    cm_case(ctx, d, FP_F32, "batched-al");
    for (int bt = FP_F16; bt <= FP_BF16; bt++) {
        cm_case(ctx, cd(v, 100, 136, 264, 0, 1), (fp_dtype)bt, "w16 x*W^T");
        cm_case(ctx, cd(v, 7, 9, 13, 0, 0), (fp_dtype)bt, "w16 odd");
        d = cd(v, 40, 72, 48, 1, 0);
        d.beta = 1.0f;
        cm_case(ctx, d, (fp_dtype)bt, "w16 acc");
    }
}

/* The auto choice: never f16 without the switch; with it, a cm variant exactly
 * where one can run. */
static void check_pick(fp_ctx *ctx, int any_ok)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {64, 64, 64}, {8, 2048, 512}, {512, 512, 512},
                                        {1024, 1024, 1024}, {2048, 512, 2048}};
    unsetenv("FP_MATMUL_F16");
    int tuned16 = fp_matmul_f16_allowed(ctx); /* a measured profile may allow it */
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const char *v = fp_matmul_pick(ctx, shapes[i][0], shapes[i][1], shapes[i][2]);
        if (!tuned16)
            CHECKF(!fp_matmul_variant_f16(v), "pick without FP_MATMUL_F16 chose %s", v);
        CHECKF(fp_matmul_variant_ok(ctx, v), "pick chose %s, which cannot run here", v);
    }
    setenv("FP_MATMUL_F16", "0", 1);
    CHECK(!fp_matmul_f16_allowed(ctx));
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const char *v = fp_matmul_pick(ctx, shapes[i][0], shapes[i][1], shapes[i][2]);
        CHECKF(!fp_matmul_variant_f16(v), "pick with FP_MATMUL_F16=0 chose %s", v);
    }
    setenv("FP_MATMUL_F16", "1", 1);
    CHECK(fp_matmul_f16_allowed(ctx));
    const char *big = fp_matmul_pick(ctx, 1024, 1024, 1024);
    printf("  FP_MATMUL_F16=1: 1024^3 picks %s, 64^3 %s\n", big, fp_matmul_pick(ctx, 64, 64, 64));
    if (any_ok)
        CHECKF(fp_matmul_variant_f16(big) && fp_matmul_variant_ok(ctx, big),
               "FP_MATMUL_F16=1 with a usable cm variant picked %s", big);
    else
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const char *v = fp_matmul_pick(ctx, shapes[i][0], shapes[i][1], shapes[i][2]);
            CHECKF(!fp_matmul_variant_f16(v), "pick chose %s where no cm variant runs", v);
        }
    unsetenv("FP_MATMUL_F16");
}

/* A cm variant this profile cannot run is refused by name. */
static void check_refused(fp_ctx *ctx, const char *v)
{
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    int64_t sh[2] = {4, 4};
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_matmul_desc d = cd(v, 4, 4, 4, 0, 0);
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_EUNSUPPORTED);
    CHECKF(strstr(fp_errmsg(), v) != NULL, "refusal of %s does not name it: '%s'", v, fp_errmsg());
    printf("  %s refused: %s\n", v, fp_errmsg());
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
}

int main(void)
{
    const char *emu_env = getenv("FP_CM_EMU");
    int emu = emu_env && emu_env[0] == '1';
    const char *const *CM = emu ? CM_EMU : CM_REAL;
    fp_test_seed(4242);
    CHECK(fp_matmul_variant_f16("cm_64x64") && fp_matmul_variant_f16("cm_128x128"));
    CHECK(!fp_matmul_variant_f16("tiled_medium") && !fp_matmul_variant_f16("reg_4x4") && !fp_matmul_variant_f16(NULL));
    int listed = 0;
    for (int i = 0; fp_matmul_variant_names[i]; i++)
        listed += fp_matmul_variant_f16(fp_matmul_variant_names[i]);
    CHECK(listed == NCM);
    CHECK(fp_matmul_variant_f16("cm_64x64_emu"));
    for (int i = 0; fp_matmul_variant_names[i]; i++) /* the hooks are never listed (benchmarked, tuned) */
        CHECK(strstr(fp_matmul_variant_names[i], "emu") == NULL);

    int ran = 0;
    char device[FP_PROFILE_NAME_MAX] = "";
    for (int o = -1; o < 0 || fp_overlay_builtin_names[o]; o++) {
        const char *prof = o < 0 ? "" : fp_overlay_builtin_names[o];
        printf("== profile '%s'\n", prof);
        fp_ctx *ctx = ctx_new(prof);
        const fp_profile *p = fp_ctx_profile(ctx);
        if (o < 0)
            snprintf(device, sizeof device, "%s", p->name);
        if (o < 0 && p->vendor == FP_VENDOR_NVIDIA && !p->coopmat)
            printf("NOTE: NVIDIA device without usable cooperative matrices: VK_NV_cooperative_matrix, its "
                   "cooperativeMatrix feature for compute, a subgroup 16x16x16 f16*f16+f32 shape, shaderFloat16 or "
                   "vulkanMemoryModel is missing (or FP_NO_COOPMAT / FP_NO_FP16 is set)\n");
        for (int i = 0; i < NCM; i++) {
            int ok = fp_matmul_variant_ok(ctx, CM[i]);
            if (!emu && (!p->coopmat || !p->fp16_arith || p->subgroup_min != 32 || p->subgroup_max != 32))
                CHECKF(!ok, "%s claims to run on '%s' without coopmat/fp16/32-wide subgroups", CM[i], prof);
            if (emu && !p->fp16_arith)
                CHECKF(!ok, "%s claims to run on '%s' without f16 arithmetic", CM[i], prof);
            if (!ok) {
                check_refused(ctx, CM[i]);
                continue;
            }
            if (o < 0 && emu && i > 0) {
                /* the emulated 128x128 tile: the code of the 64x64 one with other
                 * defines; a few cases keep lavapipe's compile time down */
                cm_case(ctx, cd(CM[i], 7, 33, 257, 1, 1), FP_F32, "layout");
                cm_case(ctx, cd(CM[i], 257, 300, 65, 0, 0), FP_F32, "layout");
                fp_matmul_desc d = cd(CM[i], 133, 17, 40, 0, 0);
                d.batch = 2; d.beta = 0.5f;
                cm_case(ctx, d, FP_F32, "batched");
                cm_case(ctx, cd(CM[i], 100, 136, 264, 0, 1), FP_F16, "w16 x*W^T");
            } else if (o < 0) {
                suite(ctx, CM[i], emu);
            } else { /* an overlay that keeps them (nvidia): a few cases */
                cm_case(ctx, cd(CM[i], 7, 33, 257, 0, 1), FP_F32, "overlay");
                cm_case(ctx, cd(CM[i], 130, 70, 40, 1, 0), FP_F16, "overlay");
            }
            ran++;
        }
        /* the auto choice only ever takes the real variants, never the hooks */
        check_pick(ctx, fp_matmul_variant_ok(ctx, CM_REAL[0]) || fp_matmul_variant_ok(ctx, CM_REAL[1]));
        fp_test_ctx_done(ctx);
    }
    int rc = fp_test_report(emu ? "test_matmul_coopmat (FP_CM_EMU=1: emulated matrix ops)" : "test_matmul_coopmat");
    if (rc)
        return rc;
    if (!ran) {
        printf("SKIP: no cooperative matrix on %s (no profile can run %s / %s; the refusals and the auto "
               "choice were checked)\n", device, CM[0], CM[1]);
        return 77;
    }
    return 0;
}
