/* Windowed binding: a custom overlay with a 64 KiB storage range forces every
 * op through row groups and column chunks (and misaligned windows); results
 * must still equal the references. Median and trimmed mean read X through
 * up to 7 bindings of row bands (33 x 1000, 2 x 100003); beyond that they
 * gather column slabs through a work tensor (33 x 7001), and are refused
 * without one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_suite.h"
#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

int main(void)
{
    fp_test_seed(7);
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-range.json", fp_test_tmpdir("agg_chunked"));
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return fp_test_report("test_agg_chunked");
    fputs("{\"name\": \"tiny-range\", \"base\": \"minimal\", \"storage_range\": 65536}\n", f);
    fclose(f);
    setenv("FP_AGG_ORDER_BANDS", "7", 1); /* in-place bands (the default on CPU devices only) */
    /* sorting networks up to 128 clients (the default) even where a tuned cache
     * says 32, which sends K = 33 to radix select and would change which cases
     * below need a work tensor; radix select's own cases are in test_agg_order */
    setenv("FP_AGG_ORDER_NET", "128", 1);
    fp_ctx *ctx = fp_test_ctx(path);
    printf("storage range %llu bytes\n", (unsigned long long)fp_ctx_profile(ctx)->storage_range);
    /* the default number of bands: 33 x 1000 needs 3 or more bindings, so it is
     * read in place by default on a CPU device (the server then allocates no
     * work tensor) and gathered on a GPU, or where FP_AGG_ORDER_BANDS=1 */
    unsetenv("FP_AGG_ORDER_BANDS");
    int cpu = fp_ctx_profile(ctx)->type == FP_DEVICE_CPU;
    CHECKF((fp_agg_order_worksize(ctx, 33, 1000) == 0) == cpu, "default bands on a %s device: work %lld elements",
           cpu ? "CPU" : "non-CPU", (long long)fp_agg_order_worksize(ctx, 33, 1000));
    setenv("FP_AGG_ORDER_BANDS", "1", 1);
    CHECK(fp_agg_order_worksize(ctx, 33, 1000) > 0);
    setenv("FP_AGG_ORDER_BANDS", "7", 1);
    /* 16380 elements per binding: D = 100003 needs column chunks; K*D = 33000 needs row groups */
    static const agg_case cases[] = {{5, 1000, 0}, {33, 1000, 0}, {3, 7001, 0}, {2, 100003, 0}, {33, 7001, 1}};
    agg_suite(ctx, cases, (int)(sizeof cases / sizeof cases[0]));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    int64_t shp[2] = {33, 7001};
    fp_tensor *X, *o;
    CHECK_OK(fp_tensor_new(&X, ctx, FP_F32, 2, shp));
    CHECK_OK(fp_tensor_new(&o, ctx, FP_F32, 1, &shp[1]));
    CHECK_ERR(fp_agg_median(s, o, X, NULL), FP_EUNSUPPORTED);
    printf("  refusal: %s\n", fp_errmsg());
    fp_tensor_free(X);
    fp_tensor_free(o);
    fp_stream_free(s);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_agg_chunked");
}
