/* The RDP accountant. References are computed here, independently of the
 * implementation's closed forms: A_alpha = integral of
 * N(x; 0, z^2) (1 - q + q exp((2x - 1)/(2 z^2)))^alpha dx by composite Simpson
 * in double precision over a range that holds all the mass. Plus: q = 1 is
 * the Gaussian mechanism's alpha/(2 z^2); a figure published with the moments
 * accountant; properties of the (epsilon, delta) conversion; composition;
 * the state file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/dp.h"
#include "fedproxy/error.h"
#include "fp_test.h"

static double log_mix(double x, double q, double z)
{
    /* log(1 - q + q e^{(2x-1)/(2z^2)}) without overflow */
    double a = log1p(-q), b = log(q) + (2 * x - 1) / (2 * z * z);
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

/* log A_alpha by Simpson's rule on [lo, hi] with the integrand scaled by its maximum. */
static double log_a_numeric(double q, double z, double alpha)
{
    double lo = -40 * z - 5, hi = alpha + 40 * z + 5, h = z / 400;
    size_t n = (size_t)ceil((hi - lo) / h);
    if (n % 2)
        n++;
    h = (hi - lo) / (double)n;
    double *f = malloc((n + 1) * sizeof *f), fm = -INFINITY;
    for (size_t i = 0; i <= n; i++) {
        double x = lo + h * (double)i;
        f[i] = -x * x / (2 * z * z) - log(z * sqrt(2 * M_PI)) + alpha * log_mix(x, q, z);
        if (f[i] > fm)
            fm = f[i];
    }
    double s = 0;
    for (size_t i = 0; i <= n; i++)
        s += (i == 0 || i == n ? 1 : i % 2 ? 4 : 2) * exp(f[i] - fm);
    free(f);
    return fm + log(s * h / 3);
}

static void test_against_integration(void)
{
    const double qs[] = {0.001, 0.01, 0.1, 0.5};
    const double zs[] = {0.7, 1.1, 4.0};
    const double as[] = {1.25, 1.5, 1.75, 2, 3, 8, 17, 32, 64, 128};
    double worst = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t k = 0; k < 10; k++) {
                double q = qs[i], z = zs[j], a = as[k], r = 0;
                CHECK_OK(fp_dp_rdp_sampled_gaussian(&r, q, z, a));
                double ref = log_a_numeric(q, z, a) / (a - 1);
                /* relative 1e-6, absolute 1e-10 for the tiny values at small q */
                double err = fabs(r - ref), tol = 1e-6 * fabs(ref) + 1e-10;
                if (err / tol > worst)
                    worst = err / tol;
                CHECKF(err <= tol, "q=%g z=%g alpha=%g: rdp %.12g, integral %.12g", q, z, a, r, ref);
            }
    printf("accountant vs integration: worst error / tolerance %.3g\n", worst);
}

static void test_no_subsampling(void)
{
    const double zs[] = {0.5, 1.0, 1.3, 7.0};
    const double *o;
    size_t n = fp_dp_orders(&o);
    for (size_t j = 0; j < 4; j++)
        for (size_t i = 0; i < n; i++) {
            double r = 0;
            CHECK_OK(fp_dp_rdp_sampled_gaussian(&r, 1.0, zs[j], o[i]));
            CHECKF(fabs(r - o[i] / (2 * zs[j] * zs[j])) <= 1e-12 * r, "q=1 z=%g alpha=%g: %g", zs[j], o[i], r);
        }
    /* The integer-order sum at q -> 1 meets the closed form too. */
    double r = 0;
    CHECK_OK(fp_dp_rdp_sampled_gaussian(&r, 1 - 1e-12, 1.0, 10));
    CHECK(fabs(r - 5.0) < 1e-6);
    /* Gaussian mechanism, one release, z = 1, delta = 1e-5: the optimum over
     * alpha of alpha/2 + log(1/delta)/(alpha-1) is sqrt(2 log(1/delta)) + 1/2
     * (classic conversion, continuous alpha); the grid gets within 1%. */
    double eps = 0, ord = 0, rd[256];
    for (size_t i = 0; i < n; i++)
        rd[i] = o[i] / 2;
    CHECK_OK(fp_dp_rdp_to_epsilon_classic(&eps, &ord, o, rd, n, 1e-5));
    double best = sqrt(2 * log(1e5)) + 0.5;
    CHECKF(eps >= best - 1e-9 && eps < best * 1.01, "Gaussian z=1 classic eps %g, analytic optimum %g", eps, best);
}

