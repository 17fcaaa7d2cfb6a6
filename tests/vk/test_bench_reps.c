/* The kernel benchmarks' timer (src/ops/bench_reps.c): how many calls one timed
 * submission holds, that they all run on the device, that the best time is a
 * time, and that a failing call stops it with the call's error; the same for
 * the paired timing of a kernel against a yardstick, and its median. And the
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

static void median_rule(void)
{
    double one[1] = {3}, odd[3] = {5, 1, 3}, even[4] = {4, 1, 3, 2}, ties[5] = {2, 9, 2, -1, 2};
    CHECK(fp_bench_median(one, 1) == 3);
    CHECK(fp_bench_median(odd, 3) == 3);
    CHECK(fp_bench_median(even, 4) == 2.5);
    CHECK(fp_bench_median(ties, 5) == 2);
}

/* A kernel timed in pairs with a yardstick: every window of the kernel comes
 * right after one of the yardstick, the kernel gets its warm-up, its lone call
 * and `pairs` windows and nothing else, the figures are times, and a failure
 * on either side stops it with that side's error. */
static void paired(fp_ctx *ctx)
{
    const int64_t n = 257, ny = 1 << 16;
    counted k = {0}, y = {0};
    CHECK_OK(fp_tensor_new(&k.a, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_new(&k.b, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_new(&y.a, ctx, FP_F32, 1, &ny));
    CHECK_OK(fp_tensor_new(&y.b, ctx, FP_F32, 1, &ny));
    CHECK_OK(fp_tensor_zero(k.a));
    CHECK_OK(fp_tensor_zero(y.a));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_bench_paired_result r;
    CHECK_OK(fp_bench_paired(s, rec_axpb, &k, rec_axpb, &y, 3, 3, &r));
    CHECKF(r.best_s > 0 && r.best_s < 1.0, "kernel best %g s per call", r.best_s);
    CHECKF(r.yard_s > 0 && r.yard_s < 1.0, "yardstick median %g s per call", r.yard_s);
    CHECKF(r.ratio > 0 && isfinite(r.ratio), "ratio %g", r.ratio);
    CHECKF(r.reps >= 3 && r.reps <= FP_BENCH_MAX_REPS, "%d kernel calls per window", r.reps);
    CHECKF(r.yard_reps >= 3 && r.yard_reps <= FP_BENCH_MAX_REPS, "%d yardstick calls per window", r.yard_reps);
    /* warm-up, lone call, one calibration window, three paired windows */
    int cal = k.calls - 2 - 3 * r.reps;
    CHECKF(cal >= 1 && cal <= FP_BENCH_MAX_REPS, "%d kernel calls, %d per paired window", k.calls, r.reps);
    /* the yardstick's calibration (fp_bench_best: at least warm-up, lone call
     * and one window) and its three paired windows */
    CHECKF(y.calls >= 2 + 4 * r.yard_reps, "%d yardstick calls, %d per window", y.calls, r.yard_reps);
    /* the last submission was a kernel window, run whole */
    fp_stream_stats st;
    fp_stream_stats_get(s, &st);
    CHECKF(st.dispatches == (uint32_t)r.reps, "%u dispatches in the last run, want %d", st.dispatches, r.reps);
    float h[257];
    CHECK_OK(fp_tensor_download(h, sizeof h, k.b));
    CHECK(h[0] == 1.0f && h[256] == 1.0f);

    /* pairs outside 1..FP_BENCH_MAX_PAIRS are refused by name */
    CHECK_ERR(fp_bench_paired(s, rec_axpb, &k, rec_axpb, &y, 3, 0, &r), FP_EINVAL);
    CHECK(strstr(fp_errmsg(), "pairs") != NULL);
    CHECK_ERR(fp_bench_paired(s, rec_axpb, &k, rec_axpb, &y, 3, FP_BENCH_MAX_PAIRS + 1, &r), FP_EINVAL);
    /* a failing call on either side stops it with its error: the yardstick's
     * warm-up, the kernel's warm-up, the kernel's first window */
    for (int side = 0; side < 3; side++) {
        counted fk = k, fy = y;
        fk.calls = fy.calls = 0;
        if (side == 0)
            fy.fail_at = 1;
        else
            fk.fail_at = side == 1 ? 1 : 3;
        fp_stream *s2;
        CHECK_OK(fp_stream_new(&s2, ctx));
        CHECK_ERR(fp_bench_paired(s2, rec_axpb, &fk, rec_axpb, &fy, 1, 2, &r), FP_EINVAL);
        CHECKF(strstr(fp_errmsg(), "planted failure") != NULL, "side %d: %s", side, fp_errmsg());
        if (side == 0)
            CHECK(fy.calls == 1 && fk.calls == 0);
        else
            CHECK(fk.calls == fk.fail_at);
        fp_stream_free(s2);
    }
    fp_stream_free(s);
    fp_tensor_free(k.a);
    fp_tensor_free(k.b);
    fp_tensor_free(y.a);
    fp_tensor_free(y.b);
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
        /* timed in pairs with the copy: the copy's rate in those windows and
         * the kernel's share of it */
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "paired_copy_gbps")) > 0);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "paired_ratio_to_copy")) > 0);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "pairs")) >= 1);
    }
    /* the least paired ratio over the kernels timed, and which it was */
    double worst = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "worst_paired_ratio"));
    const char *wk = cJSON_GetStringValue(cJSON_GetObjectItem(j, "worst_paired_kernel"));
    CHECKF(worst > 0 && wk && (!strcmp(wk, "wsum") || !strcmp(wk, "median")), "worst %g at %s", worst, wk ? wk : "?");
    for (int i = 0; i < cJSON_GetArraySize(ks); i++) {
        cJSON *k = cJSON_GetArrayItem(ks, i);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "paired_ratio_to_copy")) >= worst);
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(k, "kernel")), wk))
            CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(k, "paired_ratio_to_copy")) == worst);
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
    median_rule();
    fp_ctx *ctx = fp_test_ctx(NULL);
    timer(ctx);
    paired(ctx);
    agg_bench_env(ctx);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_bench_reps");
}
