/* fp_bench_attention (quick) on the native profile: it runs, and its JSON has
 * positive forward/backward tokens/s and GFLOP/s at both sequence lengths. */
#include <cJSON.h>

#include "attn_common.h"

int main(void)
{
    fp_ctx *ctx = fp_test_ctx("");
    printf("variant %s\n", fp_attention_variant(ctx));
    char *js = NULL;
    CHECK_OK(fp_bench_attention(ctx, 1, &js));
    CHECK(js != NULL);
    if (js) {
        printf("%s\n", js);
        cJSON *root = cJSON_Parse(js);
        CHECK(root != NULL);
        cJSON *res = cJSON_GetObjectItem(root, "results");
        CHECK(cJSON_IsArray(res) && cJSON_GetArraySize(res) == 2);
        static const char *keys[] = {"fwd_tokens_per_s", "fwd_gflops", "bwd_tokens_per_s", "bwd_gflops",
                                     "decode_tokens_per_s"};
        for (int i = 0; i < cJSON_GetArraySize(res); i++)
            for (int k = 0; k < 5; k++) {
                cJSON *v = cJSON_GetObjectItem(cJSON_GetArrayItem(res, i), keys[k]);
                CHECKF(cJSON_IsNumber(v) && v->valuedouble > 0, "%s", keys[k]);
            }
        cJSON_Delete(root);
        free(js);
    }
    CHECK_ERR(fp_bench_attention(ctx, 1, NULL), FP_EINVAL);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_attn_bench");
}
