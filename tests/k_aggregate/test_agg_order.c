/* Median and trimmed mean at many clients (K = 33, 97, 100, 127: odd, even,
 * and just under each sorting network's padded size) against the C reference,
 * under every built-in overlay and the native profile. Two kinds of data:
 *  - small integers with many ties: every sum of them is exact in f32 in any
 *    order, so the device must equal the reference bit for bit; that checks
 *    the selected values themselves (a wrong rank changes the sum; the
 *    trimmed mean's final division may be 2.5 ulp off, as Vulkan allows);
 *  - normal floats: NMSE <= 1e-7 (the trimmed mean's kept values are summed
 *    in another order than the reference's ascending one), medians bit-exact.
 * Small D: 37 (not a multiple of 4: scalar networks) everywhere; 68 (vec4
 * bodies) on the native profile, where the test also checks which width ran.
 * Every (K, trim) is a pipeline of its own (the network is pruned to it) and
 * a 128-input one takes seconds to compile on lavapipe, so the overlays (which
 * change nothing in these scalar networks but the device they run on) get
 * K = 33 in full ("minimal" K = 100's median too); the native profile every
 * K (one or two trims each), and once
 * more with the networks capped at 32 clients (FP_AGG_ORDER_NET, a choice
 * fp_agg_autotune may store) so radix select runs the same cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_suite.h"
#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

/* every element within `ulps` units in the last place of the reference */
static int ulp_close(const float *o, const float *r, int64_t n, int ulps)
{
    for (int64_t i = 0; i < n; i++) {
        float ref = r[i], tol = ulps * (nextafterf(fabsf(ref), INFINITY) - fabsf(ref));
        if (!(fabsf(o[i] - ref) <= tol)) {
            printf("  element %lld: %.9g vs reference %.9g\n", (long long)i, o[i], ref);
            return 0;
        }
    }
    return 1;
}

/* want_vec4: 1 / 0 the median must (not) have run a vec4 network; -1 unchecked */
static void one(fp_ctx *ctx, fp_stream *s, int64_t K, int64_t D, int ints, int ntrim, int want_vec4)
{
    size_t kd = (size_t)(K * D);
    float *X = malloc(kd * 4), *r = malloc(D * 4), *o = malloc(D * 4);
    for (size_t i = 0; i < kd; i++)
        X[i] = ints ? (float)((int)(fp_test_u32() % 15) - 7) : fp_test_normal();
    int64_t shp[2] = {K, D};
    fp_tensor *tX = NULL, *to = NULL, *tw = NULL;
    CHECK_OK(fp_tensor_new(&tX, ctx, FP_F32, 2, shp));
    CHECK_OK(fp_tensor_new(&to, ctx, FP_F32, 1, &D));
    int64_t ws = fp_agg_order_worksize(ctx, K, D);
    if (ws)
        CHECK_OK(fp_tensor_new(&tw, ctx, FP_F32, 1, &ws));
    if (!tX || !to || (ws && !tw))
        goto out;
    CHECK_OK(fp_tensor_upload(tX, X, kd * 4));
    const char *kind = ints ? "integers" : "normal";
    fp_agg_median_ref(r, X, K, D);
    CHECK_OK(fp_agg_median(s, to, tX, tw));
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(o, D * 4, to));
    printf("  K=%lld D=%lld %s: median variant %s\n", (long long)K, (long long)D, kind, fp_agg_last_variant());
    CHECKF(fp_test_maxerr(o, r, D) == 0.0, "median exact K=%lld %s", (long long)K, kind);
    if (want_vec4 >= 0)
        CHECKF((strstr(fp_agg_last_variant(), "_vec4") != NULL) == want_vec4, "K=%lld D=%lld: %s, want %s",
               (long long)K, (long long)D, fp_agg_last_variant(), want_vec4 ? "a vec4 network" : "a scalar one");
    uint32_t bs[2] = {1, (uint32_t)(K / 3)};
    for (int i = 0; i < ntrim; i++) {
        fp_agg_trimmed_mean_ref(r, X, K, D, bs[i]);
        CHECK_OK(fp_agg_trimmed_mean(s, to, tX, bs[i], tw));
        CHECK_OK(fp_stream_run(s));
        CHECK_OK(fp_tensor_download(o, D * 4, to));
        /* the integer sum is exact; the division by the kept count may be off by
         * Vulkan's 2.5 ulp for OpFDiv (NVIDIA is; lavapipe rounds correctly). A
         * wrong rank moves the sum by at least 1, i.e. the mean by >= 1/K */
        if (ints)
            CHECKF(ulp_close(o, r, D, 3), "trimmed mean exact but the division K=%lld b=%u", (long long)K, bs[i]);
        CHECKF(agg_close("trimmed mean", o, r, D, 1e-7), "K=%lld b=%u %s", (long long)K, bs[i], kind);
    }
out:
    fp_tensor_free(tX);
    fp_tensor_free(to);
    fp_tensor_free(tw);
    free(X);
    free(r);
    free(o);
}

int main(void)
{
    fp_test_seed(3);
    static const int64_t Ks[] = {33, 97, 100, 127};
    const char *profiles[16] = {""};
    int np = 1;
    for (int i = 0; fp_overlay_builtin_names[i] && np < 16; i++)
        profiles[np++] = fp_overlay_builtin_names[i];
    for (int p = 0; p <= np; p++) {
        if (p == np) /* radix select for the same cases: networks only up to 32 clients */
            setenv("FP_AGG_ORDER_NET", "32", 1);
        const char *prof = p < np ? profiles[p] : "";
        fp_ctx *ctx = fp_test_ctx(prof);
        printf("profile '%s'%s\n", prof, p == np ? ", networks up to 32 clients" : "");
        fp_stream *s = NULL;
        CHECK_OK(fp_stream_new(&s, ctx));
        int full = p == 0 || p == np, minimal = !strcmp(prof, "minimal");
        for (size_t k = 0; k < sizeof Ks / sizeof Ks[0] && s; k++) {
            if (!full && Ks[k] != 33 && !(minimal && Ks[k] == 100))
                continue;
            /* trims b = 1 and K/3 (each its own 128-network pipeline): both for
             * K = 33, 100 and radix select, b = 1 for 97 and 127 */
            int ntrim = Ks[k] == 33 || p == np ? 2 : !full ? 0 : Ks[k] == 100 ? 2 : 1;
            one(ctx, s, Ks[k], 37, 1, ntrim, -1);
            one(ctx, s, Ks[k], 37, 0, ntrim, -1);
        }
        /* D = 68: vec4 bodies. Networks past 16 clients take four coordinates
         * per invocation on CPU devices only (aggregate.c, order_vec4_ok); K = 33
         * (a 64-input network) with both trims, K = 100 (128) its median only,
         * as each more 128-input pipeline costs seconds of compile on lavapipe */
        if (p == 0 && s) {
            int cpu = fp_ctx_profile(ctx)->type == FP_DEVICE_CPU;
            one(ctx, s, 33, 68, 1, 2, cpu);
            one(ctx, s, 100, 68, 0, 0, cpu);
            setenv("FP_AGG_ORDER_VEC4", "0", 1); /* the override: scalar networks again */
            one(ctx, s, 33, 68, 0, 0, 0);
            unsetenv("FP_AGG_ORDER_VEC4");
        }
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    unsetenv("FP_AGG_ORDER_NET");
    return fp_test_report("test_agg_order");
}
