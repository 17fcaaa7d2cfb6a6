/* Device profile: every built-in overlay changes what the profile reports (and
 * what the device is created with); JSON overlays; env switches; JSON output. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

int main(void)
{
    fp_profile devs[8];
    uint32_t n = 0;
    CHECK_OK(fp_device_list(devs, 8, &n));
    CHECK(n >= 1);
    const fp_profile *raw = &devs[0];
    CHECK(raw->name[0] && raw->shared_mem > 0 && raw->heap_count > 0 && raw->storage_range > 0);

    /* CPU devices: by type or by lavapipe's vendor, whichever the driver says */
    fp_profile q = *raw;
    q.type = FP_DEVICE_CPU, q.vendor = FP_VENDOR_OTHER;
    CHECK(fp_profile_is_cpu(&q) == 1);
    q.type = FP_DEVICE_INTEGRATED, q.vendor = FP_VENDOR_MESA_CPU;
    CHECK(fp_profile_is_cpu(&q) == 1);
    q.type = FP_DEVICE_DISCRETE, q.vendor = FP_VENDOR_NVIDIA;
    CHECK(fp_profile_is_cpu(&q) == 0);
    q.type = FP_DEVICE_INTEGRATED, q.vendor = FP_VENDOR_ARM;
    CHECK(fp_profile_is_cpu(&q) == 0);

    fp_ctx *base = fp_test_ctx("");
    fp_profile p0 = *fp_ctx_profile(base);
    fp_test_ctx_done(base);
    CHECK(p0.overlay[0] == '\0');

    for (int i = 0; fp_overlay_builtin_names[i]; i++) {
        const char *name = fp_overlay_builtin_names[i];
        fp_ctx *ctx = fp_test_ctx(name);
        const fp_profile *p = fp_ctx_profile(ctx);
        CHECK(!strcmp(p->overlay, name));
        /* never more than the device has */
        CHECK(p->shared_mem <= p0.shared_mem && p->max_wg_invocations <= p0.max_wg_invocations);
        CHECK(p->fp16_arith <= p0.fp16_arith && p->coopmat <= p0.coopmat && p->subgroup_ops <= p0.subgroup_ops);
        /* something differs from the unrestricted profile */
        int differs = p->shared_mem != p0.shared_mem || p->max_wg_invocations != p0.max_wg_invocations ||
                      p->subgroup_min != p0.subgroup_min || p->subgroup_max != p0.subgroup_max ||
                      p->fp16_arith != p0.fp16_arith || p->uma != p0.uma || p->int_dot != p0.int_dot ||
                      p->storage_range != p0.storage_range;
        /* an overlay describing the device's own vendor (nvidia on an NVIDIA GPU)
         * may leave it as it is */
        CHECKF(differs || !strcmp(name, fp_vendor_name(p0.vendor)), "overlay %s changed nothing", name);
        if (!strcmp(name, "minimal")) {
            CHECK(p->shared_mem == 16384 && p->max_wg_invocations == 64);
            CHECK(!p->fp16_arith && !p->subgroup_ops && !p->storage16 && !p->int_dot && !p->coopmat);
            CHECK(p->subgroup_min <= 4 && p->subgroup_max >= 128);
            CHECK(p->max_texel_elements == 65536); /* the Vulkan minimum */
        }
        if (!strcmp(name, "nvidia"))
            CHECK(p->uma == 0 && p->subgroup_max >= 32);
        if (!strcmp(name, "adreno-7xx"))
            CHECK(p->storage_range <= 128u << 20 && p->subgroup_max >= 128);
        if (!strcmp(name, "mali-valhall"))
            CHECK(!p->int_dot && p->max_wg_invocations <= 512);
        fp_test_ctx_done(ctx);
    }

    /* unknown names and bad JSON are clear errors */
    fp_overlay ov;
    CHECK_ERR(fp_overlay_builtin(&ov, "voodoo"), FP_ENOTFOUND);
    CHECK(strstr(fp_errmsg(), "voodoo") != NULL);
    const char *bad[] = {"{", "[]", "{\"shared_mem\": -1}", "{\"fp16_arith\": 1}", "{\"warp_speed\": 9}",
                         "{\"base\": \"nope\"}", "{\"shared_mem\": 1.5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_ERR(fp_overlay_parse_json(&ov, bad[i], strlen(bad[i])), FP_EFORMAT);
    const char *good = "{\"name\":\"tiny\",\"base\":\"minimal\",\"shared_mem\":8192,\"uma\":false}";
    CHECK_OK(fp_overlay_parse_json(&ov, good, strlen(good)));
    CHECK(ov.shared_mem == 8192 && ov.max_wg_invocations == 64 && ov.uma == 0 && !strcmp(ov.name, "tiny"));
    const char *tex = "{\"max_texel_elements\":1000,\"texel_buffers\":false}";
    CHECK_OK(fp_overlay_parse_json(&ov, tex, strlen(tex)));
    CHECK(ov.max_texel_elements == 1000 && ov.texel_buffers == 0);
    const char *badtex = "{\"texel_buffers\":0}";
    CHECK_ERR(fp_overlay_parse_json(&ov, badtex, strlen(badtex)), FP_EFORMAT);

    /* a JSON file through the context options */
    char path[4300];
    snprintf(path, sizeof path, "%s/tiny.json", fp_test_tmpdir("profile"));
    CHECK_OK(fp_write_file_atomic(path, good, strlen(good), 0644));
    fp_ctx *ctx = fp_test_ctx(path);
    CHECK(fp_ctx_profile(ctx)->shared_mem == 8192 && !strcmp(fp_ctx_profile(ctx)->overlay, "tiny"));
    CHECK(fp_ctx_profile(ctx)->uma == 0);
    fp_test_ctx_done(ctx);
    /* the texel keys reach the profile: a cap, and the switch off */
    snprintf(path, sizeof path, "%s/notex.json", fp_test_tmpdir("profile"));
    CHECK_OK(fp_write_file_atomic(path, tex, strlen(tex), 0644));
    ctx = fp_test_ctx(path);
    CHECK(fp_ctx_profile(ctx)->max_texel_elements == 1000 && !fp_ctx_profile(ctx)->texel_buffers);
    char *pj = NULL;
    CHECK_OK(fp_profile_to_json(&pj, fp_ctx_profile(ctx)));
    CHECK(pj && strstr(pj, "\"max_texel_elements\":1000") && strstr(pj, "\"texel_buffers\":false"));
    free(pj);
    fp_test_ctx_done(ctx);

    /* environment switches */
    setenv("FP_NO_FP16", "1", 1);
    setenv("FP_NO_SUBGROUP", "1", 1);
    ctx = fp_test_ctx("");
    CHECK(!fp_ctx_profile(ctx)->fp16_arith && !fp_ctx_profile(ctx)->subgroup_ops);
    fp_test_ctx_done(ctx);
    unsetenv("FP_NO_FP16");
    unsetenv("FP_NO_SUBGROUP");

    /* device choice */
    fp_ctx_opts o = {0};
    o.validate = 1;
    o.device = "no-such-gpu";
    CHECK_ERR(fp_ctx_create(&ctx, &o), FP_ENODEV);
    CHECK(strstr(fp_errmsg(), "no-such-gpu") != NULL);
    o.device = "7";
    CHECK_ERR(fp_ctx_create(&ctx, &o), FP_ENODEV);
    o.device = "0";
    CHECK_OK(fp_ctx_create(&ctx, &o));
    fp_test_ctx_done(ctx);
    o.device = fp_vendor_name(p0.vendor); /* by vendor: "cpu" for lavapipe */
    CHECK_OK(fp_ctx_create(&ctx, &o));
    CHECK(!strcmp(fp_ctx_profile(ctx)->name, p0.name));
    fp_test_ctx_done(ctx);

    /* JSON form */
    char *js = NULL;
    CHECK_OK(fp_profile_to_json(&js, raw));
    cJSON *j = cJSON_Parse(js);
    CHECK(j && cJSON_IsString(cJSON_GetObjectItem(j, "name")) &&
          !strcmp(cJSON_GetObjectItem(j, "name")->valuestring, raw->name));
    CHECK(cJSON_IsArray(cJSON_GetObjectItem(j, "heaps")));
    CHECK(cJSON_IsObject(cJSON_GetObjectItem(j, "limits")));
    cJSON_Delete(j);
    free(js);
    return fp_test_report("test_vk_profile");
}
