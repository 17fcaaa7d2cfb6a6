/* The kernel benchmarks' timer (src/ops/bench_reps.c): how many calls one timed
 * submission holds, that they all run on the device, that the best time is a
 * time, and that a failing call stops it with the call's error. And the
 * aggregation benchmark's size and kernel selection (FP_BENCH_AGG_D,
 * FP_BENCH_AGG_ONLY). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "fedproxy/ops_aggregate.h"
#include "fedproxy/ops_basic.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"
#include "error_internal.h"
#include "ops/bench_reps.h"

typedef struct counted {
    fp_tensor *a, *b;
    int calls, fail_at;
} counted;

static int rec_axpb(fp_stream *s, void *arg)
{
    counted *c = arg;
    if (++c->calls == c->fail_at)
        return fp_seterr(FP_EINVAL, "planted failure at call %d", c->calls);
    return fp_op_axpb(s, c->b, c->a, 1.0f, 1.0f);
}

static void reps_rule(void)
{
    /* short calls: enough for the target, capped */
    CHECK(fp_bench_reps(1e-4, 1) == (int)(FP_BENCH_TARGET_S / 1e-4) + 1);
    CHECK(fp_bench_reps(1e-7, 1) == FP_BENCH_MAX_REPS);
    /* a call that outlasts the target alone: the caller's minimum */
    CHECK(fp_bench_reps(0.5, 1) == 1);
    CHECK(fp_bench_reps(0.5, 4) == 4);
    CHECK(fp_bench_reps(1e-4, 40) == 40);
    /* a minimum over the cap is kept; nonsense minimum is 1 */
    CHECK(fp_bench_reps(1e-7, FP_BENCH_MAX_REPS + 5) == FP_BENCH_MAX_REPS + 5);
    CHECK(fp_bench_reps(0.5, 0) == 1);
    /* a clock that read zero or NaN: the cap, never a division by zero */
    CHECK(fp_bench_reps(0.0, 1) == FP_BENCH_MAX_REPS);
    CHECK(fp_bench_reps(NAN, 2) == FP_BENCH_MAX_REPS);
}

static void timer(fp_ctx *ctx)
{
    const int64_t n = 257;
    counted c = {0};
    CHECK_OK(fp_tensor_new(&c.a, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_new(&c.b, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_zero(c.a));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));

    double best = -1;
    int reps = -1;
    CHECK_OK(fp_bench_best(s, rec_axpb, &c, 3, 2, &best, &reps));
    CHECKF(best > 0 && best < 1.0, "best %g s per call", best);
    CHECKF(reps >= 3 && reps <= FP_BENCH_MAX_REPS, "%d calls per submission", reps);
    /* the last submission held reps calls, and the device ran every one */
    fp_stream_stats st;
    fp_stream_stats_get(s, &st);
    CHECKF(st.dispatches == (uint32_t)reps, "%u dispatches in the last run, %d calls per submission", st.dispatches,
           reps);
    /* warm-up and lone call, then at least one more window of the final count
     * (the calibration window may count as the first of the two) */
    CHECKF(c.calls >= 2 + reps && c.calls <= 2 + 3 * FP_BENCH_MAX_REPS, "%d calls", c.calls);
    float h[257];
    CHECK_OK(fp_tensor_download(h, sizeof h, c.b));
    CHECK(h[0] == 1.0f && h[256] == 1.0f);

    /* a call that fails stops the timer with its error: the warm-up, the lone
     * call, or the first of a window (the three calls every run makes, even
     * one whose lone call is long enough, on a loaded machine, to be a window) */
    for (int at = 1; at <= 3; at++) {
        counted f = c;
        f.calls = 0, f.fail_at = at;
        fp_stream *s2;
        CHECK_OK(fp_stream_new(&s2, ctx));
        CHECK_ERR(fp_bench_best(s2, rec_axpb, &f, 1, 2, &best, NULL), FP_EINVAL);
        CHECK(f.calls == at);
        fp_stream_free(s2);
    }
    fp_stream_free(s);
    fp_tensor_free(c.a);
    fp_tensor_free(c.b);
}

static void agg_bench_env(fp_ctx *ctx)
{
    char *json = NULL;
    setenv("FP_BENCH_AGG_D", "4099", 1);
    setenv("FP_BENCH_AGG_ONLY", "wsum,median", 1);
    CHECK_OK(fp_bench_aggregate(ctx, 1, &json));
    cJSON *j = cJSON_Parse(json), *ks = cJSON_GetObjectItem(j, "kernels");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "D")) == 4099);
    CHECKF(cJSON_GetArraySize(ks) == 2, "%d kernels timed, want wsum and median", cJSON_GetArraySize(ks));
    const char *want[2] = {"wsum", "median"};
    for (int i = 0; i < 2 && i < cJSON_GetArraySize(ks); i++) {
        cJSON *k = cJSON_GetArrayItem(ks, i);
        CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(k, "kernel")), want[i]));
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "gbps")) > 0);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "calls_per_submit")) >= 2);
    }
    cJSON_Delete(j);
    free(json);
    /* a size out of range or not a number is refused, naming the variable */
    const char *bad[3] = {"1023", "16777217", "4k"};
    for (int i = 0; i < 3; i++) {
        setenv("FP_BENCH_AGG_D", bad[i], 1);
        json = NULL;
        CHECK_ERR(fp_bench_aggregate(ctx, 1, &json), FP_EINVAL);
        CHECK(json == NULL && strstr(fp_errmsg(), "FP_BENCH_AGG_D"));
    }
    unsetenv("FP_BENCH_AGG_D");
    unsetenv("FP_BENCH_AGG_ONLY");
}

int main(void)
{
    reps_rule();
    fp_ctx *ctx = fp_test_ctx(NULL);
    timer(ctx);
    agg_bench_env(ctx);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_bench_reps");
}
