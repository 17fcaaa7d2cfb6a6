/* Split-K of fp_matmul (src/ops/matmul.c): the product computed as S partial
 * products over K chunks plus the mm_splitk_reduce epilogue. Forced with
 * FP_MATMUL_SPLITK=S (lavapipe never splits on its own) and checked against
 * fp_matmul_ref on random inputs: odd sizes, K not divisible by S, S = 2, 3, 16,
 * S > K and S above the cap, all four layouts, alpha != 1 and beta != 0, padded
 * leading dimensions, batches (with gaps), f16/bf16 B; under the native profile and
 * every built-in overlay. NMSE limit 5e-4 as for every f32 matmul: only the f32
 * summation order changes (chunk sums added in fixed order), so the error is that
 * of the unsplit kernel, well below the limit. The reported variant must carry the
 * "+splitk<n>" suffix with the expected chunk count n (no suffix when n < 2).
 * Also: without the override nothing is split on a CPU device (and the LoRA shape
 * is split on a GPU), the tuned key "matmul.splitk" forces/disables it, and the
 * environment wins over it.
 *
 * FP_SPLITK_QUICK=1 (the asan test): the native profile and a few cases only. */
#include "fedproxy/measured.h"
#include "mm_common.h"

#include <unistd.h>

/* The chunk count fp_matmul documents for a request of S (clamped to 16). */
static int expect_chunks(int64_t K, int S)
{
    if (S > 16)
        S = 16;
    if (S < 2 || K < 2)
        return 1;
    int64_t kc = (K + S - 1) / S;
    if (K % 4 == 0)
        kc = (kc + 3) & ~(int64_t)3;
    return (int)((K + kc - 1) / kc);
}

/* The number after "+splitk" in a reported variant, 1 when absent. */
static int chunks_of(const char *chosen)
{
    const char *p = chosen ? strstr(chosen, "+splitk") : NULL;
    return p ? atoi(p + 7) : 1;
}

static void set_split(int S)
{
    char v[16];
    snprintf(v, sizeof v, "%d", S);
    setenv("FP_MATMUL_SPLITK", v, 1);
}

/* One case with split S forced: correct result and the expected suffix. */
static void sk_case(fp_ctx *ctx, fp_matmul_desc d, fp_dtype bt, int S, const char *tag)
{
    set_split(S);
    char t[64];
    snprintf(t, sizeof t, "%s S=%d", tag, S);
    const char *ran = mm_case(ctx, d, bt, t);
    int want = expect_chunks(d.K, S), got = chunks_of(ran);
    CHECKF(ran && got == want, "%s M=%lld N=%lld K=%lld: ran %s, expected %d chunks", t, (long long)d.M,
           (long long)d.N, (long long)d.K, ran ? ran : "(nothing)", want);
}

static void suite(fp_ctx *ctx, int full)
{
    /* every layout, K not divisible by S, alpha/beta */
    for (int t = 0; t < 4; t++) {
        fp_matmul_desc d = mm_d(7, 33, 257, t >> 1, t & 1);
        d.alpha = 1.5f;
        sk_case(ctx, d, FP_F32, 2, "layout");
        d = mm_d(33, 7, 1000, t >> 1, t & 1);
        d.alpha = -0.75f; d.beta = 0.5f;
        sk_case(ctx, d, FP_F32, 3, "layout-acc");
        if (!full)
            break;
    }
    /* the LoRA shape u = x A^T (vec4 path), 16 chunks of 64 with a short last one */
    fp_matmul_desc d = mm_d(256, 16, 1000, 0, 1);
    d.beta = 1.0f;
    sk_case(ctx, d, FP_F32, 16, "lora-u");
    /* S > K: K chunks of 1; S above the cap; tiny K: no split */
    sk_case(ctx, mm_d(5, 9, 7, 0, 0), FP_F32, 16, "S>K");
    sk_case(ctx, mm_d(3, 5, 2, 1, 1), FP_F32, 2, "K=2");
    sk_case(ctx, mm_d(4, 4, 1, 0, 0), FP_F32, 16, "K=1");
    if (!full)
        return;
    sk_case(ctx, mm_d(1, 1000, 33, 1, 0), FP_F32, 16, "S>K/4");
    sk_case(ctx, mm_d(4, 8, 4, 0, 0), FP_F32, 16, "K=4");
    sk_case(ctx, mm_d(9, 5, 1000, 0, 0), FP_F32, 40, "capped");
    /* the LoRA weight gradients: dB = dy^T u, dA = du^T x (K = tokens) */
    sk_case(ctx, mm_d(257, 16, 256, 1, 0), FP_F32, 4, "lora-dB");
    sk_case(ctx, mm_d(16, 257, 256, 1, 0), FP_F32, 4, "lora-dA");
    /* padded leading dimensions, scalar and vec4 paths, accumulating */
    d = mm_d(9, 10, 300, 0, 1);
    d.lda = 305; d.ldb = 301; d.ldc = 12; d.beta = 1.0f; d.alpha = 2.0f;
    sk_case(ctx, d, FP_F32, 3, "ld");
    d = mm_d(16, 20, 256, 1, 0);
    d.lda = 20; d.ldb = 24; d.ldc = 28; d.beta = -1.0f;
    sk_case(ctx, d, FP_F32, 3, "ld-aligned");
    /* batched with gaps between matrices, accumulating; batched vec4 */
    d = mm_d(33, 17, 200, 0, 1);
    d.batch = 3; d.stride_a = 33 * 200 + 5; d.stride_b = 17 * 200 + 3; d.stride_c = 33 * 17 + 7;
    d.alpha = 0.5f; d.beta = 1.0f;
    sk_case(ctx, d, FP_F32, 3, "batched");
    d = mm_d(16, 32, 64, 1, 0);
    d.batch = 4;
    sk_case(ctx, d, FP_F32, 2, "batched-v4");
    /* f16 / bf16 weights: x * W^T (vec4) and odd plain, accumulating */
    for (int bt = FP_F16; bt <= FP_BF16; bt++) {
        sk_case(ctx, mm_d(33, 40, 260, 0, 1), (fp_dtype)bt, 3, "w16 x*W^T");
        d = mm_d(7, 9, 130, 0, 0);
        d.beta = 1.0f;
        sk_case(ctx, d, (fp_dtype)bt, 2, "w16 odd");
    }
}

