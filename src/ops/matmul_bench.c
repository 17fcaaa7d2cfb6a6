/* Host OpenBLAS sgemm timing, the comparison point of fp_bench_matmul. */
#include "fedproxy/ops_matmul.h"
#include "error_internal.h"

#include <stdlib.h>
#include <time.h>

#ifdef FP_HAVE_OPENBLAS
#include <cblas.h>
#endif

int fp_matmul_host_blas_time(int64_t M, int64_t N, int64_t K, int reps, double *seconds)
{
    if (!seconds || M <= 0 || N <= 0 || K <= 0)
        return fp_seterr(FP_EINVAL, "matmul blas: bad arguments");
#ifdef FP_HAVE_OPENBLAS
    float *a = malloc(sizeof(float) * (size_t)(M * K)), *b = malloc(sizeof(float) * (size_t)(K * N));
    float *c = malloc(sizeof(float) * (size_t)(M * N));
    if (!a || !b || !c) {
        free(a); free(b); free(c);
        return fp_seterr(FP_ENOMEM, "matmul blas: no memory");
    }
    for (int64_t i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 13 - 6) / 8.0f;
    for (int64_t i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 11 - 5) / 8.0f;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a, (int)K, b, (int)N,
                    0.0f, c, (int)N);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double t = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (r > 0 && t < best)
            best = t;
    }
    free(a); free(b); free(c);
    *seconds = best;
    return 0;
#else
    (void)reps;
    return fp_seterr(FP_EUNSUPPORTED, "matmul blas: built without OpenBLAS");
#endif
}
