/* Hand-run benchmark (label slow): prints fp_bench_aggregate's JSON and checks
 * that it is well formed. FP_BENCH_QUICK=1 for the quick variant. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

int main(void)
{
    fp_ctx_opts o = {0};
    o.validate = 0; /* timing: no validation layer */
    fp_ctx *ctx = NULL;
    CHECK_OK(fp_ctx_create(&ctx, &o));
    if (!ctx)
        return fp_test_report("bench_agg");
    const char *q = getenv("FP_BENCH_QUICK");
    char *json = NULL;
    CHECK_OK(fp_bench_aggregate(ctx, q && *q == '1', &json));
    if (json) {
        cJSON *root = cJSON_Parse(json);
        CHECK(root != NULL);
        cJSON *k = root ? cJSON_GetObjectItem(root, "kernels") : NULL;
        CHECK(cJSON_IsArray(k) && cJSON_GetArraySize(k) > 0);
        cJSON *c = root ? cJSON_GetObjectItem(root, "copy_gbps") : NULL;
        CHECK(cJSON_IsNumber(c) && c->valuedouble > 0);
        if (root) {
            char *pretty = cJSON_Print(root);
            printf("%s\n", pretty);
            free(pretty);
            cJSON *it;
            printf("%-14s %4s %-22s %9s %8s %6s\n", "kernel", "K", "variant", "ms", "GB/s", "/copy");
            cJSON_ArrayForEach(it, k)
            {
                printf("%-14s %4d %-22s %9.3f %8.2f %6.2f\n", cJSON_GetObjectItem(it, "kernel")->valuestring,
                       (int)cJSON_GetObjectItem(it, "K")->valuedouble,
                       cJSON_GetObjectItem(it, "variant")->valuestring,
                       cJSON_GetObjectItem(it, "ms")->valuedouble, cJSON_GetObjectItem(it, "gbps")->valuedouble,
                       cJSON_GetObjectItem(it, "ratio_to_copy")->valuedouble);
            }
            printf("copy: %.2f GB/s\n", c->valuedouble);
        }
        cJSON_Delete(root);
    }
    free(json);
    fp_ctx_destroy(ctx);
    return fp_test_report("bench_agg");
}
