/* Hand-run timing of median and trimmed mean (label slow): D = 2^20
 * coordinates, K from FP_BENCH_K (default "10,100"), best of FP_BENCH_RUNS
 * (default 3) runs each, as a ratio to 64 MiB copy bandwidth timed in the same
 * run, as fp_bench_aggregate reports it. Trim b = K / 10 as the benchmark.
 * FP_AGG_ORDER (see src/ops/aggregate.c) forces a variant for experiments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fedproxy/ops_aggregate.h"
#include "fedproxy/ops_basic.h"
#include "fp_test.h"

/* CPU seconds of the whole process (lavapipe's threads included): on a loaded
 * machine a steadier measure of a kernel's work than wall time */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void)
{
    fp_ctx_opts o = {0};
    o.profiling = getenv("FP_BENCH_PROFILE") != NULL; /* per-dispatch times */
    fp_ctx *ctx = NULL;
    CHECK_OK(fp_ctx_create(&ctx, &o));
    if (!ctx)
        return fp_test_report("bench_order");
    const char *ks = getenv("FP_BENCH_K");
    const char *rs = getenv("FP_BENCH_RUNS");
    int runs = rs ? atoi(rs) : 3;
    const int64_t D = getenv("FP_BENCH_D") ? atoll(getenv("FP_BENCH_D")) : 1 << 20, cn = 16 << 20;
    fp_stream *s = NULL;
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_tensor *a = NULL, *b = NULL;
    CHECK_OK(fp_tensor_new(&a, ctx, FP_F32, 1, &cn));
    CHECK_OK(fp_tensor_new(&b, ctx, FP_F32, 1, &cn));
    CHECK_OK(fp_tensor_zero(a));
    double best = 1e30, bestc = 1e30;
    for (int r = 0; r < runs + 1 && s && a && b; r++) {
        CHECK_OK(fp_op_copy(s, b, a));
        double t0 = now_s(), c0 = cpu_s();
        CHECK_OK(fp_stream_run(s));
        double t = now_s() - t0, c = cpu_s() - c0;
        if (r && t < best)
            best = t;
        if (r && c < bestc)
            bestc = c;
    }
    double copy = 2.0 * (double)cn * 4 / best / 1e9;
    printf("copy %.2f GB/s (64 MiB: %.2f ms, cpu %.2f ms)\n", copy, best * 1e3, bestc * 1e3);
    fp_tensor_free(a);
    fp_tensor_free(b);
    char kbuf[64];
    snprintf(kbuf, sizeof kbuf, "%s", ks ? ks : "10,100");
    for (char *tok = strtok(kbuf, ","); tok; tok = strtok(NULL, ",")) {
        int64_t K = atoll(tok), shp[2] = {K, D};
        fp_tensor *X = NULL, *out = NULL, *work = NULL;
        int64_t ws = fp_agg_order_worksize(ctx, K, D);
        if (ws)
            CHECK_OK(fp_tensor_new(&work, ctx, FP_F32, 1, &ws));
        CHECK_OK(fp_tensor_new(&X, ctx, FP_F32, 2, shp));
        CHECK_OK(fp_tensor_new(&out, ctx, FP_F32, 1, &D));
        if (!X || !out)
            break;
        float *h = malloc((size_t)(K * D) * 4);
        for (int64_t i = 0; i < K * D; i++)
            h[i] = fp_test_normal();
        CHECK_OK(fp_tensor_upload(X, h, (size_t)(K * D) * 4));
        free(h);
        for (int m = 0; m < 2; m++) {
            double bt = 1e30, bc = 1e30;
            for (int r = 0; r < runs + 1; r++) {
                if (m == 0)
                    CHECK_OK(fp_agg_median(s, out, X, work));
                else
                    CHECK_OK(fp_agg_trimmed_mean(s, out, X, (uint32_t)(K / 10), work));
                double t0 = now_s(), c0 = cpu_s();
                CHECK_OK(fp_stream_run(s));
                double t = now_s() - t0, c = cpu_s() - c0;
                if (r && t < bt)
                    bt = t;
                if (r && c < bc)
                    bc = c;
            }
            if (o.profiling) {
                fp_dispatch_time dt[512];
                uint32_t nd = 0;
                CHECK_OK(fp_stream_timings(s, dt, 512, &nd));
                double kern = 0, other = 0;
                for (uint32_t i = 0; i < nd && i < 512; i++)
                    *(dt[i].pipeline && !strncmp(dt[i].pipeline, "agg_order", 9) ? &kern : &other) += dt[i].us;
                printf("  last run: %u dispatches, order kernels %.1f ms, other %.1f ms\n", nd, kern / 1e3, other / 1e3);
            }
            double gb = ((double)K * (double)D * 4 + (double)D * 4) / bt / 1e9;
            printf("%-12s K=%3lld %-24s %s %8.2f ms (cpu %8.2f ms) %6.2f GB/s ratio %.3f\n", m ? "trimmed_mean" : "median",
                   (long long)K, ws ? "gathered" : "direct  ", fp_agg_last_variant(), bt * 1e3, bc * 1e3, gb, gb / copy);
        }
        fp_tensor_free(X);
        fp_tensor_free(out);
        fp_tensor_free(work);
    }
    fp_stream_free(s);
    fp_ctx_destroy(ctx);
    return fp_test_report("bench_order");
}
