/* fp dp: the privacy accountant from the command line, to choose a noise
 * multiplier before a federation or to read off what a configuration costs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/dp.h"
#include "fedproxy/error.h"

static const char usage[] =
    "usage: fp dp --q Q --rounds T (--noise-multiplier Z | --target-epsilon E) [--delta D] [--json]\n"
    "  epsilon at delta (default 1e-5) after T rounds of the subsampled Gaussian mechanism\n"
    "  with sampling rate Q (fraction of clients per round) and noise multiplier Z, or the\n"
    "  smallest Z that keeps epsilon <= E. RDP accounting (Mironov, Talwar, Zhang 2019),\n"
    "  converted with Canonne, Kamath, Steinke 2020; see include/fedproxy/dp.h.\n";

static int num(double *out, const char *s, const char *name)
{
    char *end = NULL;
    *out = s ? strtod(s, &end) : NAN;
    if (!s || end == s || *end || !isfinite(*out)) {
        fprintf(stderr, "fp dp: --%s needs a number%s%s\n", name, s ? ", got " : "", s ? s : "");
        return -1;
    }
    return 0;
}

int fp_cmd_dp(int argc, char **argv)
{
    if (fp_cli_flag(argc, argv, "--help") || argc < 2) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *zs = fp_cli_opt(argc, argv, "--noise-multiplier"), *es = fp_cli_opt(argc, argv, "--target-epsilon");
    const char *ds = fp_cli_opt(argc, argv, "--delta");
    double q, T, z = NAN, target = NAN, delta = 1e-5;
    if (num(&q, fp_cli_opt(argc, argv, "--q"), "q") || num(&T, fp_cli_opt(argc, argv, "--rounds"), "rounds") ||
        (ds && num(&delta, ds, "delta")))
        return 2;
    if (!zs == !es) {
        fprintf(stderr, "fp dp: give exactly one of --noise-multiplier and --target-epsilon\n%s", usage);
        return 2;
    }
    if ((zs && num(&z, zs, "noise-multiplier")) || (es && num(&target, es, "target-epsilon")))
        return 2;
    if (!(T >= 1) || T != floor(T) || T > 1e12) {
        fprintf(stderr, "fp dp: --rounds must be a whole number >= 1, got %g\n", T);
        return 2;
    }
    int rc = es ? fp_dp_noise_for_epsilon(&z, q, (uint64_t)T, delta, target) : 0;
    double eps = NAN;
    if (!rc)
        rc = fp_dp_epsilon(&eps, q, z, (uint64_t)T, delta);
    if (rc)
        return fp_cli_fail("dp", rc);
    if (fp_cli_flag(argc, argv, "--json"))
        printf("{\"q\":%.17g,\"rounds\":%.0f,\"noise_multiplier\":%.17g,\"delta\":%.17g,\"epsilon\":%.17g}\n", q, T, z,
               delta, eps);
    else
        printf("q %g, %.0f rounds, noise multiplier %.4g: epsilon %.4f at delta %g\n", q, T, z, eps, delta);
    return 0;
}
