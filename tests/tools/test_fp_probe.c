/* fp-probe as a user runs it: --json prints valid JSON with the device, driver,
 * limits, heaps and measured figures, caches them for the library, stays
 * validation-clean; without a loader or a driver it says so and exits non-zero. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/measured.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

int main(void)
{
    const char *tmp = fp_test_tmpdir("probe");
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "FP_VALIDATE=1 %s/tools/fp-probe --quick --json 2>%s/stderr.txt", FP_BINARY_DIR, tmp);
    int st = fp_test_run(cmd, &out);
    CHECKF(st == 0, "fp-probe --json exited %d", st);
    cJSON *j = cJSON_Parse(out);
    CHECKF(j != NULL, "not JSON: %.200s", out);
    const cJSON *prof = cJSON_GetObjectItem(j, "profile");
    const cJSON *meas = cJSON_GetObjectItem(j, "measured");
    const cJSON *devs = cJSON_GetObjectItem(j, "devices");
    CHECK(cJSON_IsArray(devs) && cJSON_GetArraySize(devs) >= 1);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(prof, "name")) && cJSON_GetObjectItem(prof, "name")->valuestring[0]);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(prof, "driver")));
    const cJSON *lim = cJSON_GetObjectItem(prof, "limits");
    CHECK(num(lim, "shared_mem") > 0 && num(lim, "storage_range") > 0 && num(lim, "subgroup_size") > 0);
    const cJSON *heaps = cJSON_GetObjectItem(prof, "heaps");
    CHECK(cJSON_IsArray(heaps) && cJSON_GetArraySize(heaps) >= 1 && num(cJSON_GetArrayItem(heaps, 0), "size") > 0);
    CHECK(num(meas, "copy_gbps") > 0 && num(meas, "h2d_gbps") > 0 && num(meas, "d2h_gbps") > 0);
    CHECK(num(meas, "dispatch_us") > 0 && num(meas, "submit_us") > 0 && num(meas, "host_memcpy_gbps") > 0);
    const cJSON *rec = cJSON_GetObjectItem(j, "recommendation");
    CHECK(num(rec, "lora_rank") >= 4 && num(rec, "batch") >= 1 && num(rec, "seq") >= 32);
    CHECK(num(rec, "planned_bytes") <= num(rec, "budget_bytes"));

    /* the measurements are cached where the library finds them */
    fp_ctx *ctx = fp_test_ctx("");
    const fp_measured *m = fp_ctx_measured(ctx);
    CHECK(m->valid && m->copy_gbps == num(meas, "copy_gbps"));
    fp_test_ctx_done(ctx);
    cJSON_Delete(j);
    free(out);

    /* the child ran with validation on: the layer must not have said anything */
    char path[4300], *err = NULL;
    size_t elen = 0;
    snprintf(path, sizeof path, "%s/stderr.txt", tmp);
    CHECK_OK(fp_read_file((void **)&err, &elen, path, 1 << 20));
    CHECKF(err && !strstr(err, "validation"), "fp-probe stderr: %s", err ? err : "");
    free(err);

    /* plain listing */
    snprintf(cmd, sizeof cmd, "%s/tools/fp-probe --list", FP_BINARY_DIR);
    st = fp_test_run(cmd, &out);
    CHECK(st == 0 && strstr(out, "shared memory") && strstr(out, "heaps"));
    free(out);

    /* no loader, no driver: a plain message and a non-zero exit */
    snprintf(cmd, sizeof cmd, "FP_VULKAN_LOADER=/nonexistent/libvulkan.so.1 %s/tools/fp-probe --quick 2>&1",
             FP_BINARY_DIR);
    st = fp_test_run(cmd, &out);
    CHECKF(st != 0 && strstr(out, "no Vulkan loader"), "exit %d: %s", st, out);
    free(out);
    snprintf(cmd, sizeof cmd, "VK_ICD_FILENAMES=/nonexistent.json VK_DRIVER_FILES=/nonexistent.json %s/tools/fp-probe "
             "--quick 2>&1", FP_BINARY_DIR);
    st = fp_test_run(cmd, &out);
    CHECKF(st != 0 && strstr(out, "no Vulkan d"), "exit %d: %s", st, out);
    free(out);
    return fp_test_report("test_fp_probe");
}
