/* Runs fp_bench_train_ops (quick unless FP_BENCH_FULL is set) and checks that it
 * returns a JSON object with positive rates for every entry; prints it. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "fedproxy/ops_train.h"
#include "fp_test.h"

int main(void)
{
    const char *full = getenv("FP_BENCH_FULL");
    int is_full = full && *full && *full != '0';
    fp_ctx *ctx;
    if (is_full) { /* numbers to report: no validation layer in the way */
        fp_ctx_opts o = {0};
        o.profile = getenv("FP_PROFILE") ? getenv("FP_PROFILE") : "";
        if (fp_ctx_create(&ctx, &o)) {
            fprintf(stderr, "no context: %s\n", fp_errmsg());
            return 2;
        }
    } else {
        ctx = fp_test_ctx(getenv("FP_PROFILE") ? getenv("FP_PROFILE") : "");
    }
    char *json = NULL;
    CHECK_OK(fp_bench_train_ops(ctx, !is_full, &json));
    if (json) {
        printf("%s\n", json);
        cJSON *root = cJSON_Parse(json);
        CHECK(root != NULL);
        cJSON *res = cJSON_GetObjectItem(root, "results"), *e;
        CHECK(cJSON_GetArraySize(res) >= 12);
        cJSON_ArrayForEach(e, res)
        {
            cJSON *ms = cJSON_GetObjectItem(e, "ms");
            CHECK(cJSON_IsNumber(ms) && ms->valuedouble > 0);
            printf("  %-22s %-28s %9.3f ms", cJSON_GetObjectItem(e, "op")->valuestring,
                   cJSON_GetObjectItem(e, "shape")->valuestring, ms->valuedouble);
            cJSON *g = cJSON_GetObjectItem(e, "gbps"), *f = cJSON_GetObjectItem(e, "gflops"),
                  *tk = cJSON_GetObjectItem(e, "tokens_per_s");
            if (g)
                printf("  %8.2f GB/s", g->valuedouble);
            if (f)
                printf("  %8.2f GFLOP/s", f->valuedouble);
            if (tk)
                printf("  %10.0f tokens/s", tk->valuedouble);
            printf("  [%s]\n", cJSON_GetObjectItem(e, "variant")->valuestring);
        }
        cJSON_Delete(root);
    }
    free(json);
    if (is_full)
        fp_ctx_destroy(ctx);
    else
        fp_test_ctx_done(ctx);
    return fp_test_report("test_train_bench");
}
