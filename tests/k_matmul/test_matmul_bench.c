/* Hand-run (slow): fp_matmul_autotune then fp_bench_matmul, JSON on stdout.
 * FP_MM_QUICK=1 for the quick versions. Checks that the results are sane. */
#include "mm_common.h"

int main(void)
{
    const char *q = getenv("FP_MM_QUICK");
    int quick = q && q[0] == '1';
    fp_ctx_opts o = {0};
    o.profile = "";
    o.validate = 0; /* timing: no validation layer */
    fp_ctx *ctx = NULL;
    if (fp_ctx_create(&ctx, &o)) {
        fprintf(stderr, "no context: %s\n", fp_errmsg());
        return 2;
    }
    fp_measured m;
    memset(&m, 0, sizeof m);
    CHECK_OK(fp_matmul_autotune(ctx, &m, quick));
    printf("autotune: matmul_gflops %.2f\n", m.matmul_gflops);
    for (unsigned i = 0; i < m.ntune; i++)
        printf("  %s = %s\n", m.tune[i].key, m.tune[i].value);
    CHECK(m.matmul_gflops > 0);
    CHECK(fp_measured_tune_get(&m, "matmul.f32.large") != NULL);
    char *json = NULL;
    CHECK_OK(fp_bench_matmul(ctx, quick, &json));
    if (json)
        printf("%s\n", json);
    CHECK(json && strstr(json, "best_gflops"));
    free(json);
    fp_ctx_destroy(ctx);
    return fp_test_report("test_matmul_bench");
}