static void test_published(void)
{
    /* Bu, Dong, Long, Su, "Deep Learning with Gaussian Differential Privacy",
     * Harvard Data Science Review 2020, Fig. 4: NoisySGD on MNIST with
     * q = 256/60000, sigma = 1.3, 20 epochs: the moments accountant gives
     * (1.34, 1e-5)-DP; sigma = 0.7, 70 epochs: (8.68, 1e-5). That accountant
     * (TF Privacy at the time) used the classic conversion; we compare ours
     * with the same conversion within 1.5% (grids of orders and step rounding differ). */
    const double *o;
    size_t n = fp_dp_orders(&o);
    struct { double z, epochs, eps; } cases[] = {{1.3, 20, 1.34}, {0.7, 70, 8.68}};
    for (size_t c = 0; c < 2; c++) {
        double q = 256.0 / 60000.0, steps = ceil(cases[c].epochs / q), rd[256], eps = 0, tight = 0;
        for (size_t i = 0; i < n; i++) {
            CHECK_OK(fp_dp_rdp_sampled_gaussian(&rd[i], q, cases[c].z, o[i]));
            rd[i] *= steps;
        }
        CHECK_OK(fp_dp_rdp_to_epsilon_classic(&eps, NULL, o, rd, n, 1e-5));
        CHECK_OK(fp_dp_rdp_to_epsilon(&tight, NULL, o, rd, n, 1e-5));
        printf("published: z=%g %g epochs: classic eps %.3f (paper %.2f), CKS eps %.3f\n", cases[c].z,
               cases[c].epochs, eps, cases[c].eps, tight);
        CHECKF(fabs(eps / cases[c].eps - 1) < 0.015, "z=%g: eps %.3f, published %.2f", cases[c].z, eps, cases[c].eps);
        CHECK(tight < eps);
    }
}

static void test_conversion(void)
{
    /* CKS/Balle is never looser than the classic conversion, both decrease in
     * delta, and epsilon never drops below 0. */
    const double *o;
    size_t n = fp_dp_orders(&o);
    double rd[256];
    for (size_t i = 0; i < n; i++)
        CHECK_OK(fp_dp_rdp_sampled_gaussian(&rd[i], 0.05, 1.0, o[i]));
    double prev = INFINITY;
    for (double d = 1e-3; d > 1e-12; d /= 10) {
        double e1 = 0, e2 = 0;
        CHECK_OK(fp_dp_rdp_to_epsilon(&e1, NULL, o, rd, n, d));
        CHECK_OK(fp_dp_rdp_to_epsilon_classic(&e2, NULL, o, rd, n, d));
        CHECK(e1 <= e2 && e1 >= 0);
        CHECK(e1 >= prev || prev == INFINITY ? 1 : 0);
        prev = e1;
    }
    /* One order by hand: alpha = 2, rdp = 1, delta = 1e-5:
     * classic 1 + ln(1e5) = 12.5129; CKS 1 + ln(1/2) - (ln(1e-5) + ln 2) = 11.8198. */
    double a2 = 2, r1 = 1, e = 0;
    CHECK_OK(fp_dp_rdp_to_epsilon_classic(&e, NULL, &a2, &r1, 1, 1e-5));
    CHECK(fabs(e - (1 + log(1e5))) < 1e-12);
    CHECK_OK(fp_dp_rdp_to_epsilon(&e, NULL, &a2, &r1, 1, 1e-5));
    CHECK(fabs(e - (1 + log(0.5) - log(1e-5) - log(2.0))) < 1e-12);
    CHECK_ERR(fp_dp_rdp_to_epsilon(&e, NULL, &a2, &r1, 1, 0), FP_EINVAL);
    CHECK_ERR(fp_dp_rdp_to_epsilon(&e, NULL, &a2, &r1, 1, 1), FP_EINVAL);
    double r = 0;
    CHECK_ERR(fp_dp_rdp_sampled_gaussian(&r, 0.1, 0, 2), FP_EINVAL);
    CHECK_ERR(fp_dp_rdp_sampled_gaussian(&r, 1.5, 1, 2), FP_EINVAL);
    CHECK_ERR(fp_dp_rdp_sampled_gaussian(&r, 0.1, 1, 1), FP_EINVAL);
}

