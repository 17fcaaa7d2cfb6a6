/* The noise samplers against their exact distributions: discrete Gaussian and
 * discrete Laplace by chi-square over the exact pmf (computed here by direct
 * summation), plus mean, variance and tail; the continuous Gaussian by
 * moments and a Kolmogorov-Smirnov distance; clipping exactly; ring noise
 * modulo 2^32. Seeded byte sources make the statistical checks reproducible;
 * one run per sampler uses the real CSPRNG with the same (loose) bounds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/dp.h"
#include "fedproxy/error.h"
#include "fp_test.h"

static void seeded(fp_dp_rng *r, uint8_t tag)
{
    uint8_t seed[FP_DP_SEEDBYTES];
    memset(seed, 0, sizeof seed);
    seed[0] = tag;
    seed[31] = 0x5a;
    fp_dp_rng_init_seeded(r, seed);
}

/* Exact pmf of N_Z(0, s2) or discrete Laplace(t) on [-R, R] (mass beyond R < 1e-30). */
static double *exact_pmf(int64_t R, double s2, double t)
{
    double *p = calloc((size_t)(2 * R + 1), sizeof *p), z = 0;
    for (int64_t x = -R; x <= R; x++) {
        double ax = (double)(x < 0 ? -x : x);
        p[x + R] = s2 > 0 ? exp(-ax * ax / (2 * s2)) : exp(-ax / t);
        z += p[x + R];
    }
    for (int64_t x = -R; x <= R; x++)
        p[x + R] /= z;
    return p;
}

/* Chi-square of samples against pmf p on [-R, R], bins merged from the
 * centre outwards until each expects >= 40 draws; returns stat/df and df. */
static double chi2(const int64_t *s, size_t n, const double *p, int64_t R, int *df_out)
{
    double *cnt = calloc((size_t)(2 * R + 1), sizeof *cnt);
    size_t outside = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < -R || s[i] > R)
            outside++;
        else
            cnt[s[i] + R] += 1;
    }
    double stat = 0, eb = 0, ob = 0;
    int bins = 0;
    for (int64_t x = -R; x <= R; x++) {
        eb += p[x + R] * (double)n;
        ob += cnt[x + R];
        if (eb >= 40 || x == R) {
            stat += (ob - eb) * (ob - eb) / (eb > 0 ? eb : 1e-300);
            bins++;
            eb = ob = 0;
        }
    }
    free(cnt);
    *df_out = bins - 1;
    return outside ? INFINITY : stat;
}

static void moments(const int64_t *s, size_t n, double *mean, double *var)
{
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        m += (double)s[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++)
        v += ((double)s[i] - m) * ((double)s[i] - m);
    *mean = m;
    *var = v / (double)(n - 1);
}

/* Discrete Gaussian with variance s2: chi-square, mean, variance, 2-sigma tail. */
static void check_dgauss(double s2, size_t n, fp_dp_rng *r, const char *what)
{
    int64_t *s = malloc(n * sizeof *s);
    CHECK_OK(fp_dp_discrete_gaussian(s, n, s2, r));
    int64_t R = (int64_t)ceil(14 * sqrt(s2)) + 4;
    double *p = exact_pmf(R, s2, 0);
    double ev = 0, tail = 0, sig = sqrt(s2);
    for (int64_t x = -R; x <= R; x++) {
        ev += (double)(x * x) * p[x + R];
        if (fabs((double)x) > 2 * sig)
            tail += p[x + R];
    }
    int df = 0;
    double st = chi2(s, n, p, R, &df);
    /* p-value ~1e-4 bound: df + 4 sqrt(2 df) */
    CHECKF(st <= df + 4 * sqrt(2.0 * df), "%s: chi-square %.1f with %d df", what, st, df);
    double m, v;
    moments(s, n, &m, &v);
    /* mean: 5 standard errors; variance: 5 standard errors (var of x^2 ~ 2 s2^2 for a Gaussian) */
    CHECKF(fabs(m) < 5 * sqrt(ev / (double)n), "%s: mean %.4f", what, m);
    CHECKF(fabs(v - ev) < 5 * ev * sqrt(2.0 / (double)n) + 1e-9, "%s: variance %.4f, exact %.4f", what, v, ev);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        nt += fabs((double)s[i]) > 2 * sig;
    double se = sqrt(tail * (1 - tail) / (double)n);
    CHECKF(fabs((double)nt / (double)n - tail) < 5 * se, "%s: P(|x| > 2 sigma) %.5f, exact %.5f", what,
           (double)nt / (double)n, tail);
    free(p);
    free(s);
}

