/* fp_matmul against fp_matmul_ref with the auto-chosen variant, under the native
 * profile and every built-in overlay: every layout, odd sizes, leading
 * dimensions, batches, alpha/beta, K = 0, f16 and bf16 weights. */
#include "mm_common.h"

#include "fedproxy/fileio.h"

static void suite(fp_ctx *ctx, int native)
{
    static const int sizes[][3] = {{1, 1, 1}, {7, 33, 257}, {33, 7, 1}, {100, 1000, 37}, {64, 48, 32}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int t = 0; t < 4; t++) {
            if (i == 3 && t != 0) /* the wide one once */
                continue;
            mm_case(ctx, mm_d(sizes[i][0], sizes[i][1], sizes[i][2], t >> 1, t & 1), FP_F32, "layout");
        }
    if (native)
        mm_case(ctx, mm_d(257, 257, 257, 0, 0), FP_F32, "257^3");
    /* padded leading dimensions */
    fp_matmul_desc d = mm_d(9, 10, 11, 0, 1);
    d.lda = 15; d.ldb = 13; d.ldc = 12;
    mm_case(ctx, d, FP_F32, "ld");
    d = mm_d(16, 20, 12, 1, 0);
    d.lda = 20; d.ldb = 24; d.ldc = 28;
    mm_case(ctx, d, FP_F32, "ld-aligned");
    /* batched (multi-head), with gaps between matrices, accumulating */
    d = mm_d(33, 17, 20, 0, 1);
    d.batch = 3; d.stride_a = 33 * 20 + 5; d.stride_b = 17 * 20 + 3; d.stride_c = 33 * 17 + 7;
    d.alpha = 0.5f; d.beta = 1.0f;
    mm_case(ctx, d, FP_F32, "batched");
    d = mm_d(16, 32, 8, 1, 0);
    d.batch = 4;
    mm_case(ctx, d, FP_F32, "batched-v4");
    /* alpha / beta */
    d = mm_d(20, 24, 16, 0, 0);
    d.alpha = -1.5f; d.beta = 0.25f;
    mm_case(ctx, d, FP_F32, "alpha-beta");
    d = mm_d(5, 6, 0, 0, 0);
    d.beta = 2.0f;
    mm_case(ctx, d, FP_F32, "K=0");
    /* f16 / bf16 weights: x * W^T (W stored out x in) and odd plain */
    for (int bt = FP_F16; bt <= FP_BF16; bt++) {
        mm_case(ctx, mm_d(33, 40, 64, 0, 1), (fp_dtype)bt, "w16 x*W^T");
        mm_case(ctx, mm_d(7, 9, 13, 0, 0), (fp_dtype)bt, "w16 odd");
        d = mm_d(12, 8, 16, 0, 0);
        d.beta = 1.0f;
        mm_case(ctx, d, (fp_dtype)bt, "w16 v4 acc");
    }
}

/* Runs the texel cases on ctx: each against the reference (mm_case), each path as expected:
 * want[i] is the d.texel the case must report. */
static void texel_cases(fp_ctx *ctx, const char *what, const int want[6])
{
    fp_matmul_desc d[6] = {mm_d(64, 48, 32, 0, 0), mm_d(33, 40, 64, 0, 1), mm_d(16, 20, 12, 1, 0),
                           mm_d(7, 33, 257, 0, 0), mm_d(9, 10, 11, 1, 1), mm_d(16, 32, 8, 1, 0)};
    d[5].batch = 4; /* batched, A transposed, vec4 */
    for (int i = 0; i < 6; i++) {
        const char *ran = mm_case(ctx, d[i], FP_F32, what);
        CHECKF(ran && !strncmp(ran, "sg_", 3), "%s case %d: ran %s, not an sg variant", what, i, ran ? ran : "nothing");
        CHECKF(mm_last_texel == want[i], "%s case %d (M=%lld N=%lld K=%lld): texel %d, expected %d", what, i,
               (long long)d[i].M, (long long)d[i].N, (long long)d[i].K, mm_last_texel, want[i]);
    }
    /* f16 / bf16 B: its packed words as uint texels, when B is whole words (13x10 halves: 65 words;
     * 13x9: 117 halves, half a word over, so storage) */
    for (int bt = FP_F16; bt <= FP_BF16; bt++) {
        struct { fp_matmul_desc d; int tex; } h[3] = {{mm_d(33, 40, 64, 0, 1), want[0]},
                                                      {mm_d(7, 10, 13, 0, 0), want[0] ? 1 : 0},
                                                      {mm_d(7, 9, 13, 0, 0), 0}};
        for (int i = 0; i < 3; i++) {
            mm_case(ctx, h[i].d, (fp_dtype)bt, what);
            CHECKF(mm_last_texel == h[i].tex, "%s %s case %d: texel %d, expected %d", what,
                   fp_dtype_name((fp_dtype)bt), i, mm_last_texel, h[i].tex);
        }
    }
}

/* Texel reads of the sg kernels on a CPU device (fp_ops_texel_reads' default there):
 * vec4 texels on the vec4 path, single floats on the scalar one; FP_TEXEL_READS=0
 * reads storage buffers; an operand with more texels than the device allows
 * (an overlay capping them at 4096) falls back to storage. */
