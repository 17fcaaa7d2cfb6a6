/* Helpers shared by the training-op tests: device tensors from host arrays,
 * downloads, comparisons that print NMSE and max error, and the profile list
 * (native + every built-in overlay). */
#ifndef TRAIN_COMMON_H
#define TRAIN_COMMON_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_train.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

/* "" (native) then every built-in overlay; index past the end gives NULL. */
static inline const char *tc_profile(int i)
{
    if (i == 0)
        return "";
    return fp_overlay_builtin_names[i - 1];
}

static inline fp_tensor *tc_new(fp_ctx *ctx, fp_dtype dt, int ndim, const int64_t *shape, const void *data)
{
    fp_tensor *t = NULL;
    int rc = fp_tensor_new(&t, ctx, dt, ndim, shape);
    CHECK_OK(rc);
    if (rc)
        exit(1);
    if (data)
        CHECK_OK(fp_tensor_upload(t, data, t->nbytes));
    return t;
}

static inline fp_tensor *tc_f32(fp_ctx *ctx, int64_t rows, int64_t cols, const float *data)
{
    int64_t sh[2] = {rows, cols};
    return tc_new(ctx, FP_F32, 2, sh, data);
}

static inline fp_tensor *tc_f32_1d(fp_ctx *ctx, int64_t n, const float *data)
{
    return tc_new(ctx, FP_F32, 1, &n, data);
}

static inline fp_tensor *tc_i32(fp_ctx *ctx, int64_t n, const int32_t *data)
{
    return tc_new(ctx, FP_I32, 1, &n, data);
}

static inline float *tc_down(const fp_tensor *t)
{
    float *h = malloc(t->nbytes ? t->nbytes : 4);
    CHECK_OK(fp_tensor_download(h, t->nbytes, t));
    return h;
}

static inline float *tc_rand(size_t n, float lo, float hi)
{
    float *a = malloc((n ? n : 1) * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = fp_test_uniform(lo, hi);
    return a;
}

/* NMSE <= tol and finite; prints the numbers. */
static inline void tc_cmp(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double e = fp_test_nmse(got, ref, n), m = fp_test_maxerr(got, ref, n);
    int finite = 1;
    for (size_t i = 0; i < n; i++)
        finite &= isfinite(got[i]) || !isfinite(ref[i]);
    printf("    %-34s n=%-8zu nmse %.3g  maxerr %.3g\n", what, n, e, m);
    CHECKF(finite && e <= tol, "%s: nmse %g > %g (maxerr %g, finite %d)", what, e, tol, m, finite);
}

/* Finite-difference agreement: max |a - b| <= tol * max(1, max |b|). */
static inline void tc_fd(const char *what, const double *fd, const float *analytic, size_t n, double tol)
{
    double me = 0, mb = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(fd[i] - analytic[i]);
        me = d > me ? d : me;
        mb = fabs(fd[i]) > mb ? fabs(fd[i]) : mb;
    }
    printf("    fd %-31s n=%-8zu max rel err %.3g\n", what, n, me / mb);
    CHECKF(me <= tol * mb, "%s: finite-difference error %g (scale %g)", what, me, mb);
}

#endif