static void test_discrete_gaussian(void)
{
    fp_dp_rng r;
    seeded(&r, 1);
    check_dgauss(0.25, 40000, &r, "dgauss s2=0.25");
    check_dgauss(2.0, 40000, &r, "dgauss s2=2");
    check_dgauss(37.5, 40000, &r, "dgauss s2=37.5");
    check_dgauss(1234.5, 40000, &r, "dgauss s2=1234.5");
    fp_dp_rng_wipe(&r);
    fp_dp_rng_init(&r); /* the real CSPRNG */
    check_dgauss(9.0, 40000, &r, "dgauss CSPRNG s2=9");
    fp_dp_rng_wipe(&r);
    /* Ring scale: variance 2^40 (sigma about 10^6). Moments only. */
    seeded(&r, 2);
    size_t n = 20000;
    int64_t *s = malloc(n * sizeof *s);
    CHECK_OK(fp_dp_discrete_gaussian(s, n, 0x1p40, &r));
    double m, v;
    moments(s, n, &m, &v);
    CHECKF(fabs(m) < 5 * 0x1p20 / sqrt((double)n), "dgauss 2^40: mean %g", m);
    CHECKF(fabs(v / 0x1p40 - 1) < 5 * sqrt(2.0 / (double)n), "dgauss 2^40: variance ratio %.4f", v / 0x1p40);
    free(s);
    /* Reproducible with the same seed, different with another. */
    int64_t a[64], b[64], c[64];
    seeded(&r, 9);
    fp_dp_discrete_gaussian(a, 64, 100, &r);
    seeded(&r, 9);
    fp_dp_discrete_gaussian(b, 64, 100, &r);
    seeded(&r, 10);
    fp_dp_discrete_gaussian(c, 64, 100, &r);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);
    /* Refusals. */
    CHECK_ERR(fp_dp_discrete_gaussian(a, 4, 0.1, &r), FP_EINVAL);
    CHECK_ERR(fp_dp_discrete_gaussian(a, 4, NAN, &r), FP_EINVAL);
    CHECK_ERR(fp_dp_discrete_gaussian(a, 4, 0x1p57, &r), FP_EINVAL);
    CHECK_ERR(fp_dp_discrete_gaussian(NULL, 4, 1, &r), FP_EINVAL);
    fp_dp_rng_wipe(&r);
}

static void test_discrete_laplace(void)
{
    fp_dp_rng r;
    seeded(&r, 3);
    const uint64_t ts[] = {1, 3, 17};
    for (size_t k = 0; k < 3; k++) {
        size_t n = 40000;
        int64_t *s = malloc(n * sizeof *s);
        CHECK_OK(fp_dp_discrete_laplace(s, n, ts[k], &r));
        int64_t R = (int64_t)(80 * ts[k]) + 10;
        double *p = exact_pmf(R, 0, (double)ts[k]);
        int df = 0;
        double st = chi2(s, n, p, R, &df);
        CHECKF(st <= df + 4 * sqrt(2.0 * df), "dlap t=%llu: chi-square %.1f with %d df", (unsigned long long)ts[k],
               st, df);
        /* exact variance: 2 e^{-1/t} / (1 - e^{-1/t})^2 */
        double e = exp(-1.0 / (double)ts[k]), ev = 2 * e / ((1 - e) * (1 - e)), m, v;
        moments(s, n, &m, &v);
        CHECKF(fabs(v - ev) < 8 * ev * sqrt(5.0 / (double)n), "dlap t=%llu: variance %.3f exact %.3f",
               (unsigned long long)ts[k], v, ev);
        free(p);
        free(s);
    }
    int64_t x;
    CHECK_ERR(fp_dp_discrete_laplace(&x, 1, 0, &r), FP_EINVAL);
    fp_dp_rng_wipe(&r);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void check_normal(fp_dp_rng *r, const char *what)
{
    size_t n = 50000;
    double *x = malloc(n * sizeof *x), m = 0, v = 0, k4 = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = fp_dp_normal(r);
        m += x[i];
    }
    m /= (double)n;
    for (size_t i = 0; i < n; i++) {
        v += (x[i] - m) * (x[i] - m);
        k4 += pow(x[i] - m, 4);
    }
    v /= (double)(n - 1);
    k4 /= (double)n;
    CHECKF(fabs(m) < 5 / sqrt((double)n), "%s: mean %.4f", what, m);
    CHECKF(fabs(v - 1) < 5 * sqrt(2.0 / (double)n), "%s: variance %.4f", what, v);
    CHECKF(fabs(k4 - 3) < 5 * sqrt(96.0 / (double)n), "%s: fourth moment %.3f (3 for a Gaussian)", what, k4);
    qsort(x, n, sizeof *x, cmp_d);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double F = 0.5 * erfc(-x[i] / M_SQRT2);
        double a = fabs(F - (double)i / (double)n), b = fabs(F - (double)(i + 1) / (double)n);
        d = fmax(d, fmax(a, b));
    }
    /* KS critical value at p = 0.001: 1.95 / sqrt(n) */
    CHECKF(d < 1.95 / sqrt((double)n), "%s: KS distance %.5f", what, d);
    free(x);
}

