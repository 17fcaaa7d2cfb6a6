/* Exact discrete Laplace and discrete Gaussian samplers (Canonne, Kamath,
 * Steinke 2020, "The Discrete Gaussian for Differential Privacy", Algorithms
 * 1-3), in integer arithmetic on CSPRNG bits: no floating point decides an
 * acceptance, so the output distribution is the discrete Gaussian itself, not
 * an approximation of it (floating-point samplers leak through their rounding
 * pattern; Mironov 2012). */
#include <math.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/dp.h"

__extension__ typedef unsigned __int128 u128;

/* Uniform in [0, n) for a 128-bit n >= 1 (rejection on the masked bit length). */
static u128 below128(fp_dp_rng *r, u128 n)
{
    if (n >> 64 == 0)
        return fp_dp_rng_below(r, (uint64_t)n);
    u128 m = n - 1;
    int bits = 128 - __builtin_clzll((uint64_t)(m >> 64));
    u128 mask = bits == 128 ? ~(u128)0 : (((u128)1 << bits) - 1);
    for (;;) {
        u128 v = ((u128)fp_dp_rng_u64(r) << 64 | fp_dp_rng_u64(r)) & mask;
        if (v < n)
            return v;
    }
}

/* Bernoulli(num/den), 0 <= num <= den, den >= 1. */
static int bern(fp_dp_rng *r, u128 num, u128 den) { return below128(r, den) < num; }

/* Bernoulli(exp(-num/den)) for num <= den (CKS Algorithm 1): K counts
 * successes of Bernoulli(gamma/K); P(K odd) = sum_j (-gamma)^j / j! = exp(-gamma).
 * Bernoulli(gamma/K) is Bernoulli(gamma) and Bernoulli(1/K) together, which
 * keeps den*K from overflowing. */
static int bern_exp_le1(fp_dp_rng *r, u128 num, u128 den)
{
    uint64_t k = 1;
    while (bern(r, num, den) && fp_dp_rng_below(r, k) == 0)
        k++;
    return k & 1;
}

/* Bernoulli(exp(-num/den)) for any num/den >= 0: one Bernoulli(exp(-1)) per
 * whole unit, then the fraction. Below exp(-2000) it returns 0 outright. */
static int bern_exp(fp_dp_rng *r, u128 num, u128 den)
{
    u128 whole = num / den;
    if (whole > 2000)
        return 0;
    for (u128 i = 0; i < whole; i++)
        if (!bern_exp_le1(r, 1, 1))
            return 0;
    return bern_exp_le1(r, num - whole * den, den);
}

/* One discrete Laplace(t) draw (CKS Algorithm 2). */
static int64_t dlap1(fp_dp_rng *r, uint64_t t)
{
    for (;;) {
        uint64_t u = fp_dp_rng_below(r, t);
        if (!bern_exp(r, u, t))
            continue;
        uint64_t v = 0;
        while (bern_exp_le1(r, 1, 1))
            v++;
        /* v is geometric (mean about 0.58): > 2^20 has probability e^-(2^20). */
        if (v > ((uint64_t)1 << 20) || t > (((uint64_t)1 << 62) - u) / (v + 1))
            continue;
        uint64_t x = u + t * v;
        int neg = (int)fp_dp_rng_below(r, 2);
        if (neg && x == 0)
            continue;
        return neg ? -(int64_t)x : (int64_t)x;
    }
}

int fp_dp_discrete_laplace(int64_t *out, size_t n, uint64_t t, fp_dp_rng *r)
{
    if ((!out && n) || !r)
        return fp_seterr(FP_EINVAL, "fp_dp_discrete_laplace: NULL argument");
    if (t < 1 || t > ((uint64_t)1 << 40))
        return fp_seterr(FP_EINVAL, "fp_dp_discrete_laplace: scale %llu outside 1..2^40", (unsigned long long)t);
    for (size_t i = 0; i < n; i++)
        out[i] = dlap1(r, t);
    return 0;
}

/* sigma^2 as sn / 2^k, rounded up, with sn <= 2^56 so that every product
 * below fits in 128 bits. */
typedef struct dg_params {
    uint64_t sn, sd, t;
} dg_params;

static int dg_setup(dg_params *p, double sigma2)
{
    if (!(sigma2 >= 0.25) || !(sigma2 <= 0x1p56))
        return fp_seterr(FP_EINVAL, "discrete Gaussian: variance %g outside [1/4, 2^56]", sigma2);
    int e = 0;
    frexp(sigma2, &e); /* sigma2 < 2^e */
    int k = 56 - e;
    if (k < 0)
        k = 0;
    p->sn = (uint64_t)ceil(ldexp(sigma2, k));
    p->sd = (uint64_t)1 << k;
    /* t = floor(sigma) + 1: any t >= 1 is correct, this one is the efficient
     * choice (CKS Sec. 5). */
    p->t = (uint64_t)floor(sqrt(sigma2)) + 1;
    return 0;
}

static int64_t dgauss1(fp_dp_rng *r, const dg_params *p)
{
    /* Accept a Laplace candidate y with probability
     * exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(|y| t sd - sn)^2 / (2 sn sd t^2)). */
    u128 den = (u128)2 * p->sn * p->sd * p->t * p->t;
    for (;;) {
        int64_t y = dlap1(r, p->t);
        uint64_t ay = y < 0 ? (uint64_t)(-y) : (uint64_t)y;
        /* |y| sd t >= 2^64 only for |y| > 128 sigma (sn <= 2^56, sigma^2 >=
         * 1/4), where the acceptance is below exp(-8000). */
        u128 a = (u128)ay * p->sd;
        if (a >> 64)
            continue;
        a *= p->t;
        if (a >> 64)
            continue;
        u128 diff = a >= p->sn ? a - p->sn : p->sn - a;
        if (bern_exp(r, diff * diff, den))
            return y;
    }
}

int fp_dp_discrete_gaussian(int64_t *out, size_t n, double sigma2, fp_dp_rng *r)
{
    if ((!out && n) || !r)
        return fp_seterr(FP_EINVAL, "fp_dp_discrete_gaussian: NULL argument");
    dg_params p;
    int rc = dg_setup(&p, sigma2);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        out[i] = dgauss1(r, &p);
    return 0;
}

int fp_dp_add_ring_noise(uint32_t *q, size_t n, double sigma2, fp_dp_rng *r)
{
    if ((!q && n) || !r)
        return fp_seterr(FP_EINVAL, "fp_dp_add_ring_noise: NULL argument");
    dg_params p;
    int rc = dg_setup(&p, sigma2);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int64_t e = dgauss1(r, &p);
        q[i] += (uint32_t)(uint64_t)e; /* two's complement: adds e modulo 2^32 */
    }
    return 0;
}

double fp_dp_ddg_tau(uint32_t n, double sigma2)
{
    double tau = 0;
    for (uint32_t k = 1; k < n; k++)
        tau += exp(-2.0 * M_PI * M_PI * sigma2 * (double)k / (double)(k + 1));
    return 10.0 * tau;
}