/* Split results are bitwise reproducible (partials summed in fixed order, no
 * atomics): the same accumulating product recorded twice in one stream and in a
 * second run gives identical bits. */
static void determinism_case(fp_ctx *ctx)
{
    set_split(7);
    fp_matmul_desc d = mm_d(37, 21, 999, 0, 1);
    d.beta = 1.0f;
    int64_t na = 37 * 999, nb = 21 * 999, nc = 37 * 21;
    float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb), *c = malloc(sizeof(float) * nc);
    float *o1 = malloc(sizeof(float) * nc), *o2 = malloc(sizeof(float) * nc);
    for (int64_t i = 0; i < na; i++) a[i] = fp_test_normal();
    for (int64_t i = 0; i < nb; i++) b[i] = fp_test_normal();
    for (int64_t i = 0; i < nc; i++) c[i] = fp_test_normal();
    fp_tensor *A = NULL, *B = NULL, *C1 = NULL, *C2 = NULL;
    fp_stream *s = NULL;
    CHECK_OK(fp_tensor_new(&A, ctx, FP_F32, 1, &na));
    CHECK_OK(fp_tensor_new(&B, ctx, FP_F32, 1, &nb));
    CHECK_OK(fp_tensor_new(&C1, ctx, FP_F32, 1, &nc));
    CHECK_OK(fp_tensor_new(&C2, ctx, FP_F32, 1, &nc));
    CHECK_OK(fp_stream_new(&s, ctx));
    if (A && B && C1 && C2 && s) {
        CHECK_OK(fp_tensor_upload(A, a, sizeof(float) * na));
        CHECK_OK(fp_tensor_upload(B, b, sizeof(float) * nb));
        CHECK_OK(fp_tensor_upload(C1, c, sizeof(float) * nc));
        CHECK_OK(fp_tensor_upload(C2, c, sizeof(float) * nc));
        CHECK_OK(fp_matmul(s, C1, A, B, &d));
        CHECKF(chunks_of(d.chosen) == 7, "determinism: ran %s", d.chosen ? d.chosen : "-");
        CHECK_OK(fp_stream_run(s));
        CHECK_OK(fp_matmul(s, C2, A, B, &d));
        CHECK_OK(fp_stream_run(s));
        CHECK_OK(fp_tensor_download(o1, sizeof(float) * nc, C1));
        CHECK_OK(fp_tensor_download(o2, sizeof(float) * nc, C2));
        CHECKF(!memcmp(o1, o2, sizeof(float) * nc), "split-K %s: two runs of the same product differ", d.chosen);
        printf("  determinism    %s M=37 N=21 K=999: two runs bitwise equal: %s\n", d.chosen,
               memcmp(o1, o2, sizeof(float) * nc) ? "no" : "yes");
    }
    fp_stream_free(s);
    fp_tensor_free(A), fp_tensor_free(B), fp_tensor_free(C1), fp_tensor_free(C2);
    free(a), free(b), free(c), free(o1), free(o2);
}

/* Every light variant the profile runs (named in the desc), reg_4x4 (the H100's
 * tuned choice for these shapes) and tiled_small (the untuned GPU default)
 * included, plus the cooperative-matrix kernel emulated where f16 arithmetic is:
 * the LoRA products u = x A^T (vec4) and dB = dy^T u with odd sizes (scalar). */
