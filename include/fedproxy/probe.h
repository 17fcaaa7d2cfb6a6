/* fedproxy: device microbenchmarks behind fp-probe — copy bandwidth, host<->device
 * transfer rates, dispatch latency — and host memcpy for comparison.
 * Each runs work on ctx and returns the best of several repetitions. Not
 * thread-safe with other work on the same context (it times the queue). */
#ifndef FEDPROXY_PROBE_H
#define FEDPROXY_PROBE_H

#include "fedproxy/measured.h"
#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device copy kernel bandwidth in GB/s (bytes read + written / s / 1e9). */
int fp_probe_copy_bandwidth(double *gbps, fp_ctx *ctx, int quick);

/* Upload and download rates in GB/s (through the mapping or staging). */
int fp_probe_transfer(double *h2d_gbps, double *d2h_gbps, fp_ctx *ctx, int quick);

/* Microseconds per empty dispatch inside one command buffer, and per
 * submit-and-wait of a single empty dispatch. */
int fp_probe_dispatch(double *us_per_dispatch, double *us_per_submit, fp_ctx *ctx, int quick);

/* Host memcpy in GB/s (read + written), the baseline fp-probe compares against. */
double fp_probe_memcpy_gbps(int quick);

/* Progress callback: stage name, fraction done in [0,1]. May be NULL. */
typedef void (*fp_progress_fn)(const char *stage, double fraction, void *user);

/* Runs all of the above (and any registered kernel autotuners) into m. */
int fp_probe_measure(fp_measured *m, fp_ctx *ctx, int quick, fp_progress_fn progress, void *user);

/* Monotonic clock in seconds. */
double fp_now(void);

#ifdef __cplusplus
}
#endif
#endif