static void test_normal(void)
{
    fp_dp_rng r;
    seeded(&r, 4);
    check_normal(&r, "normal seeded");
    fp_dp_rng_init(&r);
    check_normal(&r, "normal CSPRNG");
    /* add_gaussian: x + sigma * N(0,1) */
    size_t n = 40000;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = 3.0f;
    CHECK_OK(fp_dp_add_gaussian(x, n, 0.5, &r));
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        m += x[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= (double)(n - 1);
    CHECKF(fabs(m - 3) < 5 * 0.5 / sqrt((double)n), "add_gaussian mean %.4f", m);
    CHECKF(fabs(v / 0.25 - 1) < 5 * sqrt(2.0 / (double)n), "add_gaussian variance %.4f", v);
    CHECK_ERR(fp_dp_add_gaussian(x, n, -1, &r), FP_EINVAL);
    CHECK_ERR(fp_dp_add_gaussian(x, n, INFINITY, &r), FP_EINVAL);
    free(x);
    fp_dp_rng_wipe(&r);
    /* wipe really clears the noise material */
    uint8_t zero[sizeof r] = {0};
    CHECK(!memcmp(&r, zero, sizeof r));
}

static void test_clip(void)
{
    /* (3,4) has norm 5: clipped to 1 it is (0.6, 0.8) up to float rounding toward zero. */
    float x[2] = {3, 4};
    double nb = 0;
    CHECK_OK(fp_dp_clip_l2(x, 2, 1.0, &nb));
    CHECK(nb == 5.0);
    CHECK(fabs(x[0] - 0.6) < 1e-7 && fabs(x[1] - 0.8) < 1e-7);
    CHECK(sqrt((double)x[0] * x[0] + (double)x[1] * x[1]) <= 1.0);
    /* Below the bound: untouched, bit for bit. */
    float y[3] = {0.1f, -0.2f, 0.3f}, y0[3];
    memcpy(y0, y, sizeof y);
    CHECK_OK(fp_dp_clip_l2(y, 3, 1.0, NULL));
    CHECK(!memcmp(y, y0, sizeof y));
    /* Many random vectors of varied size and scale: norm <= clip exactly (in
     * double), and the direction kept. */
    fp_test_seed(7);
    for (int t = 0; t < 200; t++) {
        size_t n = 1 + fp_test_u32() % 3000;
        float *v = malloc(n * sizeof *v), *o = malloc(n * sizeof *o);
        double sc = pow(10, fp_test_uniform(-3, 3)), c = pow(10, fp_test_uniform(-2, 2));
        for (size_t i = 0; i < n; i++)
            o[i] = v[i] = (float)(sc * fp_test_normal());
        double before = 0, after = 0, dot = 0, on = 0;
        CHECK_OK(fp_dp_clip_l2(v, n, c, &before));
        for (size_t i = 0; i < n; i++) {
            after += (double)v[i] * v[i];
            dot += (double)v[i] * o[i];
            on += (double)o[i] * o[i];
        }
        after = sqrt(after);
        on = sqrt(on);
        if (after > c || fabs(before - on) > 1e-9 * on || (before > c && fabs(after / c - 1) > 1e-6) ||
            (before > c && dot / (after * on) < 1 - 1e-6)) {
            CHECKF(0, "clip case %d: n %zu clip %g norm before %g after %g", t, n, c, before, after);
            free(v);
            free(o);
            break;
        }
        free(v);
        free(o);
    }
    CHECK(1);
    float bad[3] = {1, NAN, 2};
    CHECK_ERR(fp_dp_clip_l2(bad, 3, 1, NULL), FP_EINVAL);
    bad[1] = INFINITY;
    CHECK_ERR(fp_dp_clip_l2(bad, 3, 1, NULL), FP_EINVAL);
    CHECK_ERR(fp_dp_clip_l2(x, 2, 0, NULL), FP_EINVAL);
}

static void test_ring_noise(void)
{
    /* Same seed: ring noise on zeros, read as int32, equals the samples. */
    fp_dp_rng r;
    size_t n = 1000;
    int64_t *s = malloc(n * sizeof *s);
    uint32_t *q = calloc(n, sizeof *q);
    seeded(&r, 5);
    CHECK_OK(fp_dp_discrete_gaussian(s, n, 1e6, &r));
    seeded(&r, 5);
    for (size_t i = 0; i < n; i++)
        q[i] = (uint32_t)(7 - (int64_t)i); /* wraps for i > 7 */
    CHECK_OK(fp_dp_add_ring_noise(q, n, 1e6, &r));
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= (int32_t)q[i] == (int32_t)(7 - (int64_t)i + s[i]);
    CHECK(ok);
    fp_dp_rng_wipe(&r);
    free(s);
    free(q);
    /* tau of Kairouz et al. is negligible at ring scales, not for tiny sigma. */
    CHECK(fp_dp_ddg_tau(100, 1e6) == 0.0);
    CHECK(fp_dp_ddg_tau(100, 0.01) > 1);
    CHECK(fp_dp_ddg_tau(1, 0.01) == 0.0);
}

int main(void)
{
    test_discrete_gaussian();
    test_discrete_laplace();
    test_normal();
    test_clip();
    test_ring_noise();
    return fp_test_report("dp_samplers");
}
