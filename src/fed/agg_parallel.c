/* agg_parallel.h: the aggregators' worker threads (pthreads; one call, one
 * set of threads, joined before it returns: aggregation runs once a round,
 * so a pool would save microseconds against seconds). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agg_parallel.h"
#include "error_internal.h"

#define AGG_MT_MIN ((size_t)1 << 20)

unsigned agg_threads(size_t work, size_t n)
{
    const char *e = getenv("FP_AGG_THREADS");
    long v;
    if (e && e[0])
        v = strtol(e, NULL, 10);
    else
        v = work < AGG_MT_MIN ? 1 : sysconf(_SC_NPROCESSORS_ONLN);
    if (v < 1)
        v = 1;
    if (v > AGG_MAX_THREADS)
        v = AGG_MAX_THREADS;
    if (n && (size_t)v > n)
        v = (long)n;
    return (unsigned)v;
}

typedef struct run {
    agg_range_fn fn;
    void *arg;
    unsigned t;
    size_t i0, i1;
    int rc;
    char err[256];
} run;

static void *run_one(void *p)
{
    run *r = p;
    r->rc = r->fn(r->arg, r->t, r->i0, r->i1);
    if (r->rc) /* the message is thread-local: keep it for the caller */
        snprintf(r->err, sizeof r->err, "%s", fp_errmsg());
    return NULL;
}

int agg_parallel(unsigned nt, size_t n, agg_range_fn fn, void *arg)
{
    if (nt < 1)
        nt = 1;
    if (nt > AGG_MAX_THREADS)
        nt = AGG_MAX_THREADS;
    run r[AGG_MAX_THREADS];
    pthread_t th[AGG_MAX_THREADS];
    int started[AGG_MAX_THREADS] = {0};
    for (unsigned t = 0; t < nt; t++)
        r[t] = (run){fn, arg, t, n * t / nt, n * (t + 1) / nt, 0, ""};
    for (unsigned t = 1; t < nt; t++)
        started[t] = pthread_create(&th[t], NULL, run_one, &r[t]) == 0;
    run_one(&r[0]);
    for (unsigned t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            run_one(&r[t]);
    }
    for (unsigned t = 0; t < nt; t++)
        if (r[t].rc)
            return fp_seterr(r[t].rc, "%s", r[t].err);
    return 0;
}
