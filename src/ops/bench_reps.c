/* Best-of-windows timing for the kernel benchmarks; see bench_reps.h. */
#include "bench_reps.h"

#include <string.h>
#include <time.h>

#include "error_internal.h"

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

double fp_bench_median(double *v, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort: n <= FP_BENCH_MAX_PAIRS */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Calls of one_call_s each that fill span_s: at least min_reps (and 1), at
 * most FP_BENCH_MAX_REPS unless min_reps is more. */
static int reps_to_fill(double span_s, double one_call_s, int min_reps)
{
    double want = one_call_s > 0 ? span_s / one_call_s : FP_BENCH_MAX_REPS;
    int reps = want >= FP_BENCH_MAX_REPS ? FP_BENCH_MAX_REPS : (int)want + (want > (int)want);
    if (reps < min_reps)
        reps = min_reps;
    return reps > 1 ? reps : 1;
}

int fp_bench_paired(fp_stream *s, fp_bench_record_fn record, void *arg, fp_bench_record_fn yard, void *yard_arg,
                    int min_reps, int pairs, fp_bench_paired_result *out)
{
    if (!s || !record || !yard || !out || pairs < 1 || pairs > FP_BENCH_MAX_PAIRS)
        return fp_seterr(FP_EINVAL, "bench: paired timing needs a stream, two callbacks and 1..%d pairs (got %d)",
                         FP_BENCH_MAX_PAIRS, pairs);
    memset(out, 0, sizeof *out);
    double ybest, ratio[FP_BENCH_MAX_PAIRS], ys[FP_BENCH_MAX_PAIRS];
    int rc = fp_bench_best(s, yard, yard_arg, min_reps, 1, &ybest, &out->yard_reps);
    /* the kernel's windows last about as long as the yardstick's (a short one
     * is lucky or unlucky alone, where a long one averages the drift): its
     * warm-up, a lone call, then as many calls per window as fill the
     * yardstick's window, at least min_reps and at most FP_BENCH_MAX_REPS;
     * one window of that count, and if it ended under half the yardstick's
     * (the lone call was mostly the queue's round trip, as on a GPU) the count
     * again from that window */
    double t1 = 0, yw = ybest * out->yard_reps;
    if (!rc)
        rc = window(s, record, arg, 1, &t1);
    if (!rc)
        rc = window(s, record, arg, 1, &t1);
    if (!rc) {
        out->reps = reps_to_fill(yw, t1, min_reps);
        out->best_s = t1;
        rc = window(s, record, arg, out->reps, &t1);
    }
    if (!rc) {
        if (t1 / out->reps < out->best_s)
            out->best_s = t1 / out->reps;
        if (t1 < 0.5 * yw && out->reps < FP_BENCH_MAX_REPS)
            out->reps = reps_to_fill(yw, t1 / out->reps, min_reps);
    }
    for (int p = 0; p < pairs && !rc; p++) {
        double ty, tk;
        rc = window(s, yard, yard_arg, out->yard_reps, &ty);
        if (!rc)
            rc = window(s, record, arg, out->reps, &tk);
        if (rc)
            break;
        ys[p] = ty / out->yard_reps;
        tk /= out->reps;
        ratio[p] = tk > 0 ? ys[p] / tk : 0;
        if (tk < out->best_s)
            out->best_s = tk;
    }
    if (rc)
        return rc;
    out->ratio = fp_bench_median(ratio, pairs);
    out->yard_s = fp_bench_median(ys, pairs);
    return 0;
}
