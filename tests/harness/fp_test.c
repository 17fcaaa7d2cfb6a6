#include "fp_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fedproxy/fileio.h"

int fp_test_passed, fp_test_failed;

#if defined(__GNUC__)
/* Line-buffered stdout before main: ctest reads a test's output through a
 * pipe (fully buffered by default), so a test killed by its TIMEOUT used to
 * show nothing of what it had done. Every test links this file. */
__attribute__((constructor)) static void fp_test_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
#endif

int fp_test_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, fp_test_passed, fp_test_failed);
    fflush(stdout);
    return fp_test_failed == 0 && fp_test_passed > 0 ? 0 : 1;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void fp_test_seed(uint64_t seed) { rng_state = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint32_t fp_test_u32(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

float fp_test_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((fp_test_u32() >> 8) * (1.0 / 16777216.0));
}

float fp_test_normal(void)
{
    double u1 = ((fp_test_u32() >> 8) + 1) * (1.0 / 16777217.0);
    double u2 = (fp_test_u32() >> 8) * (1.0 / 16777216.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

double fp_test_nmse(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (den == 0)
        return num == 0 ? 0 : INFINITY;
    return num / den;
}

double fp_test_maxerr(const float *a, const float *ref, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= m))
            m = d; /* also catches NaN */
    }
    return m;
}

const char *fp_test_tmpdir(const char *tag)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/test-tmp/%s-%ld", FP_BINARY_DIR, tag, (long)getpid());
    if (fp_mkdirs(buf, 0700) != 0) {
        fprintf(stderr, "cannot create %s: %s\n", buf, fp_errmsg());
        exit(2);
    }
    return buf;
}

#include "fedproxy/measured.h"
#include "fedproxy/runtime.h"

fp_ctx *fp_test_ctx(const char *profile)
{
    fp_ctx_opts o = {0};
    o.validate = 1;
    o.profile = profile;
    fp_ctx *ctx = NULL;
    int rc = fp_ctx_create(&ctx, &o);
    if (rc) {
        fprintf(stderr, "cannot create a Vulkan context (profile %s): %s\n", profile ? profile : "(env)",
                fp_errmsg());
        exit(2);
    }
    const fp_profile *p = fp_ctx_profile(ctx);
    printf("device: %s, overlay '%s', uma %d, fp16 %d, subgroup ops %d, shared %u\n", p->name, p->overlay, p->uma,
           p->fp16_arith, p->subgroup_ops, p->shared_mem);
    return ctx;
}

void fp_test_ctx_done(fp_ctx *ctx)
{
    uint32_t n = fp_ctx_validation_count(ctx);
    CHECKF(n == 0, "%u validation message(s)", n);
    fp_ctx_destroy(ctx);
}

void fp_test_store_tune(struct fp_ctx *ctx, const char *const *kv, int n)
{
    char path[512];
    CHECK_OK(fp_measured_path(path, sizeof path, fp_ctx_profile(ctx)));
    unlink(path);
    if (n < 1)
        return;
    fp_measured m;
    memset(&m, 0, sizeof m);
    m.valid = 1;
    for (int i = 0; i < n; i++)
        CHECK_OK(fp_measured_tune_set(&m, kv[2 * i], kv[2 * i + 1]));
    CHECK_OK(fp_measured_save(&m, fp_ctx_profile(ctx)));
}

int fp_test_run(const char *cmd, char **out)
{
    *out = NULL;
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, len = 0, got;
    char *buf = p ? malloc(cap) : NULL;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 1024) {
            char *n = realloc(buf, cap *= 2);
            if (!n)
                free(buf);
            buf = n;
        }
    }
    int st = p ? pclose(p) : -1;
    if (!buf) { /* never NULL for the caller: an empty output, and -1 */
        *out = calloc(1, 1);
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
