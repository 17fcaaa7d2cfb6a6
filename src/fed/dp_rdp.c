/* Rényi DP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar,
 * Zhang 2019) and the conversion to (epsilon, delta). Everything is computed
 * in the log domain: the terms reach exp(alpha^2 / (2 z^2)). */
#include <float.h>
#include <math.h>

#include "error_internal.h"
#include "fedproxy/dp.h"

/* 1.1 to 10.9 in steps of 0.1 (where the optimum lies for epsilon of a few
 * units and more), the integers to 64, then sparser up to 1024. */
static const double orders[] = {
    1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3, 3.1, 3.2,
    3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4, 4.1, 4.2, 4.3, 4.4, 4.5, 4.6, 4.7, 4.8, 4.9, 5, 5.1, 5.2, 5.3, 5.4,
    5.5, 5.6, 5.7, 5.8, 5.9, 6, 6.1, 6.2, 6.3, 6.4, 6.5, 6.6, 6.7, 6.8, 6.9, 7, 7.1, 7.2, 7.3, 7.4, 7.5, 7.6,
    7.7, 7.8, 7.9, 8, 8.1, 8.2, 8.3, 8.4, 8.5, 8.6, 8.7, 8.8, 8.9, 9, 9.1, 9.2, 9.3, 9.4, 9.5, 9.6, 9.7, 9.8,
    9.9, 10, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 10.7, 10.8, 10.9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46,
    47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 72, 80, 96, 128, 160, 192, 256,
    384, 512, 768, 1024};

size_t fp_dp_orders(const double **out)
{
    *out = orders;
    return sizeof orders / sizeof orders[0];
}

/* log(exp(a) + exp(b)) */
static double log_add(double a, double b)
{
    if (a == -INFINITY)
        return b;
    if (b == -INFINITY)
        return a;
    double m = a > b ? a : b;
    return m + log1p(exp(-fabs(a - b)));
}

/* log(Phi(u)), Phi the standard normal CDF, accurate far into the lower tail. */
static double log_ndtr(double u)
{
    if (u > -20)
        return log(0.5 * erfc(-u / M_SQRT2));
    /* Mills ratio: Phi(u) = phi(u)/|u| * (1 - 1/u^2 + 3/u^4 - 15/u^6 ...). */
    double u2 = u * u;
    return -0.5 * u2 - log(-u) - 0.5 * log(2 * M_PI) + log1p(-1 / u2 + 3 / (u2 * u2) - 15 / (u2 * u2 * u2));
}

/* log |binom(alpha, k)| (generalised) and its sign. */
static double log_abs_binom(double alpha, double k, int *sign)
{
    /* The factors alpha - i, i < k, are negative for i > alpha. */
    double fl = floor(alpha);
    double neg = k - fl - 1;
    *sign = (neg > 0 && fmod(neg, 2.0) == 1.0) ? -1 : 1;
    if (alpha == fl && k > alpha) {
        *sign = 0; /* binom(n, k) = 0 for integer n < k */
        return -INFINITY;
    }
    return lgamma(alpha + 1) - lgamma(k + 1) - lgamma(alpha - k + 1);
}

/* log A_alpha for integer alpha: sum_k binom(a,k) (1-q)^(a-k) q^k exp((k^2-k)/(2 z^2)). */
static double log_a_int(double q, double z, unsigned a)
{
    double s = -INFINITY, lq = log(q), l1q = log1p(-q);
    for (unsigned k = 0; k <= a; k++) {
        int sg;
        double t = log_abs_binom(a, k, &sg) + (double)(a - k) * l1q + (double)k * lq +
                   ((double)k * k - k) / (2 * z * z);
        s = log_add(s, t);
    }
    return s;
}

/* log A_alpha for fractional alpha. Split the integral at z0, where
 * q mu1(x) = (1-q) mu0(x); below it expand (1-q)^a (1 + r)^a, above it
 * (q e^{(2x-1)/2z^2})^a (1 + 1/r)^a, both with |r| <= 1, as binomial series.
 * Each term integrates mu0 against an exponential in x: a shifted Gaussian
 * times exp((j^2 - j)/(2 z^2)), cut at z0. */
static double log_a_frac(double q, double z, double a)
{
    double z2 = z * z, lq = log(q), l1q = log1p(-q);
    double z0 = z2 * log(1 / q - 1) + 0.5;
    double pos = -INFINITY, negs = -INFINITY;
    for (unsigned k = 0; k < 100000; k++) {
        int sg;
        double lb = log_abs_binom(a, k, &sg), j = a - k;
        double t0 = lb + (a - k) * l1q + k * lq + ((double)k * k - k) / (2 * z2) + log_ndtr((z0 - k) / z);
        double t1 = lb + j * lq + k * l1q + (j * j - j) / (2 * z2) + log_ndtr((j - z0) / z);
        double t = log_add(t0, t1);
        if (sg > 0)
            pos = log_add(pos, t);
        else if (sg < 0)
            negs = log_add(negs, t);
        if (k > a + 2 && t < pos - 32) /* alternating tail: the error is below the next term */
            break;
    }
    if (negs == -INFINITY)
        return pos;
    return pos + log1p(-exp(negs - pos));
}

