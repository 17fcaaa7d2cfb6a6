/* f32 <-> f16 <-> bf16 conversions on the device against the C reference, on
 * odd counts (the last 32-bit word half-used: its other half must survive),
 * with special values (zeros, subnormals, infinities, NaN, overflow, rounding
 * ties). bf16 must match bit for bit; f16 too (counted: Vulkan allows the other
 * neighbour for packHalf2x16, so a mismatch of 1 ulp is reported separately). */
#include "train_common.h"

static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 70000.0f, -1e10f, 1e-8f, 6e-5f,
                                 3e-6f, 1.0009765625f, 1.00048828125f, 1.00146484375f, 0x1.0101p0f, 0x1.0180p0f,
                                 0x1.0080p0f, 3.0e38f, 1e-40f};

static int is_nan16(uint16_t v, int bf) { return bf ? ((v & 0x7f80) == 0x7f80 && (v & 0x7f)) : ((v & 0x7c00) == 0x7c00 && (v & 0x3ff)); }

static void conv_case(fp_ctx *ctx, fp_stream *s, int64_t n)
{
    float *f = tc_rand(n, -100, 100);
    size_t ns = sizeof specials / sizeof *specials;
    for (size_t i = 0; i < ns && (int64_t)i < n; i++)
        f[i] = specials[i];
    if (n > 30) {
        f[ns] = INFINITY;
        f[ns + 1] = -INFINITY;
        f[ns + 2] = NAN;
    }
    fp_dtype ds[2] = {FP_F16, FP_BF16};
    for (int d = 0; d < 2; d++) {
        int bf = ds[d] == FP_BF16;
        uint16_t *ref = malloc(n * 2 + 2);
        fp_ref_convert(ref, ds[d], f, FP_F32, n);
        /* a 16-bit tensor one element longer, viewed at n: the tail word's upper half is a sentinel */
        int64_t n1 = n + 1;
        fp_tensor *big = tc_new(ctx, ds[d], 1, &n1, NULL);
        uint16_t *init = malloc(n1 * 2);
        for (int64_t i = 0; i < n1; i++)
            init[i] = 0xABCD;
        CHECK_OK(fp_tensor_upload(big, init, n1 * 2));
        fp_tensor *h, *tf = tc_f32_1d(ctx, n, f), *back = tc_f32_1d(ctx, n, NULL);
        CHECK_OK(fp_tensor_view(&h, big, 0, ds[d], 1, &n));
        CHECK_OK(fp_convert(s, h, tf));
        char v1[64];
        snprintf(v1, sizeof v1, "%s", fp_train_last_pipeline());
        CHECK_OK(fp_convert(s, back, h));
        CHECK_OK(fp_stream_run(s));
        uint16_t *got = malloc(n1 * 2);
        CHECK_OK(fp_tensor_download(got, n1 * 2, big));
        int64_t exact = 0, off1 = 0, bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (got[i] == ref[i] || (is_nan16(got[i], bf) && is_nan16(ref[i], bf)))
                exact++;
            else if (!bf && abs((int)got[i] - (int)ref[i]) == 1 && (got[i] & 0x8000) == (ref[i] & 0x8000))
                off1++;
            else {
                if (bad < 5)
                    fprintf(stderr, "    %s[%lld] of %.9g: got 0x%04x, want 0x%04x\n", bf ? "bf16" : "f16",
                            (long long)i, f[i], got[i], ref[i]);
                bad++;
            }
        }
        printf("  f32->%s n=%lld [%s, %s]: %lld exact, %lld off by 1 ulp, %lld wrong\n", bf ? "bf16" : "f16",
               (long long)n, v1, fp_train_last_pipeline(), (long long)exact, (long long)off1, (long long)bad);
        CHECK(bad == 0);
        CHECK(bf ? off1 == 0 : off1 <= n / 1000);
        CHECKF(got[n] == 0xABCD, "element past the end clobbered: 0x%04x", got[n]);
        /* 16 -> f32 is exact */
        float *gb = tc_down(back), *rb = malloc(n * 4);
        fp_ref_convert(rb, FP_F32, got, ds[d], n);
        int same = 1;
        for (int64_t i = 0; i < n; i++)
            same &= memcmp(&gb[i], &rb[i], 4) == 0 || (isnan(gb[i]) && isnan(rb[i]));
        CHECKF(same, "%s -> f32 differs", bf ? "bf16" : "f16");
        /* 16 -> the other 16-bit type, through the device, vs reference */
        fp_tensor *other = tc_new(ctx, bf ? FP_F16 : FP_BF16, 1, &n, NULL);
        CHECK_OK(fp_convert(s, other, h));
        CHECK_OK(fp_stream_run(s));
        uint16_t *go = malloc(n * 2 + 2), *ro = malloc(n * 2 + 2);
        CHECK_OK(fp_tensor_download(go, n * 2, other));
        fp_ref_convert(ro, bf ? FP_F16 : FP_BF16, got, ds[d], n);
        int64_t diff = 0;
        for (int64_t i = 0; i < n; i++)
            diff += go[i] != ro[i] && !(is_nan16(go[i], !bf) && is_nan16(ro[i], !bf)) &&
                    !(bf && abs((int)go[i] - (int)ro[i]) == 1);
        printf("  %s->%s n=%lld [%s]: %lld wrong\n", bf ? "bf16" : "f16", bf ? "f16" : "bf16", (long long)n,
               fp_train_last_pipeline(), (long long)diff);
        CHECK(diff == 0);
        fp_tensor_free(other);
        fp_tensor_free(h);
        fp_tensor_free(big);
        fp_tensor_free(tf);
        fp_tensor_free(back);
        free(ref);
        free(init);
        free(got);
        free(gb);
        free(rb);
        free(go);
        free(ro);
    }
    free(f);
}

int main(void)
{
    fp_test_seed(3);
    /* reference spot checks */
    CHECK(fp_ref_f32_to_bf16(1.0f) == 0x3f80 && fp_ref_f32_to_bf16(0x1.0180p0f) == 0x3f81);
    CHECK(fp_ref_f32_to_bf16(0x1.0080p0f) == 0x3f80); /* tie to even */
    CHECK(fp_ref_f32_to_f16(65504.0f) == 0x7bff && fp_ref_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(fp_ref_f32_to_f16(1.00048828125f) == 0x3c00 && fp_ref_f32_to_f16(1.00146484375f) == 0x3c02);
    CHECK(fp_ref_f32_to_f16(0x1p-24f) == 0x0001 && fp_ref_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(fp_ref_f16_to_f32(0x3555) == 0x1.554p-2f);
    for (int pi = 0; tc_profile(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(tc_profile(pi));
        fp_stream *s;
        CHECK_OK(fp_stream_new(&s, ctx));
        conv_case(ctx, s, 1);
        conv_case(ctx, s, 33);
        conv_case(ctx, s, 4097);
        if (pi == 0) {
            int64_t n = 5;
            fp_tensor *a = tc_f32_1d(ctx, n, NULL), *b = tc_new(ctx, FP_F16, 1, (int64_t[]){6}, NULL);
            fp_tensor *c = tc_i32(ctx, 5, NULL);
            CHECK_ERR(fp_convert(s, b, a), FP_ESHAPE);
            CHECK_ERR(fp_convert(s, c, a), FP_ESHAPE);
            fp_tensor_free(a);
            fp_tensor_free(b);
            fp_tensor_free(c);
        }
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_train_convert");
}