static void variant_cases(fp_ctx *ctx)
{
    const char *names[32];
    int n = 0;
    for (int i = 0; fp_matmul_variant_names[i] && n < 30; i++)
        names[n++] = fp_matmul_variant_names[i];
    names[n++] = "cm_64x64_emu";
    for (int i = 0; i < n; i++) {
        if (!fp_matmul_variant_ok(ctx, names[i]) || fp_matmul_variant_heavy(names[i]))
            continue;
        fp_matmul_desc d = mm_d(64, 16, 512, 0, 1);
        d.variant = names[i];
        d.beta = 0.5f;
        sk_case(ctx, d, FP_F32, 5, "variant u");
        d = mm_d(67, 13, 250, 1, 0);
        d.variant = names[i];
        d.alpha = 2.0f;
        sk_case(ctx, d, FP_F32, 4, "variant dB");
    }
}

/* Automatic choice (no override): never split on a CPU device; on a GPU the LoRA
 * product u = x A^T (8 workgroup tiles, K = 512) is. */
static void auto_case(fp_ctx *ctx)
{
    const fp_profile *p = fp_ctx_profile(ctx);
    int cpu = p->vendor == FP_VENDOR_MESA_CPU || p->type == FP_DEVICE_CPU;
    unsetenv("FP_MATMUL_SPLITK");
    const char *ran = mm_case(ctx, mm_d(256, 16, 512, 0, 1), FP_F32, "auto lora-u");
    if (cpu)
        CHECKF(ran && chunks_of(ran) == 1, "CPU device %s split without an override: %s", p->name, ran ? ran : "-");
    else
        CHECKF(ran && chunks_of(ran) >= 2, "GPU %s did not split the LoRA shape: %s", p->name, ran ? ran : "-");
    /* explicit "auto" and "0" mean the automatic rule too */
    setenv("FP_MATMUL_SPLITK", "auto", 1);
    ran = mm_case(ctx, mm_d(20, 8, 300, 0, 0), FP_F32, "auto small");
    CHECKF(ran && (!cpu || chunks_of(ran) == 1), "FP_MATMUL_SPLITK=auto on a CPU device split: %s", ran ? ran : "-");
    unsetenv("FP_MATMUL_SPLITK");
}

/* Stores "matmul.splitk" = value in ctx's device cache and returns a fresh context
 * that loaded it. */
static fp_ctx *tuned_ctx(fp_ctx *ctx, const char *profile, const char *value)
{
    const char *kv[2] = {"matmul.splitk", value};
    fp_test_store_tune(ctx, kv, 1);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx(profile);
    const char *got = fp_measured_tune_get(fp_ctx_measured(ctx), "matmul.splitk");
    CHECKF(got && !strcmp(got, value), "stored matmul.splitk=%s, loaded %s", value, got ? got : "(none)");
    fp_test_store_tune(ctx, NULL, 0); /* this test's own cache directory (CTest sets FP_CACHE_DIR per test) */
    return ctx;
}

/* The tuned key forces a split, and the environment wins over it. */
static fp_ctx *tuned_cases(fp_ctx *ctx, const char *profile)
{
    ctx = tuned_ctx(ctx, profile, "3");
    unsetenv("FP_MATMUL_SPLITK");
    fp_matmul_desc d = mm_d(20, 8, 300, 0, 0);
    const char *ran = mm_case(ctx, d, FP_F32, "tuned 3");
    CHECKF(ran && chunks_of(ran) == 3, "tuned matmul.splitk=3: ran %s", ran ? ran : "-");
    setenv("FP_MATMUL_SPLITK", "1", 1);
    ran = mm_case(ctx, d, FP_F32, "tuned 3, env 1");
    CHECKF(ran && chunks_of(ran) == 1, "FP_MATMUL_SPLITK=1 over tuned 3: ran %s", ran ? ran : "-");
    setenv("FP_MATMUL_SPLITK", "2", 1);
    ran = mm_case(ctx, d, FP_F32, "tuned 3, env 2");
    CHECKF(ran && chunks_of(ran) == 2, "FP_MATMUL_SPLITK=2 over tuned 3: ran %s", ran ? ran : "-");
    unsetenv("FP_MATMUL_SPLITK");
    return ctx;
}

int main(void)
{
    const char *q = getenv("FP_SPLITK_QUICK");
    int quick = q && q[0] && strcmp(q, "0") != 0;
    fp_test_seed(4321);
    for (int o = -1; o < 0 || fp_overlay_builtin_names[o]; o++) {
        const char *prof = o < 0 ? "" : fp_overlay_builtin_names[o];
        printf("== profile '%s'\n", prof);
        fp_ctx *ctx = fp_test_ctx(prof);
        if (o < 0) {
            auto_case(ctx);
            ctx = tuned_cases(ctx, prof);
            determinism_case(ctx);
            if (!quick)
                variant_cases(ctx);
        }
        suite(ctx, !quick);
        fp_test_ctx_done(ctx);
        if (quick)
            break;
    }
    unsetenv("FP_MATMUL_SPLITK");
    return fp_test_report("test_matmul_splitk");
}
