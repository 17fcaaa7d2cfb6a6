/* Helpers shared by the attention tests (header-only, static). */
#ifndef ATTN_COMMON_H
#define ATTN_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_attention.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

static inline float *rnd(int64_t n, float amp)
{
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        x[i] = amp * fp_test_normal();
    return x;
}

static inline fp_tensor *dev(fp_ctx *ctx, int ndim, const int64_t *shape, const float *host)
{
    fp_tensor *t = NULL;
    int rc = fp_tensor_new(&t, ctx, FP_F32, ndim, shape);
    CHECK_OK(rc);
    if (rc)
        exit(1);
    if (host)
        CHECK_OK(fp_tensor_upload(t, host, t->nbytes));
    else
        CHECK_OK(fp_tensor_zero(t));
    return t;
}

static inline float *down(const fp_tensor *t)
{
    float *h = malloc(t->nbytes);
    CHECK_OK(fp_tensor_download(h, t->nbytes, t));
    return h;
}

/* NMSE (tolerance nmse_tol) and max error relative to the reference's largest
 * magnitude (at most 1e-3: f32 kernels reach ~1e-6) with a label. */
static inline void cmp(const char *what, const float *a, const float *ref, size_t n, double nmse_tol)
{
    double e = fp_test_nmse(a, ref, n), m = fp_test_maxerr(a, ref, n), big = 1e-30;
    for (size_t i = 0; i < n; i++)
        if (ref[i] > big || -ref[i] > big)
            big = ref[i] > 0 ? ref[i] : -ref[i];
    CHECKF(e <= nmse_tol && e == e, "%s: nmse %.3g (tol %.1g), max err %.3g", what, e, nmse_tol, m);
    CHECKF(m <= 1e-3 * big, "%s: max err %.3g vs largest |ref| %.3g", what, m, big);
}

/* "" (native) then every built-in overlay. */
static inline const char *profile_at(int i)
{
    return i == 0 ? "" : fp_overlay_builtin_names[i - 1];
}

#endif
