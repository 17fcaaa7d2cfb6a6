/* Restriction overlays (built-in and JSON), environment switches, names, and the
 * JSON form of a profile. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "vk_internal.h"

#define KEEP (-1)
#define MiB (1024ull * 1024ull)

static void overlay_init(fp_overlay *o, const char *name)
{
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->subgroup_ops = o->fp16_arith = o->storage16 = o->int8_arith = o->storage8 = KEEP;
    o->int_dot = o->coopmat = o->uma = o->texel_buffers = KEEP;
}

const char *const fp_overlay_builtin_names[] = {"minimal", "mali-valhall", "adreno-7xx", "intel-xe",
                                                "amd-rdna", "nvidia", NULL};

int fp_overlay_builtin(fp_overlay *o, const char *name)
{
    overlay_init(o, name ? name : "");
    if (!name)
        return fp_seterr(FP_EINVAL, "no overlay name");
    if (!strcmp(name, "minimal")) {
        /* the floor every shader must run on: 16 KiB shared, 64 invocations,
         * any subgroup size from 4 to 128, no fp16, no subgroup ops */
        o->subgroup_min = 4; o->subgroup_max = 128;
        o->subgroup_ops = o->fp16_arith = o->storage16 = o->int8_arith = o->storage8 = 0;
        o->int_dot = o->coopmat = 0;
        o->shared_mem = 16384; o->max_wg_invocations = 64; o->max_push_constants = 128;
        o->storage_range = 128 * MiB;
        o->max_texel_elements = 65536; /* the Vulkan minimum for maxTexelBufferElements */
    } else if (!strcmp(name, "mali-valhall")) {
        o->subgroup_min = 16; o->subgroup_max = 16;
        o->int_dot = 0; o->coopmat = 0;
        o->shared_mem = 32768; o->max_wg_invocations = 512;
    } else if (!strcmp(name, "adreno-7xx")) {
        o->subgroup_min = 64; o->subgroup_max = 128;
        o->coopmat = 0;
        o->shared_mem = 32768; o->max_wg_invocations = 1024;
        o->storage_range = 128 * MiB;
    } else if (!strcmp(name, "intel-xe")) {
        o->subgroup_min = 8; o->subgroup_max = 32;
        o->coopmat = 0;
        o->shared_mem = 65536; o->max_wg_invocations = 1024;
    } else if (!strcmp(name, "amd-rdna")) {
        o->subgroup_min = 32; o->subgroup_max = 64;
        o->shared_mem = 65536; o->max_wg_invocations = 1024;
        o->max_alloc = 2048 * MiB;
    } else if (!strcmp(name, "nvidia")) {
        o->subgroup_min = 32; o->subgroup_max = 32;
        o->shared_mem = 49152; o->max_wg_invocations = 1024;
        o->uma = 0; /* discrete: staging copies */
    } else {
        return fp_seterr(FP_ENOTFOUND,
                         "unknown profile overlay '%s' (built-in: minimal, mali-valhall, adreno-7xx, "
                         "intel-xe, amd-rdna, nvidia; or a path to a JSON file)", name);
    }
    return 0;
}