static void test_accountant(void)
{
    fp_dp_accountant *a = NULL, *b = NULL;
    CHECK_ERR(fp_dp_accountant_create(&a, 0), FP_EINVAL);
    CHECK_OK(fp_dp_accountant_create(&a, 1e-5));
    double e0 = -1;
    CHECK_OK(fp_dp_accountant_epsilon(a, &e0, NULL));
    CHECK(e0 == 0);
    /* 100 single steps = one step of 100 = fp_dp_epsilon */
    for (int i = 0; i < 100; i++)
        CHECK_OK(fp_dp_accountant_step(a, 0.1, 1.2, 1));
    double e1 = 0, e2 = 0, e3 = 0, ord = 0;
    CHECK_OK(fp_dp_accountant_epsilon(a, &e1, &ord));
    CHECK_OK(fp_dp_accountant_create(&b, 1e-5));
    CHECK_OK(fp_dp_accountant_step(b, 0.1, 1.2, 100));
    CHECK_OK(fp_dp_accountant_epsilon(b, &e2, NULL));
    CHECK_OK(fp_dp_epsilon(&e3, 0.1, 1.2, 100, 1e-5));
    CHECK(fabs(e1 - e2) < 1e-9 * e1 && fabs(e2 - e3) < 1e-12 * e2);
    CHECK(fp_dp_accountant_steps(a) == 100);
    /* more rounds, more epsilon; more noise, less */
    double e4 = 0;
    CHECK_OK(fp_dp_accountant_step(b, 0.1, 1.2, 1));
    CHECK_OK(fp_dp_accountant_epsilon(b, &e4, NULL));
    CHECK(e4 > e2);
    double lo = 0, hi = 0;
    CHECK_OK(fp_dp_epsilon(&lo, 0.1, 2.0, 100, 1e-5));
    CHECK_OK(fp_dp_epsilon(&hi, 0.1, 0.8, 100, 1e-5));
    CHECK(lo < e3 && e3 < hi);
    /* state file round trip; a different delta is refused */
    const char *dir = fp_test_tmpdir("dp_acc");
    char path[512];
    snprintf(path, sizeof path, "%s/acc.json", dir);
    CHECK_OK(fp_dp_accountant_save(a, path));
    fp_dp_accountant_destroy(b);
    CHECK_OK(fp_dp_accountant_create(&b, 1e-5));
    CHECK_OK(fp_dp_accountant_load(b, path));
    CHECK_OK(fp_dp_accountant_epsilon(b, &e2, NULL));
    CHECK(e2 == e1 && fp_dp_accountant_steps(b) == 100);
    fp_dp_accountant_destroy(b);
    CHECK_OK(fp_dp_accountant_create(&b, 1e-6));
    CHECK_ERR(fp_dp_accountant_load(b, path), FP_EFORMAT);
    FILE *f = fopen(path, "w");
    fputs("{\"delta\":1e-6,\"steps\":1,\"orders\":[2],\"rdp\":[1]}", f);
    fclose(f);
    CHECK_ERR(fp_dp_accountant_load(b, path), FP_EFORMAT);
    CHECK_ERR(fp_dp_accountant_step(a, 0, 1, 1), FP_EINVAL);
    CHECK_ERR(fp_dp_accountant_step(a, 0.5, -1, 1), FP_EINVAL);
    fp_dp_accountant_destroy(a);
    fp_dp_accountant_destroy(b);
}

