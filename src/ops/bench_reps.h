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

#endif