int fp_overlay_parse_json(fp_overlay *o, const char *json, size_t len)
{
    overlay_init(o, "custom");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return fp_seterr(FP_EFORMAT, "profile overlay: invalid JSON near byte %ld",
                         (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fp_seterr(FP_EFORMAT, "profile overlay: top level must be a JSON object");
    }
    /* "base": a built-in overlay to start from */
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "base");
    if (base) {
        if (!cJSON_IsString(base) || fp_overlay_builtin(o, base->valuestring) != 0) {
            cJSON_Delete(root);
            return fp_seterr(FP_EFORMAT, "profile overlay: \"base\" must name a built-in overlay");
        }
    }
    static const struct { const char *key; size_t off; int is_u64; } nums[] = {
        {"subgroup_min", offsetof(fp_overlay, subgroup_min), 0},
        {"subgroup_max", offsetof(fp_overlay, subgroup_max), 0},
        {"shared_mem", offsetof(fp_overlay, shared_mem), 0},
        {"max_wg_invocations", offsetof(fp_overlay, max_wg_invocations), 0},
        {"max_push_constants", offsetof(fp_overlay, max_push_constants), 0},
        {"storage_range", offsetof(fp_overlay, storage_range), 1},
        {"max_alloc", offsetof(fp_overlay, max_alloc), 1},
        {"device_local_bytes", offsetof(fp_overlay, device_local_bytes), 1},
        {"max_texel_elements", offsetof(fp_overlay, max_texel_elements), 1},
    };
    static const struct { const char *key; size_t off; } flags[] = {
        {"subgroup_ops", offsetof(fp_overlay, subgroup_ops)}, {"fp16_arith", offsetof(fp_overlay, fp16_arith)},
        {"storage16", offsetof(fp_overlay, storage16)},       {"int8_arith", offsetof(fp_overlay, int8_arith)},
        {"storage8", offsetof(fp_overlay, storage8)},         {"int_dot", offsetof(fp_overlay, int_dot)},
        {"coopmat", offsetof(fp_overlay, coopmat)},           {"uma", offsetof(fp_overlay, uma)},
        {"texel_buffers", offsetof(fp_overlay, texel_buffers)},
    };
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        const char *k = it->string;
        int done = 0;
        if (!strcmp(k, "base"))
            continue;
        if (!strcmp(k, "name")) {
            if (!cJSON_IsString(it)) { rc = fp_seterr(FP_EFORMAT, "profile overlay: \"name\" must be a string"); break; }
            snprintf(o->name, sizeof o->name, "%s", it->valuestring);
            continue;
        }
        for (size_t i = 0; i < sizeof nums / sizeof nums[0] && !done; i++) {
            if (strcmp(k, nums[i].key))
                continue;
            done = 1;
            double v = it->valuedouble;
            if (!cJSON_IsNumber(it) || v < 0 || v != (double)(uint64_t)v || (!nums[i].is_u64 && v > 4294967295.0)) {
                rc = fp_seterr(FP_EFORMAT, "profile overlay: \"%s\" must be a non-negative integer", k);
                break;
            }
            if (nums[i].is_u64)
                *(uint64_t *)((char *)o + nums[i].off) = (uint64_t)v;
            else
                *(uint32_t *)((char *)o + nums[i].off) = (uint32_t)v;
        }
        for (size_t i = 0; i < sizeof flags / sizeof flags[0] && !done; i++) {
            if (strcmp(k, flags[i].key))
                continue;
            done = 1;
            if (!cJSON_IsBool(it)) {
                rc = fp_seterr(FP_EFORMAT, "profile overlay: \"%s\" must be true or false", k);
                break;
            }
            *(int *)((char *)o + flags[i].off) = cJSON_IsTrue(it) ? 1 : 0;
        }
        if (rc)
            break;
        if (!done) {
            rc = fp_seterr(FP_EFORMAT, "profile overlay: unknown key \"%s\"", k);
            break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

int fp_overlay_load(fp_overlay *o, const char *name_or_path)
{
    if (!name_or_path || !name_or_path[0])
        return fp_seterr(FP_EINVAL, "empty profile overlay name");
    if (!strchr(name_or_path, '/') && !strstr(name_or_path, ".json"))
        return fp_overlay_builtin(o, name_or_path);
    void *data;
    size_t len;
    int rc = fp_read_file(&data, &len, name_or_path, 1 << 20);
    if (rc)
        return fp_adderr(rc, "profile overlay");
    rc = fp_overlay_parse_json(o, data, len);
    free(data);
    if (rc)
        return fp_adderr(rc, "%s", name_or_path);
    return 0;
}

static uint32_t cap32(uint32_t v, uint32_t cap) { return cap && cap < v ? cap : v; }
static uint64_t cap64(uint64_t v, uint64_t cap) { return cap && cap < v ? cap : v; }
static int capf(int v, int ov) { return ov == KEEP ? v : (v && ov); }

void fp_profile_apply_overlay(fp_profile *p, const fp_overlay *o)
{
    if (o->subgroup_min && o->subgroup_min < p->subgroup_min)
        p->subgroup_min = o->subgroup_min;
    if (o->subgroup_max && o->subgroup_max > p->subgroup_max)
        p->subgroup_max = o->subgroup_max;
    p->subgroup_ops = capf(p->subgroup_ops, o->subgroup_ops);
    p->fp16_arith = capf(p->fp16_arith, o->fp16_arith);
    p->storage16 = capf(p->storage16, o->storage16);
    p->int8_arith = capf(p->int8_arith, o->int8_arith);
    p->storage8 = capf(p->storage8, o->storage8);
    p->int_dot = capf(p->int_dot, o->int_dot);
    p->coopmat = capf(p->coopmat, o->coopmat);
    p->uma = capf(p->uma, o->uma);
    p->texel_buffers = capf(p->texel_buffers, o->texel_buffers);
    p->shared_mem = cap32(p->shared_mem, o->shared_mem);
    p->max_wg_invocations = cap32(p->max_wg_invocations, o->max_wg_invocations);
    for (int i = 0; i < 3; i++)
        p->max_wg_size[i] = cap32(p->max_wg_size[i], p->max_wg_invocations);
    p->max_push_constants = cap32(p->max_push_constants, o->max_push_constants);
    p->storage_range = cap64(p->storage_range, o->storage_range);
    p->max_alloc = cap64(p->max_alloc, o->max_alloc);
    p->device_local_bytes = cap64(p->device_local_bytes, o->device_local_bytes);
    p->max_texel_elements = cap64(p->max_texel_elements, o->max_texel_elements);
    snprintf(p->overlay, sizeof p->overlay, "%s", o->name);
}

static int env_on(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

void fp_profile_apply_env(fp_profile *p)
{
    if (env_on("FP_NO_FP16"))
        p->fp16_arith = 0;
    if (env_on("FP_NO_16BIT_STORAGE"))
        p->storage16 = 0;
    if (env_on("FP_NO_SUBGROUP"))
        p->subgroup_ops = 0;
    if (env_on("FP_NO_INTDOT"))
        p->int_dot = 0;
    if (env_on("FP_NO_COOPMAT"))
        p->coopmat = 0;
    if (env_on("FP_NO_UMA"))
        p->uma = 0;
    if (env_on("FP_NO_TEXEL"))
        p->texel_buffers = 0;
}

const char *fp_vendor_name(fp_vendor v)
{
    static const char *names[] = {"other", "amd", "intel", "arm", "qualcomm", "nvidia", "apple", "cpu"};
    return (unsigned)v < sizeof names / sizeof names[0] ? names[v] : "other";
}

const char *fp_device_type_name(fp_device_type t)
{
    static const char *names[] = {"other", "integrated", "discrete", "virtual", "cpu"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "other";
}

int fp_profile_is_cpu(const fp_profile *p) { return p->type == FP_DEVICE_CPU || p->vendor == FP_VENDOR_MESA_CPU; }

static void uuid_hex(char out[33], const uint8_t u[16])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", u[i]);
}

int fp_profile_to_json(char **out, const fp_profile *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return fp_seterr(FP_ENOMEM, "out of memory building profile JSON");
    char uuid[33], pc[33], ver[32];
    uuid_hex(uuid, p->device_uuid);
    uuid_hex(pc, p->pipeline_cache_uuid);
    snprintf(ver, sizeof ver, "%u.%u.%u", VK_API_VERSION_MAJOR(p->api_version),
             VK_API_VERSION_MINOR(p->api_version), VK_API_VERSION_PATCH(p->api_version));
    cJSON_AddNumberToObject(o, "index", p->index);
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "vendor", fp_vendor_name(p->vendor));
    cJSON_AddNumberToObject(o, "vendor_id", p->vendor_id);
    cJSON_AddNumberToObject(o, "device_id", p->device_id);
    cJSON_AddStringToObject(o, "type", fp_device_type_name(p->type));
    cJSON_AddStringToObject(o, "driver", p->driver_name);
    cJSON_AddStringToObject(o, "driver_info", p->driver_info);
    cJSON_AddNumberToObject(o, "driver_version", p->driver_version);
    cJSON_AddStringToObject(o, "api_version", ver);
    cJSON_AddStringToObject(o, "device_uuid", uuid);
    cJSON_AddStringToObject(o, "pipeline_cache_uuid", pc);
    cJSON_AddStringToObject(o, "overlay", p->overlay);
    cJSON *lim = cJSON_AddObjectToObject(o, "limits");
    cJSON_AddNumberToObject(lim, "subgroup_size", p->subgroup_size);
    cJSON_AddNumberToObject(lim, "subgroup_min", p->subgroup_min);
    cJSON_AddNumberToObject(lim, "subgroup_max", p->subgroup_max);
    cJSON_AddNumberToObject(lim, "shared_mem", p->shared_mem);
    cJSON_AddNumberToObject(lim, "max_wg_invocations", p->max_wg_invocations);
    cJSON *wg = cJSON_AddArrayToObject(lim, "max_wg_size");
    cJSON *wc = cJSON_AddArrayToObject(lim, "max_wg_count");
    for (int i = 0; i < 3; i++) {
        cJSON_AddItemToArray(wg, cJSON_CreateNumber(p->max_wg_size[i]));
        cJSON_AddItemToArray(wc, cJSON_CreateNumber(p->max_wg_count[i]));
    }
    cJSON_AddNumberToObject(lim, "max_push_constants", p->max_push_constants);
    cJSON_AddNumberToObject(lim, "storage_range", (double)p->storage_range);
    cJSON_AddNumberToObject(lim, "max_alloc", (double)p->max_alloc);
    cJSON_AddNumberToObject(lim, "min_storage_align", p->min_storage_align);
    cJSON_AddNumberToObject(lim, "max_texel_elements", (double)p->max_texel_elements);
    cJSON_AddNumberToObject(lim, "min_texel_align", p->min_texel_align);
    cJSON_AddNumberToObject(lim, "timestamp_period_ns", p->timestamp_period);
    cJSON *f = cJSON_AddObjectToObject(o, "features");
    cJSON_AddBoolToObject(f, "subgroup_ops", p->subgroup_ops);
    cJSON_AddBoolToObject(f, "subgroup_size_control", p->subgroup_size_control);
    cJSON_AddBoolToObject(f, "fp16_arith", p->fp16_arith);
    cJSON_AddBoolToObject(f, "storage16", p->storage16);
    cJSON_AddBoolToObject(f, "int8_arith", p->int8_arith);
    cJSON_AddBoolToObject(f, "storage8", p->storage8);
    cJSON_AddBoolToObject(f, "int_dot", p->int_dot);
    cJSON_AddBoolToObject(f, "coopmat", p->coopmat);
    cJSON_AddBoolToObject(f, "uma", p->uma);
    cJSON_AddBoolToObject(f, "texel_buffers", p->texel_buffers);
    cJSON_AddBoolToObject(f, "transfer_queue", p->transfer_queue);
    cJSON_AddBoolToObject(f, "timestamps", p->timestamps);
    cJSON *hs = cJSON_AddArrayToObject(o, "heaps");
    for (uint32_t i = 0; i < p->heap_count; i++) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddNumberToObject(h, "size", (double)p->heaps[i].size);
        cJSON_AddBoolToObject(h, "device_local", p->heaps[i].device_local);
        cJSON_AddBoolToObject(h, "host_visible", p->heaps[i].host_visible);
        cJSON_AddItemToArray(hs, h);
    }
    cJSON_AddNumberToObject(o, "device_local_bytes", (double)p->device_local_bytes);
    cJSON_AddNumberToObject(o, "quirks", p->quirks);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return fp_seterr(FP_ENOMEM, "out of memory printing profile JSON");
    *out = s;
    return 0;
}