static void test_noise_for_epsilon(void)
{
    const struct { double q, eps; uint64_t T; } c[] = {{0.1, 1.0, 100}, {1.0, 8.0, 10}, {0.01, 3.0, 5000}};
    for (size_t i = 0; i < 3; i++) {
        double z = 0, e = 0, e2 = 0;
        CHECK_OK(fp_dp_noise_for_epsilon(&z, c[i].q, c[i].T, 1e-5, c[i].eps));
        CHECK_OK(fp_dp_epsilon(&e, c[i].q, z, c[i].T, 1e-5));
        CHECK_OK(fp_dp_epsilon(&e2, c[i].q, z / 1.002, c[i].T, 1e-5));
        CHECKF(e <= c[i].eps && e2 > c[i].eps, "q=%g T=%llu: z %.4f gives eps %.4f (target %g), z/1.002 %.4f", c[i].q,
               (unsigned long long)c[i].T, z, e, c[i].eps, e2);
    }
    double z = 0;
    CHECK_ERR(fp_dp_noise_for_epsilon(&z, 0.1, 100, 1e-5, 0), FP_EINVAL);
    CHECK_ERR(fp_dp_noise_for_epsilon(&z, 1.0, 1000000, 1e-5, 1e-6), FP_EINVAL);
}

static void test_config(void)
{
    fp_dp_config c;
    const char *ok = "{\"clip\": 0.5, \"noise_multiplier\": 1.1, \"delta\": 1e-6, \"mode\": \"central\"}";
    CHECK_OK(fp_dp_config_parse(&c, ok, strlen(ok)));
    CHECK(c.clip == 0.5 && c.noise_multiplier == 1.1 && c.delta == 1e-6 && c.mode == FP_DP_CENTRAL);
    const char *def = "{\"clip\": 1, \"noise_multiplier\": 2}";
    CHECK_OK(fp_dp_config_parse(&c, def, strlen(def)));
    CHECK(c.delta == 1e-5 && c.mode == FP_DP_DISTRIBUTED);
    const char *bad[] = {"{\"clip\": 0, \"noise_multiplier\": 1}", "{\"clip\": 1}",
                         "{\"clip\": 1, \"noise_multiplier\": 1, \"delta\": 2}",
                         "{\"clip\": 1, \"noise_multiplier\": 1, \"mode\": \"local\"}",
                         "{\"clip\": 1, \"noise_multiplier\": 1, \"sigma\": 1}", "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_ERR(fp_dp_config_parse(&c, bad[i], strlen(bad[i])), FP_EFORMAT);
}

int main(void)
{
    test_against_integration();
    test_no_subsampling();
    test_published();
    test_conversion();
    test_accountant();
    test_config();
    test_noise_for_epsilon();
    /* Figures for the report: epsilon at delta = 1e-5. */
    const struct { double q, z; uint64_t T; } f[] = {
        {0.01, 1.1, 10000}, {0.1, 1.0, 100}, {0.1, 2.0, 100}, {0.5, 1.0, 50}, {1.0, 5.0, 20}, {0.2, 0.8, 200}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        double e = 0;
        CHECK_OK(fp_dp_epsilon(&e, f[i].q, f[i].z, f[i].T, 1e-5));
        printf("eps(q=%g, z=%g, T=%llu, delta=1e-5) = %.4f\n", f[i].q, f[i].z, (unsigned long long)f[i].T, e);
    }
    return fp_test_report("dp_accountant");
}
