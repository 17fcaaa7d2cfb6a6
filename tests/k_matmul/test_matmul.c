/* fp_matmul against fp_matmul_ref with the auto-chosen variant, under the native
 * profile and every built-in overlay: every layout, odd sizes, leading
 * dimensions, batches, alpha/beta, K = 0, f16 and bf16 weights. */
#include "mm_common.h"

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
    return fp_test_report("test_matmul");
}
