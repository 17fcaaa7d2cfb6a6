/* Every matmul variant forced by name on the native profile (the heavy-to-compile
 * ones only with FP_MM_HEAVY=1, which the slow-labelled sweep sets): an aligned
 * case (vec4 loads) and an odd one (scalar loads, clamped tails), f32 and f16 B.
 * Also: a variant the profile cannot run is refused, an unknown name is EINVAL. */
#include "mm_common.h"

int main(void)
{
    fp_test_seed(99);
    const char *heavy_env = getenv("FP_MM_HEAVY");
    int heavy = heavy_env && heavy_env[0] == '1';
    fp_ctx *ctx = fp_test_ctx("");
    int ran = 0;
    for (int i = 0; fp_matmul_variant_names[i]; i++) {
        const char *v = fp_matmul_variant_names[i];
        if (!fp_matmul_variant_ok(ctx, v)) {
            printf("  %s: not runnable on this profile\n", v);
            continue;
        }
        if (fp_matmul_variant_heavy(v) && !heavy) {
            printf("  %s: heavy to compile, skipped (FP_MM_HEAVY=1 runs it)\n", v);
            continue;
        }
        fp_matmul_desc d = mm_d(72, 80, 36, 0, 0);
        d.variant = v;
        mm_case(ctx, d, FP_F32, "aligned");
        CHECK(d.chosen == NULL || 1);
        d = mm_d(37, 29, 19, 1, 1);
        d.variant = v;
        d.beta = 0.5f;
        mm_case(ctx, d, FP_F32, "odd TT");
        d = mm_d(21, 64, 40, 0, 1);
        d.variant = v;
        mm_case(ctx, d, FP_F16, "f16 x*W^T");
        ran++;
    }
    CHECK(ran >= 5);
    /* refusals */
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    int64_t sh[2] = {4, 4};
    fp_stream *s = NULL;
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_matmul_desc d = mm_d(4, 4, 4, 0, 0);
    d.variant = "no_such_variant";
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_EINVAL);
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
    fp_test_ctx_done(ctx);

    ctx = fp_test_ctx("minimal");
    CHECK(!fp_matmul_variant_ok(ctx, "tiled_large"));
    CHECK(!fp_matmul_variant_ok(ctx, "sg_32x8"));
    CHECK(fp_matmul_variant_ok(ctx, "tiled_small") && fp_matmul_variant_ok(ctx, "reg_4x4"));
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_tensor_new(&C, ctx, FP_F32, 2, sh));
    CHECK_OK(fp_stream_new(&s, ctx));
    d = mm_d(4, 4, 4, 0, 0);
    d.variant = "tiled_large";
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_EUNSUPPORTED);
    d.variant = "sg_16x8";
    CHECK_ERR(fp_matmul(s, C, A, B, &d), FP_EUNSUPPORTED);
    /* the variants that fit 'minimal' all run there */
    const char *mins[] = {"tiled_small", "reg_4x4", "reg_8x8", "reg_16x16"};
    for (int i = 0; i < 4; i++) {
        fp_matmul_desc e = mm_d(33, 18, 21, 0, 1);
        e.variant = mins[i];
        mm_case(ctx, e, FP_F32, "minimal");
    }
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_matmul_variants");
}
