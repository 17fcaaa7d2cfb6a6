/* Worker threads for the server's aggregators: a range [0, n) split into
 * contiguous runs, one per thread, the caller's thread taking the first.
 * Each aggregator keeps its own per-thread scratch, indexed by the thread
 * number it is given; runs are fixed by (n, threads), so a result that is
 * computed per item is the same bit for bit whatever the thread count. */
#ifndef FP_AGG_PARALLEL_H
#define FP_AGG_PARALLEL_H

#include <stddef.h>

#define AGG_MAX_THREADS 16

/* The thread count for `work` values over n items: FP_AGG_THREADS if set
 * (1 = none; it also lifts the size floor, for tests), else the online
 * CPUs once work reaches 2^20 values (1 below); at most AGG_MAX_THREADS
 * and n, at least 1. */
unsigned agg_threads(size_t work, size_t n);

/* fn(arg, t, i0, i1) for thread t < nt over its run [i0, i1) of [0, n).
 * Returns 0 or the first failing thread's code (in thread order), its
 * message carried to the caller's thread. A thread that cannot be started
 * has its run done by the caller. Joins every thread before returning. */
typedef int (*agg_range_fn)(void *arg, unsigned t, size_t i0, size_t i1);
int agg_parallel(unsigned nt, size_t n, agg_range_fn fn, void *arg);


/* norm[k] = sqrt(sum_i x[k][i]^2), each sum in double in element order, the
 * clients split over agg_threads threads: the same bits whatever the count. */
void agg_row_norms(double *norm, const float *const *x, size_t K, size_t dim);

/* delta[i] = (float)(mul * s_i / div), s_i = sum_k coef[k] x[k][i] summed in
 * double in client order, i < dim: the weighted means (fedavg, fednova,
 * normclip). In column blocks, each block's sums accumulated row by row (K
 * streams read one at a time, not K at once), blocks on agg_threads
 * threads; the same bits as the plain per-coordinate loop. */
int agg_weighted_columns(float *delta, const float *const *x, const double *coef, size_t K, size_t dim, double mul,
                         double div);

/* agg_weighted_columns over rows that a source computes block by block
 * (dare+fedavg and dare+fednova drop entries on the fly instead of copying
 * every update). row(user, k, i0, n, buf, scratch) returns entries
 * [i0, i0 + n) of row k: in buf (AGG_COL_BLOCK floats) or anywhere it keeps
 * them. i0 is a multiple of AGG_COL_BLOCK and n at most AGG_COL_BLOCK;
 * scratch is AGG_ROW_SCRATCH bytes of its own. buf and scratch are the
 * calling thread's (row runs on the worker threads, concurrently for
 * different blocks); row cannot fail. */
#define AGG_COL_BLOCK 2048
#define AGG_ROW_SCRATCH (AGG_COL_BLOCK * 4)
typedef const float *(*agg_row_fn)(void *user, size_t k, size_t i0, size_t n, float *buf, void *scratch);
int agg_weighted_rows(float *delta, agg_row_fn row, void *user, const double *coef, size_t K, size_t dim, double mul,
                      double div);

#endif
