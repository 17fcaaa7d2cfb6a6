/* Aggregation kernels vs their C references under every built-in overlay and
 * the native profile, on sizes that are not multiples of any tile, through
 * texel buffers (the default on CPU devices such as lavapipe) and storage
 * buffers (FP_TEXEL_READS=0, the GPU default), and the fallback from one to
 * the other when an operand holds more texels than the device allows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_suite.h"
#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

int main(void)
{
    fp_test_seed(42);
    /* native: the full grid of the brief's sizes (K = 1, 2, 5, 10, 33; D = 1, 7, 1000, 100003), plus
     * K = 100 (the 128-network on CPU devices) and 130 (radix select everywhere) */
    static const agg_case full[] = {{1, 1, 0},    {2, 1, 0},    {5, 1, 0},      {1, 7, 0},      {2, 7, 0},    {5, 7, 0},
                                    {10, 7, 0},   {33, 7, 0},   {1, 1000, 0},   {2, 1000, 0},   {5, 1000, 0}, {10, 1000, 0},
                                    {20, 1000, 0}, {33, 1000, 0}, {100, 1000, 0}, {130, 7, 0}, {130, 1000, 0}, {1, 100003, 0}, {2, 100003, 0}, {5, 100003, 0}, {10, 100003, 0},
                                    {33, 100003, 0}};
    /* overlays: a few cases covering scalar and vec4 paths, odd and even K, every sorting network size up to 64 */
    static const agg_case some[] = {{1, 7, 0}, {2, 1000, 0}, {5, 7, 0}, {10, 1000, 0}, {20, 1000, 0}, {33, 1000, 0}, {5, 100003, 0}};
    /* 'minimal' (at most 65536 texels): also [3, 100000], whole vec4 rows of 75000 texels, past the cap */
    static const agg_case some_min[] = {{1, 7, 0},     {2, 1000, 0},    {5, 7, 0},      {10, 1000, 0},
                                        {20, 1000, 0}, {33, 1000, 0}, {5, 100003, 0}, {3, 100000, 0}};
    const char *profiles[16] = {""};
    int np = 1;
    for (int i = 0; fp_overlay_builtin_names[i] && np < 16; i++)
        profiles[np++] = fp_overlay_builtin_names[i];
    /* every op family with a texel variant: its "op=" line and the variant's name */
    static const char *const tex_ops[][2] = {
        {"wsum=", "agg_wsum_tex_vec4"},   {"axpy=", "agg_wsum_tex_vec4"},       {"norms=", "_tex_vec4"},
        {"clip=", "agg_clip_tex_vec4"},   {"median=", "_tex"},                  {"ties_trim=", "agg_trim_tex_vec4"},
        {"ties_masked=", "agg_ties_masked_tex_vec4"}, {"ties_mean=", "agg_ties_mean_tex_vec4"},
        {"ring_sum=", "agg_ring_sum_tex_vec4"}, {"ring_sub=", "agg_ring_sum_tex_vec4"},
        {"quantize=", "agg_quant_tex_vec4"}, {"dequantize=", "agg_dequant_tex_vec4"}};
    for (int i = 0; i < np; i++) {
        fp_ctx *ctx = fp_test_ctx(profiles[i]);
        int cpu = fp_ctx_profile(ctx)->type == FP_DEVICE_CPU;
        printf("profile '%s'\n", profiles[i]);
        agg_suite_forget();
        if (i == 0)
            agg_suite(ctx, full, (int)(sizeof full / sizeof full[0]));
        else if (!strcmp(profiles[i], "minimal"))
            agg_suite(ctx, some_min, (int)(sizeof some_min / sizeof some_min[0]));
        else
            agg_suite(ctx, some, (int)(sizeof some / sizeof some[0]));
        if (i == 0 && cpu) {
            /* the default on a CPU device: every family read through texels */
            for (size_t o = 0; o < sizeof tex_ops / sizeof tex_ops[0]; o++)
                CHECKF(agg_suite_seen2(tex_ops[o][0], tex_ops[o][1]) > 0, "native CPU device: no %s%s ran",
                       tex_ops[o][0], tex_ops[o][1]);
            /* the storage path on the same device */
            agg_suite_forget();
            setenv("FP_TEXEL_READS", "0", 1);
            agg_suite(ctx, some, (int)(sizeof some / sizeof some[0]));
            unsetenv("FP_TEXEL_READS");
            CHECKF(agg_suite_seen("_tex") == 0, "FP_TEXEL_READS=0 still ran %d texel variants", agg_suite_seen("_tex"));
            CHECK(agg_suite_seen("wsum=agg_wsum_vec4") > 0 && agg_suite_seen("median=") > 0);
        }
        if (!strcmp(profiles[i], "minimal") && cpu) {
            /* 65536 texels at most: [3, 100000] does not fit them (storage vec4), the small cases do */
            CHECK(agg_suite_seen("wsum=agg_wsum_tex_vec4") > 0);
            CHECKF(agg_suite_seen("wsum=agg_wsum_vec4") > 0, "minimal: no storage fallback past 65536 texels");
        }
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_agg_ops");
}
