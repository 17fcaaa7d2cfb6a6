/* Microbenchmarks for fp-probe (see include/fedproxy/probe.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedproxy/ops_basic.h"
#include "fedproxy/probe.h"
#include "error_internal.h"
#include "vk/vk_internal.h"

/* the probe tunes the live context, so kernels use the candidate being timed */
static fp_measured *fp_ctx_measured_mut(fp_ctx *ctx) { return &ctx->measured; }

double fp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t probe_bytes(fp_ctx *ctx, int quick)
{
    /* large enough to leave the caches, small enough for any device's binding range */
    uint64_t b = quick ? (16ull << 20) : (64ull << 20);
    const fp_profile *p = fp_ctx_profile(ctx);
    if (b > p->storage_range)
        b = p->storage_range;
    if (b > p->max_alloc / 2)
        b = p->max_alloc / 2;
    return b & ~15ull;
}

static int copy_bandwidth_once(double *gbps, fp_ctx *ctx, int quick)
{
    *gbps = 0;
    int64_t n = (int64_t)(probe_bytes(ctx, quick) / 4);
    fp_tensor *a = NULL, *b = NULL;
    fp_stream *s = NULL;
    int rc = fp_tensor_new(&a, ctx, FP_F32, 1, &n);
    if (!rc)
        rc = fp_tensor_new(&b, ctx, FP_F32, 1, &n);
    if (!rc)
        rc = fp_tensor_zero(a);
    if (!rc)
        rc = fp_stream_new(&s, ctx);
    int reps = quick ? 3 : 5, per = 4;
    double best = 1e30;
    for (int r = 0; !rc && r <= reps; r++) {
        for (int i = 0; !rc && i < per; i++)
            rc = i % 2 ? fp_op_copy(s, a, b) : fp_op_copy(s, b, a);
        double t0 = fp_now();
        if (!rc)
            rc = fp_stream_run(s);
        double dt = fp_now() - t0;
        if (r > 0 && dt < best) /* the first run warms up pipelines and pages */
            best = dt;
    }
    if (!rc)
        *gbps = 2.0 * (double)n * 4 * per / best / 1e9;
    fp_stream_free(s);
    fp_tensor_free(a);
    fp_tensor_free(b);
    return rc;
}

/* tries the elementwise workgroup sizes the profile allows and keeps the best in
 * the context's tune table (fp_probe_measure saves it with the rest) */
int fp_probe_copy_bandwidth(double *gbps, fp_ctx *ctx, int quick)
{
    fp_measured *m = fp_ctx_measured_mut(ctx);
    char saved[FP_TUNE_VALUE_MAX] = "";
    const char *old = fp_measured_tune_get(m, "basic.wg");
    if (old)
        snprintf(saved, sizeof saved, "%s", old);
    double best = 0;
    uint32_t best_wg = 0;
    static const uint32_t sizes[] = {64, 128, 256, 512};
    const fp_profile *p = fp_ctx_profile(ctx);
    int rc = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !rc; i++) {
        if (sizes[i] > p->max_wg_invocations || sizes[i] > p->max_wg_size[0])
            break;
        char v[16];
        snprintf(v, sizeof v, "%u", sizes[i]);
        rc = fp_measured_tune_set(m, "basic.wg", v);
        double g = 0;
        if (!rc)
            rc = copy_bandwidth_once(&g, ctx, quick);
        if (g > best) {
            best = g;
            best_wg = sizes[i];
        }
    }
    if (rc || !best_wg) {
        if (saved[0])
            fp_measured_tune_set(m, "basic.wg", saved);
        return rc;
    }
    char v[16];
    snprintf(v, sizeof v, "%u", best_wg);
    fp_measured_tune_set(m, "basic.wg", v);
    *gbps = best;
    return 0;
}

int fp_probe_transfer(double *h2d, double *d2h, fp_ctx *ctx, int quick)
{
    *h2d = *d2h = 0;
    uint64_t bytes = probe_bytes(ctx, quick);
    int64_t n = (int64_t)(bytes / 4);
    void *host = malloc(bytes);
    if (!host)
        return fp_seterr(FP_ENOMEM, "out of host memory");
    memset(host, 1, bytes);
    fp_tensor *t = NULL;
    int rc = fp_tensor_new(&t, ctx, FP_F32, 1, &n);
    double bu = 1e30, bd = 1e30;
    int reps = quick ? 3 : 5;
    for (int r = 0; !rc && r <= reps; r++) {
        double t0 = fp_now();
        rc = fp_tensor_upload(t, host, bytes);
        double t1 = fp_now();
        if (!rc)
            rc = fp_tensor_download(host, bytes, t);
        double t2 = fp_now();
        if (r > 0) {
            if (t1 - t0 < bu)
                bu = t1 - t0;
            if (t2 - t1 < bd)
                bd = t2 - t1;
        }
    }
    if (!rc) {
        *h2d = (double)bytes / bu / 1e9;
        *d2h = (double)bytes / bd / 1e9;
    }
    fp_tensor_free(t);
    free(host);
    return rc;
}

int fp_probe_dispatch(double *per_dispatch, double *per_submit, fp_ctx *ctx, int quick)
{
    *per_dispatch = *per_submit = 0;
    fp_stream *s = NULL;
    int rc = fp_stream_new(&s, ctx);
    int n = quick ? 500 : 2000, subs = quick ? 50 : 200;
    double best = 1e30;
    for (int r = 0; !rc && r < 3; r++) {
        for (int i = 0; !rc && i < n; i++)
            rc = fp_op_empty(s, 1);
        double t0 = fp_now();
        if (!rc)
            rc = fp_stream_run(s);
        double dt = fp_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    if (!rc)
        *per_dispatch = best / n * 1e6;
    double t0 = fp_now();
    for (int i = 0; !rc && i < subs; i++) {
        rc = fp_op_empty(s, 1);
        if (!rc)
            rc = fp_stream_run(s);
    }
    if (!rc)
        *per_submit = (fp_now() - t0) / subs * 1e6;
    fp_stream_free(s);
    return rc;
}

double fp_probe_memcpy_gbps(int quick)
{
    size_t bytes = quick ? (16u << 20) : (64u << 20);
    char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = 1e30;
    for (int r = 0; r < (quick ? 4 : 8); r++) {
        double t0 = fp_now();
        memcpy(r % 2 ? a : b, r % 2 ? b : a, bytes);
        double dt = fp_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    /* keep the copies observable so the compiler cannot drop them */
    volatile char sink = a[bytes / 2] + b[bytes / 3];
    (void)sink;
    free(a);
    free(b);
    return 2.0 * (double)bytes / best / 1e9;
}

int fp_probe_measure(fp_measured *m, fp_ctx *ctx, int quick, fp_progress_fn progress, void *user)
{
    if (progress)
        progress("copy bandwidth", 0.0, user);
    double copy = 0;
    int rc = fp_probe_copy_bandwidth(&copy, ctx, quick);
    /* start from what the context had (earlier tuning entries survive unless re-measured) */
    *m = *fp_ctx_measured(ctx);
    m->copy_gbps = copy;
    if (progress)
        progress("host<->device transfer", 0.3, user);
    if (!rc)
        rc = fp_probe_transfer(&m->h2d_gbps, &m->d2h_gbps, ctx, quick);
    if (progress)
        progress("dispatch latency", 0.6, user);
    if (!rc)
        rc = fp_probe_dispatch(&m->dispatch_us, &m->submit_us, ctx, quick);
    if (progress)
        progress("done", 1.0, user);
    if (!rc)
        m->valid = 1;
    return rc;
}
