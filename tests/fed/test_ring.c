/* Ring quantisation: clipping, unbiased stochastic rounding, reproducible seeds,
 * sums of many clients decoded back to floats, and the overflow refusal. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ring.h"
#include "fp_test.h"

static int64_t centred(uint32_t v) { return v >= 0x80000000u ? (int64_t)v - 0x100000000ll : v; }

int main(void)
{
    fp_test_seed(7);
    fp_ring_params p = {.clip = 1.0f, .scale_bits = 8};
    const double step = fp_ring_step(&p);
    CHECK(step == 1.0 / 256);

    /* Clipping and the sign embedding. */
    float edge[] = {5.0f, -5.0f, INFINITY, -INFINITY, 1.0f, -1.0f, 0.0f, 0.5f, -0.25f};
    uint32_t q[9];
    CHECK_OK(fp_ring_quantize(q, edge, 9, &p, NULL));
    CHECK(centred(q[0]) == 256 && centred(q[1]) == -256);
    CHECK(centred(q[2]) == 256 && centred(q[3]) == -256);
    CHECK(centred(q[4]) == 256 && centred(q[5]) == -256);
    CHECK(q[6] == 0 && centred(q[7]) == 128 && centred(q[8]) == -64); /* exact: no rounding */

    /* Stochastic rounding: every result is floor or ceil, and the mean error over
     * many trials vanishes (deterministic rounding would be off by ~0.3 step). */
    enum { TRIALS = 20000 };
    float xs[TRIALS];
    uint32_t qs[TRIALS];
    const float v = 0.3f * (float)step + 17.0f * (float)step; /* frac 0.3 */
    for (int i = 0; i < TRIALS; i++)
        xs[i] = v;
    CHECK_OK(fp_ring_quantize(qs, xs, TRIALS, &p, NULL));
    double mean = 0;
    int outside = 0, ups = 0;
    for (int i = 0; i < TRIALS; i++) {
        int64_t c = centred(qs[i]);
        outside += c != 17 && c != 18;
        ups += c == 18;
        mean += (double)c * step - (double)v;
    }
    mean /= TRIALS;
    CHECK(outside == 0);
    /* P(up) = 0.3: sd of the mean error is step*sqrt(.21/N) ~ 0.0032 step; allow 5 sd. */
    CHECKF(fabs(mean) < 5 * step * sqrt(0.21 / TRIALS), "mean error %g steps", mean / step);
    CHECKF(abs(ups - 6000) < 400, "%d of %d rounded up, expected ~6000", ups, TRIALS);
    /* Negative values are unbiased too. */
    for (int i = 0; i < TRIALS; i++)
        xs[i] = -0.7f * (float)step;
    CHECK_OK(fp_ring_quantize(qs, xs, TRIALS, &p, NULL));
    mean = 0;
    for (int i = 0; i < TRIALS; i++)
        mean += (double)centred(qs[i]) * step + 0.7 * step;
    mean /= TRIALS;
    CHECKF(fabs(mean) < 5 * step * sqrt(0.21 / TRIALS), "negative mean error %g steps", mean / step);

    /* Random data: mean error over many elements ~ 0, each within one step. */
    enum { D = 10001 };
    float *x = malloc(sizeof *x * D);
    uint32_t *qa = malloc(sizeof *qa * D), *qb = malloc(sizeof *qb * D);
    for (int i = 0; i < D; i++)
        x[i] = fp_test_uniform(-0.9f, 0.9f);
    uint8_t seed[FP_RING_SEEDBYTES] = {1, 2, 3};
    CHECK_OK(fp_ring_quantize(qa, x, D, &p, seed));
    CHECK_OK(fp_ring_quantize(qb, x, D, &p, seed));
    CHECK(memcmp(qa, qb, sizeof *qa * D) == 0); /* same seed, same rounding */
    seed[0] = 9;
    CHECK_OK(fp_ring_quantize(qb, x, D, &p, seed));
    CHECK(memcmp(qa, qb, sizeof *qa * D) != 0); /* another seed, other rounding */
    double err = 0, maxe = 0;
    for (int i = 0; i < D; i++) {
        double e = (double)centred(qa[i]) * step - (double)x[i];
        err += e;
        maxe = fmax(maxe, fabs(e));
    }
    CHECK(maxe < step);
    CHECKF(fabs(err / D) < 5 * step * 0.5 / sqrt(D), "mean error %g steps", err / D / step);

    /* Sum of n clients decoded: within n steps of the float sum, elementwise. */
    enum { N = 20 };
    fp_ring_params ps = {.clip = 2.0f, .scale_bits = 20};
    CHECK_OK(fp_ring_check(&ps, N));
    uint32_t *acc = calloc(D, sizeof *acc);
    double *ref = calloc(D, sizeof *ref);
    float *out = malloc(sizeof *out * D);
    for (int c = 0; c < N; c++) {
        for (int i = 0; i < D; i++) {
            x[i] = fp_test_uniform(-2.5f, 2.5f);
            ref[i] += fmax(-2.0, fmin(2.0, (double)x[i]));
        }
        CHECK_OK(fp_ring_quantize(qa, x, D, &ps, NULL));
        fp_ring_add(acc, qa, D);
    }
    CHECK_OK(fp_ring_dequantize_sum(out, acc, D, &ps, N));
    double worst = 0;
    int negatives = 0;
    for (int i = 0; i < D; i++) {
        worst = fmax(worst, fabs((double)out[i] - ref[i]));
        negatives += ref[i] < -1;
    }
    CHECKF(worst <= N * fp_ring_step(&ps) + 1e-5 * N, "worst error %g, bound %g", worst,
           N * fp_ring_step(&ps));
    CHECK(negatives > D / 10); /* the centred decoding was exercised */
    /* sub undoes add. */
    memcpy(qb, acc, sizeof *acc * D);
    fp_ring_add(qb, qa, D);
    fp_ring_sub(qb, qa, D);
    CHECK(memcmp(qb, acc, sizeof *acc * D) == 0);

    /* Overflow: 2^31 / (clip 2^k) clients is the edge. clip 1 at scale 24 gives
     * M = 2^24, so 127 clients fit (127 * 2^24 < 2^31) and 128 do not. */
    fp_ring_params po = {.clip = 1.0f, .scale_bits = 24};
    CHECK_OK(fp_ring_check(&po, 127));
    CHECK_ERR(fp_ring_check(&po, 128), FP_EOVERFLOW);
    CHECK(strstr(fp_errmsg(), "128") != NULL);
    CHECK_ERR(fp_ring_dequantize_sum(out, acc, D, &po, 128), FP_EOVERFLOW);
    unsigned bits = 99;
    CHECK_OK(fp_ring_max_scale_bits(&bits, 1.0f, 128));
    CHECK(bits == 23);
    po.scale_bits = bits;
    CHECK_OK(fp_ring_check(&po, 128));
    fp_ring_params huge = {.clip = 3e9f, .scale_bits = 0};
    CHECK_ERR(fp_ring_check(&huge, 1), FP_EOVERFLOW);
    CHECK_ERR(fp_ring_quantize(qa, x, 4, &huge, NULL), FP_EOVERFLOW);

    /* Bad parameters and inputs. */
    fp_ring_params bad = {.clip = 0.0f, .scale_bits = 8};
    CHECK_ERR(fp_ring_check(&bad, 1), FP_EINVAL);
    bad.clip = NAN;
    CHECK_ERR(fp_ring_check(&bad, 1), FP_EINVAL);
    bad.clip = 1.0f;
    bad.scale_bits = 31;
    CHECK_ERR(fp_ring_check(&bad, 1), FP_EINVAL);
    x[3] = NAN;
    CHECK_ERR(fp_ring_quantize(qa, x, D, &p, NULL), FP_EINVAL);
    CHECK(strstr(fp_errmsg(), "3") != NULL);

    free(x);
    free(qa);
    free(qb);
    free(acc);
    free(ref);
    free(out);
    return fp_test_report("test_ring");
}
