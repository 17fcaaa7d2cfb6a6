/* Timing for the kernel benchmarks (fp bench kernels): best seconds per call,
 * with as many calls per submission as the device needs for the queue's round
 * trip not to count as kernel time.
 *
 * A benchmark that submits and waits for every call measures the round trip as
 * much as the kernel. On lavapipe a call takes milliseconds and the round trip
 * nothing; on a discrete GPU the round trip is tens of microseconds and a 4 MiB
 * kernel a few. On an H100 (driver 580.159, submit_us 41) a 256^3 matmul timed
 * one call per submission read 316 GFLOP/s, and 604 with calls batched (two
 * runs on two machines).
 *
 * fp_bench_best records one call and runs it (warm-up: pipeline creation, first
 * touch), times one call alone, and from that picks how many calls one
 * submission holds so that it lasts about FP_BENCH_TARGET_S: at least
 * `min_reps` (what a lavapipe run uses, where one call is already long enough),
 * at most FP_BENCH_MAX_REPS. If the first window still ends under half the
 * target (the lone call's time was mostly the round trip), the count is worked
 * out again from that window; else that window is the first of `windows`
 * timed windows (and where one call alone fills the target, the lone call is).
 * The best seconds per call over them is returned, with the count in
 * *reps_out (may be NULL).
 *
 * Internal, not exported. The callback records one call into the stream; it is
 * called from this thread only. Errors are the callback's or the stream's,
 * message set. */
#ifndef FP_OPS_BENCH_REPS_H
#define FP_OPS_BENCH_REPS_H

#include "fedproxy/runtime.h"

#define FP_BENCH_TARGET_S 2e-3
#define FP_BENCH_MAX_REPS 128

typedef int (*fp_bench_record_fn)(fp_stream *s, void *arg);

/* Calls per submission for a call measured at one_call_s (pure: tested). */
int fp_bench_reps(double one_call_s, int min_reps);

int fp_bench_best(fp_stream *s, fp_bench_record_fn record, void *arg, int min_reps, int windows, double *best_s,
                  int *reps_out);

/* A kernel against a yardstick (the aggregation kernels against a copy), timed
 * in pairs. A machine whose speed drifts from one moment to the next (a shared
 * 2-vCPU VM: lavapipe's copy measured 4.5 to 8.5 GB/s between consecutive
 * windows of one process) makes a kernel timed at one moment and the yardstick
 * at another a ratio of two moments. The yardstick is calibrated
 * (fp_bench_best, one window); the kernel's windows hold as many calls as last
 * about as long as the yardstick's (at least min_reps, at most
 * FP_BENCH_MAX_REPS; worked out from a lone call, then again from one window
 * if that window was under half the yardstick's: on a GPU a lone call is
 * mostly the queue's round trip), so that both average the drift over the
 * same span. Then `pairs` rounds each time one yardstick window and, right
 * after it, one kernel window. The ratio of the yardstick's seconds per call
 * to the kernel's is taken per pair, and its median returned: a kernel's share
 * of the copy's rate in the same moment. */
#define FP_BENCH_MAX_PAIRS 16

typedef struct fp_bench_paired_result {
    double best_s;  /* kernel: best seconds per call over its lone call and its windows */
    double ratio;   /* median over pairs of (yardstick s/call) / (kernel s/call) */
    double yard_s;  /* yardstick: median seconds per call over the pairs */
    int reps;       /* calls per kernel window */
    int yard_reps;  /* calls per yardstick window */
} fp_bench_paired_result;

/* 1 <= pairs <= FP_BENCH_MAX_PAIRS, else FP_EINVAL. */
int fp_bench_paired(fp_stream *s, fp_bench_record_fn record, void *arg, fp_bench_record_fn yard, void *yard_arg,
                    int min_reps, int pairs, fp_bench_paired_result *out);

/* Median of v[0..n) (n >= 1; the mean of the middle two for even n); sorts v
 * in place. Pure: tested. */
double fp_bench_median(double *v, int n);

#endif
