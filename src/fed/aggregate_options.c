/* server.json "aggregator_options": {"ties_keep":0.2,"ties_lambda":1,
 * "dare_p":0.5,"trim_frac":0.1,"reject_k":0,"clip_norm":0,"clusters":0,
 * "cluster_threshold":0.5}; strict (unknown keys are FP_EFORMAT), ranges
 * checked by fp_agg_check's rules. */
#include <cjson/cJSON.h>

#include "agg_internal.h"
#include "fedproxy/json_check.h"

int fp_agg_opts_parse(fp_agg_opts *out, const void *json_object)
{
    static const fp_json_field f[] = {
        {"ties_keep", FP_JSON_NUMBER, 0}, {"ties_lambda", FP_JSON_NUMBER, 0}, {"dare_p", FP_JSON_NUMBER, 0},
        {"trim_frac", FP_JSON_NUMBER, 0}, {"reject_k", FP_JSON_NUMBER, 0},    {"clip_norm", FP_JSON_NUMBER, 0},
        {"clusters", FP_JSON_UINT, 0},    {"cluster_threshold", FP_JSON_NUMBER, 0}};
    const cJSON *o = json_object;
    fp_agg_opts_default(out);
    if (!o)
        return 0;
    int rc = fp_json_check(o, f, sizeof f / sizeof f[0], "aggregator_options");
    if (rc)
        return rc;
    struct { const char *k; float *v; } nums[] = {
        {"ties_keep", &out->ties_keep}, {"ties_lambda", &out->ties_lambda}, {"dare_p", &out->dare_p},
        {"trim_frac", &out->trim_frac}, {"reject_k", &out->reject_k},       {"clip_norm", &out->clip_norm},
        {"cluster_threshold", &out->cluster_threshold}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, nums[i].k);
        if (e)
            *nums[i].v = (float)e->valuedouble;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "clusters");
    if (e) {
        if (e->valuedouble > 10000)
            return fp_seterr(FP_EFORMAT, "aggregator_options: \"clusters\" %g above 10000", e->valuedouble);
        out->clusters = (uint32_t)e->valuedouble;
    }
    fp_agg_ctx c = {.dim = 1, .opts = out, .clip = 1};
    rc = fp_agg_check(&fp_agg_fedavg_def, &c, 0);
    return rc ? fp_seterr(FP_EFORMAT, "aggregator_options: %s", fp_errmsg()) : 0;
}
