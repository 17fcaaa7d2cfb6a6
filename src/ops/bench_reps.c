/* Best-of-windows timing for the kernel benchmarks; see bench_reps.h. */
#include "bench_reps.h"

#include <time.h>

static double wall_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int fp_bench_reps(double one_call_s, int min_reps)
{
    if (min_reps < 1)
        min_reps = 1;
    if (min_reps >= FP_BENCH_MAX_REPS)
        return min_reps;
    if (!(one_call_s > 0)) /* zero or NaN: a clock too coarse to say; the cap is safe */
        return FP_BENCH_MAX_REPS;
    double want = FP_BENCH_TARGET_S / one_call_s;
    int n = want >= FP_BENCH_MAX_REPS ? FP_BENCH_MAX_REPS : (int)want + 1;
    return n > min_reps ? n : min_reps;
}

/* Seconds for one submission of n calls. */
static int window(fp_stream *s, fp_bench_record_fn record, void *arg, int n, double *sec)
{
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = record(s, arg);
    double t0 = wall_s();
    if (!rc)
        rc = fp_stream_run(s);
    *sec = wall_s() - t0;
    return rc;
}

int fp_bench_best(fp_stream *s, fp_bench_record_fn record, void *arg, int min_reps, int windows, double *best_s,
                  int *reps_out)
{
    double t;
    *best_s = 1e30;
    int rc = window(s, record, arg, 1, &t); /* warm-up */
    if (!rc)
        rc = window(s, record, arg, 1, &t);
    if (rc)
        return rc;
    int reps = fp_bench_reps(t, min_reps);
    if (reps == 1) {
        /* long calls (lavapipe at 2048^3: seconds): the lone call is a window */
        *best_s = t;
        windows--;
    } else {
        /* recalibrate once if the lone call was mostly the round trip */
        if ((rc = window(s, record, arg, reps, &t)))
            return rc;
        if (t < 0.5 * FP_BENCH_TARGET_S && reps < FP_BENCH_MAX_REPS)
            reps = fp_bench_reps(t / reps, min_reps);
        else { /* long enough: it is the first timed window */
            *best_s = t / reps;
            windows--;
        }
    }
    for (int w = 0; w < windows && !rc; w++) {
        rc = window(s, record, arg, reps, &t);
        if (!rc && t / reps < *best_s)
            *best_s = t / reps;
    }
    if (reps_out)
        *reps_out = reps;
    return rc;
}
