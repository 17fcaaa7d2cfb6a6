/* Aggregation kernels vs their C references under every built-in overlay and
 * the native profile, on sizes that are not multiples of any tile. */
#include <stdio.h>

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
    const char *profiles[16] = {""};
    int np = 1;
    for (int i = 0; fp_overlay_builtin_names[i] && np < 16; i++)
        profiles[np++] = fp_overlay_builtin_names[i];
    for (int i = 0; i < np; i++) {
        fp_ctx *ctx = fp_test_ctx(profiles[i]);
        printf("profile '%s'\n", profiles[i]);
        if (i == 0)
            agg_suite(ctx, full, (int)(sizeof full / sizeof full[0]));
        else
            agg_suite(ctx, some, (int)(sizeof some / sizeof some[0]));
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_agg_ops");
}
