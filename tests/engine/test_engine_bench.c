/* fp_bench_train in quick mode: the JSON is well formed and its numbers are
 * consistent (positive rates, a FLOP formula, the plan accounts for the peak
 * device memory to within 5% + 1 MiB, the loss is finite). Prints the JSON. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fedproxy/runtime.h"
#include "fedproxy/train.h"
#include "fp_test.h"

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void check_mode(const cJSON *j, const char *mode)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, mode);
    CHECKF(cJSON_IsObject(o), "no '%s' object", mode);
    if (!o)
        return;
    CHECKF(num(o, "tokens_per_s") > 0 && num(o, "gflops") > 0 && num(o, "ratio_to_matmul") > 0, "%s: rates", mode);
    double peak = num(o, "peak_device_bytes"), plan = num(o, "planned_bytes");
    CHECKF(peak >= plan && peak <= plan * 1.05 + (1 << 20), "%s: peak %.0f bytes vs planned %.0f", mode, peak, plan);
    CHECKF(isfinite(num(o, "loss_last")) && num(o, "loss_last") > 0, "%s: loss", mode);
    printf("  %s: %.1f tokens/s, %.2f GFLOP/s (%.0f%% of matmul), peak %.1f MiB of %.1f MiB planned\n", mode,
           num(o, "tokens_per_s"), num(o, "gflops"), 100 * num(o, "ratio_to_matmul"), peak / 1048576.0,
           plan / 1048576.0);
}

int main(void)
{
    fp_ctx *ctx = fp_test_ctx(NULL);
    char *js = NULL;
    CHECK_OK(fp_bench_train(ctx, 1, &js));
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    CHECK(j != NULL);
    if (j) {
        printf("%s\n", js);
        const cJSON *mm = cJSON_GetObjectItemCaseSensitive(j, "matmul");
        CHECK(num(mm, "gflops") > 0);
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "flops_formula")));
        check_mode(j, "lora");
        check_mode(j, "full");
    }
    cJSON_Delete(j);
    free(js);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_engine_bench");
}