int fp_dp_rdp_sampled_gaussian(double *rdp, double q, double z, double alpha)
{
    if (!rdp)
        return fp_seterr(FP_EINVAL, "fp_dp_rdp_sampled_gaussian: NULL output");
    *rdp = NAN;
    if (!(q >= 0 && q <= 1) || !(z > 0) || !isfinite(z) || !(alpha > 1) || !isfinite(alpha))
        return fp_seterr(FP_EINVAL, "RDP: need q in [0,1], noise multiplier > 0, order > 1 (got q=%g z=%g alpha=%g)",
                         q, z, alpha);
    if (q == 0) {
        *rdp = 0;
        return 0;
    }
    if (q == 1) { /* the Gaussian mechanism: D_alpha(N(1,z^2) || N(0,z^2)) */
        *rdp = alpha / (2 * z * z);
        return 0;
    }
    double la = alpha == floor(alpha) && alpha <= 100000 ? log_a_int(q, z, (unsigned)alpha)
                                                         : log_a_frac(q, z, alpha);
    *rdp = la / (alpha - 1);
    if (!(*rdp >= 0)) /* roundoff can make log A slightly negative when q is tiny */
        *rdp = 0;
    return 0;
}

static int to_eps(double *eps, double *order, const double *ords, const double *rdp, size_t n, double delta,
                  int classic)
{
    if (!eps || !ords || !rdp || !n)
        return fp_seterr(FP_EINVAL, "rdp_to_epsilon: NULL or empty argument");
    if (!(delta > 0 && delta < 1))
        return fp_seterr(FP_EINVAL, "rdp_to_epsilon: delta must be in (0, 1), got %g", delta);
    double best = INFINITY, bo = NAN;
    for (size_t i = 0; i < n; i++) {
        double a = ords[i];
        if (!(a > 1) || isnan(rdp[i]))
            return fp_seterr(FP_EINVAL, "rdp_to_epsilon: order %g / rdp %g invalid", a, rdp[i]);
        double e = rdp[i] - log(delta) / (a - 1); /* Mironov 2017, Prop. 3 */
        if (!classic) {
            /* CKS 2020 Prop. 12: delta = exp((a-1)(rdp-eps)) / (a-1) * (1-1/a)^a, solved for eps. */
            double t = rdp[i] + log1p(-1 / a) - (log(delta) + log(a)) / (a - 1);
            if (t < e)
                e = t;
        }
        if (e < 0)
            e = 0;
        if (e < best) {
            best = e;
            bo = a;
        }
    }
    *eps = best;
    if (order)
        *order = bo;
    return 0;
}

int fp_dp_rdp_to_epsilon(double *eps, double *order, const double *ords, const double *rdp, size_t n,
                         double delta)
{
    return to_eps(eps, order, ords, rdp, n, delta, 0);
}

int fp_dp_rdp_to_epsilon_classic(double *eps, double *order, const double *ords, const double *rdp, size_t n,
                                 double delta)
{
    return to_eps(eps, order, ords, rdp, n, delta, 1);
}

int fp_dp_epsilon(double *eps, double q, double z, uint64_t steps, double delta)
{
    const double *o;
    size_t n = fp_dp_orders(&o);
    double rdp[sizeof orders / sizeof orders[0]];
    for (size_t i = 0; i < n; i++) {
        int rc = fp_dp_rdp_sampled_gaussian(&rdp[i], q, z, o[i]);
        if (rc)
            return rc;
        rdp[i] *= (double)steps;
    }
    return fp_dp_rdp_to_epsilon(eps, NULL, o, rdp, n, delta);
}

int fp_dp_noise_for_epsilon(double *z, double q, uint64_t steps, double delta, double target_eps)
{
    if (!z)
        return fp_seterr(FP_EINVAL, "fp_dp_noise_for_epsilon: NULL output");
    *z = NAN;
    if (!(target_eps > 0) || !isfinite(target_eps) || !steps)
        return fp_seterr(FP_EINVAL, "noise for epsilon: target epsilon must be > 0 and rounds >= 1 (got %g, %llu)",
                         target_eps, (unsigned long long)steps);
    double lo = 0.05, hi = 1e4, e = 0;
    int rc = fp_dp_epsilon(&e, q, hi, steps, delta);
    if (rc)
        return rc;
    if (e > target_eps)
        return fp_seterr(FP_EINVAL, "noise for epsilon: even noise multiplier %g gives epsilon %g > %g", hi, e,
                         target_eps);
    rc = fp_dp_epsilon(&e, q, lo, steps, delta);
    if (rc)
        return rc;
    if (e <= target_eps) {
        *z = lo;
        return 0;
    }
    /* invariant: eps(lo) > target >= eps(hi); bisect in log z */
    while (hi / lo > 1.001) {
        double mid = sqrt(lo * hi);
        rc = fp_dp_epsilon(&e, q, mid, steps, delta);
        if (rc)
            return rc;
        if (e > target_eps)
            lo = mid;
        else
            hi = mid;
    }
    *z = hi;
    return 0;
}