static void texel_reads(void)
{
    printf("== texel reads\n");
    fp_ctx *ctx = fp_test_ctx("");
    const fp_profile *pf = fp_ctx_profile(ctx);
    if (!(fp_profile_is_cpu(pf) && pf->subgroup_ops && pf->subgroup_min == pf->subgroup_max && pf->texel_buffers &&
          !getenv("FP_TEXEL_READS") && !fp_measured_tune_get(fp_ctx_measured(ctx), "texel_reads"))) {
        /* GPUs read storage buffers by default: nothing to check here beyond the suite */
        printf("  not a CPU device with fixed subgroups and texel buffers, or a texel policy is set: "
               "texel paths not checked\n");
        fp_test_ctx_done(ctx);
        return;
    }
    static const int tex[6] = {4, 4, 4, 1, 1, 4}, none[6] = {0, 0, 0, 0, 0, 0};
    texel_cases(ctx, "texel", tex);
    setenv("FP_TEXEL_READS", "0", 1);
    texel_cases(ctx, "storage", none);
    unsetenv("FP_TEXEL_READS");
    fp_test_ctx_done(ctx);

    static const char cap[] = "{\"name\":\"texcap\",\"max_texel_elements\":4096}";
    char path[4300];
    snprintf(path, sizeof path, "%s/texcap.json", fp_test_tmpdir("matmul"));
    CHECK_OK(fp_write_file_atomic(path, cap, strlen(cap), 0644));
    ctx = fp_test_ctx(path);
    CHECK(fp_ctx_profile(ctx)->max_texel_elements == 4096);
    /* B 64x128: 2048 vec4 texels, fits; 64x512: 8192, storage (A 16x64 fits either way) */
    mm_case(ctx, mm_d(16, 128, 64, 0, 0), FP_F32, "cap fits");
    CHECKF(mm_last_texel == 4, "4096-texel cap, B of 2048 texels: texel %d", mm_last_texel);
    mm_case(ctx, mm_d(16, 512, 64, 0, 0), FP_F32, "cap B over");
    CHECKF(mm_last_texel == 0, "4096-texel cap, B of 8192 texels: texel %d", mm_last_texel);
    /* A over the cap (scalar path: one texel per float), B within it */
    mm_case(ctx, mm_d(66, 9, 63, 0, 0), FP_F32, "cap A over");
    CHECKF(mm_last_texel == 0, "4096-texel cap, A of 4158 floats: texel %d", mm_last_texel);
    mm_case(ctx, mm_d(64, 9, 63, 0, 0), FP_F32, "cap A fits");
    CHECKF(mm_last_texel == 1, "4096-texel cap, A of 4032 floats: texel %d", mm_last_texel);
    fp_test_ctx_done(ctx);
}

int main(void)
{
    fp_test_seed(1234);
    /* fp_matmul_desc_packed: packed rows, so each leading dimension is its stored row length
     * (A [M, K] or, transposed, [K, M]; B [K, N] or [N, K]; C [M, N]) */
    fp_matmul_desc pa = fp_matmul_desc_packed(3, 5, 7, 1, 0, 2.0f, 0.5f), pb = fp_matmul_desc_packed(3, 5, 7, 0, 1, 1, 0);
    CHECK(pa.M == 3 && pa.N == 5 && pa.K == 7 && pa.trans_a == 1 && pa.trans_b == 0 && pa.batch == 1);
    CHECK(pa.lda == 3 && pa.ldb == 5 && pa.ldc == 5 && pa.alpha == 2.0f && pa.beta == 0.5f && !pa.variant);
    CHECK(pb.lda == 7 && pb.ldb == 7 && pb.ldc == 5 && pb.trans_a == 0 && pb.trans_b == 1 && pb.beta == 0.0f);
    for (int o = -1; fp_overlay_builtin_names[o < 0 ? 0 : o] || o < 0; o++) {
        const char *prof = o < 0 ? "" : fp_overlay_builtin_names[o];
        if (o >= 0 && !prof)
            break;
        printf("== profile '%s'\n", prof);
        fp_ctx *ctx = fp_test_ctx(prof);
        printf("  auto picks: small %s, skinny %s, medium %s, large %s\n", fp_matmul_pick(ctx, 64, 64, 64),
               fp_matmul_pick(ctx, 8, 2048, 512), fp_matmul_pick(ctx, 512, 512, 512),
               fp_matmul_pick(ctx, 1024, 1024, 1024));
        /* CPU devices, nothing tuned: a LoRA step's rank-r products (under 128^3) take sg_32x8 from
         * 64 rows and sg_16x8 below (src/ops/matmul.c has the lavapipe timings) */
        const fp_profile *pf = fp_ctx_profile(ctx);
        if (pf->type == FP_DEVICE_CPU && pf->subgroup_ops && pf->subgroup_min == pf->subgroup_max &&
            !fp_measured_tune_get(fp_ctx_measured(ctx), "matmul.f32.small")) {
            CHECK(!strcmp(fp_matmul_pick(ctx, 128, 16, 512), "sg_32x8"));
            CHECK(!strcmp(fp_matmul_pick(ctx, 512, 16, 128), "sg_32x8"));
            CHECK(!strcmp(fp_matmul_pick(ctx, 16, 512, 128), "sg_16x8"));
        }
        suite(ctx, o < 0);
        fp_test_ctx_done(ctx);
    }
    texel_reads();
    return fp_test_report("test_matmul");
}
