/* Context creation: pick a device, apply the profile overlay, create the logical
 * device with exactly the features the (restricted) profile allows. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vk_internal.h"

static int type_rank(fp_device_type t)
{
    switch (t) {
    case FP_DEVICE_DISCRETE: return 4;
    case FP_DEVICE_INTEGRATED: return 3;
    case FP_DEVICE_VIRTUAL: return 2;
    case FP_DEVICE_CPU: return 1;
    default: return 0;
    }
}

static int vendor_matches(const fp_profile *p, const char *want)
{
    if (!strcasecmp(want, fp_vendor_name(p->vendor)))
        return 1;
    if (!strcasecmp(want, "mali") && p->vendor == FP_VENDOR_ARM)
        return 1;
    if (!strcasecmp(want, "adreno") && p->vendor == FP_VENDOR_QUALCOMM)
        return 1;
    if ((!strcasecmp(want, "lavapipe") || !strcasecmp(want, "llvmpipe")) && p->vendor == FP_VENDOR_MESA_CPU)
        return 1;
    return 0;
}

/* index, name substring (case-insensitive) or vendor; NULL/"" picks the best. */
static int choose_device(uint32_t *out, const fp_profile *profs, uint32_t n, const char *want)
{
    if (want && want[0]) {
        char *end;
        unsigned long idx = strtoul(want, &end, 10);
        if (*end == '\0' && isdigit((unsigned char)want[0])) {
            if (idx >= n)
                return fp_seterr(FP_ENODEV, "device index %lu requested but only %u Vulkan device(s) exist",
                                 idx, n);
            *out = (uint32_t)idx;
            return 0;
        }
        for (uint32_t i = 0; i < n; i++)
            if (vendor_matches(&profs[i], want)) {
                *out = i;
                return 0;
            }
        for (uint32_t i = 0; i < n; i++)
            if (strcasestr(profs[i].name, want)) {
                *out = i;
                return 0;
            }
        char names[1024] = "";
        for (uint32_t i = 0; i < n; i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%u: %s", i ? ", " : "", i, profs[i].name);
        }
        return fp_seterr(FP_ENODEV, "no Vulkan device matches '%s' (devices: %s)", want, names);
    }
    /* best: discrete > integrated > virtual > CPU, then most device-local memory */
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++) {
        int a = type_rank(profs[i].type), b = type_rank(profs[best].type);
        if (a > b || (a == b && profs[i].device_local_bytes > profs[best].device_local_bytes))
            best = i;
    }
    *out = best;
    return 0;
}

static int create_device(fp_ctx *ctx)
{
    const fp_profile *p = &ctx->prof;
    uint32_t api = p->api_version;

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, NULL);
    VkQueueFamilyProperties *qp = calloc(nq ? nq : 1, sizeof *qp);
    if (!qp)
        return fp_seterr(FP_ENOMEM, "out of memory");
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, qp);
    uint32_t comp = UINT32_MAX, xfer = UINT32_MAX;
    for (uint32_t i = 0; i < nq; i++) {
        VkQueueFlags f = qp[i].queueFlags;
        /* prefer a compute family without graphics (async compute), else any compute */
        if ((f & VK_QUEUE_COMPUTE_BIT) && (comp == UINT32_MAX || !(f & VK_QUEUE_GRAPHICS_BIT)))
            if (comp == UINT32_MAX || (qp[comp].queueFlags & VK_QUEUE_GRAPHICS_BIT))
                comp = i;
        if ((f & VK_QUEUE_TRANSFER_BIT) && !(f & (VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT)) && xfer == UINT32_MAX)
            xfer = i;
    }
    free(qp);
    if (comp == UINT32_MAX)
        return fp_seterr(FP_EUNSUPPORTED, "device %s has no compute queue", p->name);
    /* a dedicated transfer queue only pays off for staging (non-UMA) devices */
    if (p->uma)
        xfer = UINT32_MAX;
    ctx->qfam_compute = comp;
    ctx->qfam_transfer = xfer == UINT32_MAX ? comp : xfer;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci[2] = {
        {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = comp, .queueCount = 1,
         .pQueuePriorities = &prio},
        {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = ctx->qfam_transfer,
         .queueCount = 1, .pQueuePriorities = &prio},
    };

    /* enable only what the restricted profile allows */
    const char *exts[10];
    uint32_t nexts = 0;
    VkPhysicalDevice16BitStorageFeatures s16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                                .storageBuffer16BitAccess = p->storage16};
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .shaderFloat16 = p->fp16_arith, .shaderInt8 = p->int8_arith};
    VkPhysicalDevice8BitStorageFeatures s8 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES,
                                              .storageBuffer8BitAccess = p->storage8};
    VkPhysicalDeviceSubgroupSizeControlFeaturesEXT sgc = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT,
        .subgroupSizeControl = p->subgroup_size_control, .computeFullSubgroups = p->subgroup_size_control};
    VkPhysicalDeviceShaderIntegerDotProductFeatures idot = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES,
        .shaderIntegerDotProduct = p->int_dot};
    /* cooperative matrices (profile coopmat: checked in device_props.c, which also
     * found the Vulkan memory model the NV cooperative-matrix SPIR-V is written in) */
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV, .cooperativeMatrix = VK_TRUE};
    VkPhysicalDeviceVulkanMemoryModelFeatures vmm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES, .vulkanMemoryModel = VK_TRUE};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    void **tail = &f2.pNext;
    *tail = &s16; tail = &s16.pNext;
    if (p->fp16_arith || p->int8_arith) {
        *tail = &f16; tail = &f16.pNext;
        if (api < VK_API_VERSION_1_2)
            exts[nexts++] = VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME;
    }
    if (p->storage8) {
        *tail = &s8; tail = &s8.pNext;
        if (api < VK_API_VERSION_1_2)
            exts[nexts++] = VK_KHR_8BIT_STORAGE_EXTENSION_NAME;
    }
    if (p->subgroup_size_control) {
        *tail = &sgc; tail = &sgc.pNext;
        if (api < VK_API_VERSION_1_3)
            exts[nexts++] = VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME;
    }
    if (p->int_dot) {
        *tail = &idot; tail = &idot.pNext;
        if (api < VK_API_VERSION_1_3)
            exts[nexts++] = VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME;
    }
    if (api < VK_API_VERSION_1_2 && p->storage8)
        exts[nexts++] = VK_KHR_STORAGE_BUFFER_STORAGE_CLASS_EXTENSION_NAME;
    if (p->coopmat) {
        *tail = &cmf; tail = &cmf.pNext;
        *tail = &vmm; tail = &vmm.pNext;
        exts[nexts++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
        if (api < VK_API_VERSION_1_2)
            exts[nexts++] = VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME;
    }

    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = ctx->qfam_transfer != comp ? 2 : 1,
        .pQueueCreateInfos = qci,
        .enabledExtensionCount = nexts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateDevice(ctx->phys, &dci, NULL, &ctx->dev);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreateDevice");
    volkLoadDevice(ctx->dev);
    vkGetDeviceQueue(ctx->dev, comp, 0, &ctx->q_compute);
    vkGetDeviceQueue(ctx->dev, ctx->qfam_transfer, 0, &ctx->q_transfer);
    return 0;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (!v || !v[0])
        return dflt;
    return strcmp(v, "0") != 0;
}

int fp_ctx_create(fp_ctx **out, const fp_ctx_opts *opts)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_ctx_create: out is NULL");
    *out = NULL;
    fp_ctx_opts o = {0};
    o.validate = -1;
    if (opts)
        o = *opts;
    int validate = o.validate < 0 ? env_int("FP_VALIDATE", 0) : o.validate;
    const char *want = o.device ? o.device : getenv("FP_DEVICE");
    const char *overlay = o.profile ? o.profile : getenv("FP_PROFILE");

    fp_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return fp_seterr(FP_ENOMEM, "out of memory");
    pthread_mutex_init(&ctx->queue_lock, NULL);
    pthread_mutex_init(&ctx->mem_lock, NULL);
    pthread_mutex_init(&ctx->pipe_lock, NULL);
    ctx->profiling = o.profiling;
    ctx->no_cache = o.no_pipeline_cache;
    const char *tr = getenv("FP_TRACE_MS");
    ctx->trace_ms = tr && *tr ? atoi(tr) : -1; /* unset: off; 0: everything */
    const char *fail = getenv("FP_FAIL_PIPELINE");
    if (fail)
        snprintf(ctx->fail_pattern, sizeof ctx->fail_pattern, "%s", fail);

    int rc = fp_instance_create(&ctx->instance, &ctx->messenger, ctx, validate);
    if (rc)
        goto fail;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(ctx->instance, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        rc = fp_seterr(FP_ENODEV, "no Vulkan device found (a driver is needed: for a CPU device, "
                                  "Debian's mesa-vulkan-drivers provides lavapipe)");
        goto fail;
    }
    VkPhysicalDevice *devs = calloc(n, sizeof *devs);
    fp_profile *profs = calloc(n, sizeof *profs);
    if (!devs || !profs) {
        free(devs);
        free(profs);
        rc = fp_seterr(FP_ENOMEM, "out of memory");
        goto fail;
    }
    vkEnumeratePhysicalDevices(ctx->instance, &n, devs);
    for (uint32_t i = 0; i < n; i++)
        fp_profile_from_physical(&profs[i], devs[i], i);
    uint32_t pick = 0;
    rc = choose_device(&pick, profs, n, want);
    if (!rc) {
        ctx->phys = devs[pick];
        ctx->prof = profs[pick];
    }
    free(devs);
    free(profs);
    if (rc)
        goto fail;
    if (ctx->prof.api_version < VK_API_VERSION_1_1) {
        rc = fp_seterr(FP_EUNSUPPORTED, "device %s supports only Vulkan 1.0; fedproxy needs 1.1", ctx->prof.name);
        goto fail;
    }
    if (overlay && overlay[0]) {
        fp_overlay ov;
        rc = fp_overlay_load(&ov, overlay);
        if (rc)
            goto fail;
        fp_profile_apply_overlay(&ctx->prof, &ov);
    }
    fp_profile_apply_env(&ctx->prof);
    /* the cooperative-matrix kernels compute in f16: without f16 arithmetic (an
     * overlay or FP_NO_FP16 took it away) the device is created without them */
    if (!ctx->prof.fp16_arith)
        ctx->prof.coopmat = 0;
    if (fp_measured_load(&ctx->measured, &ctx->prof) != 0) {
        if (ctx->measured.valid == 0 && fp_errmsg()[0] && !strstr(fp_errmsg(), "cannot open"))
            fp_warn("ignoring the measured profile: %s", fp_errmsg());
        memset(&ctx->measured, 0, sizeof ctx->measured);
        fp_errclear();
    }

    rc = create_device(ctx);
    if (rc)
        goto fail;
    rc = fp_mem_init(ctx);
    if (rc)
        goto fail;
    rc = fp_pipelines_init(ctx);
    if (rc)
        goto fail;
    *out = ctx;
    return 0;
fail:
    fp_ctx_destroy(ctx);
    return rc;
}

void fp_ctx_destroy(fp_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->dev) {
        vkDeviceWaitIdle(ctx->dev);
        fp_pipelines_destroy(ctx);
        fp_transfer_destroy(ctx);
        fp_mem_destroy(ctx);
        vkDestroyDevice(ctx->dev, NULL);
    }
    if (ctx->messenger)
        vkDestroyDebugUtilsMessengerEXT(ctx->instance, ctx->messenger, NULL);
    if (ctx->instance)
        vkDestroyInstance(ctx->instance, NULL);
    pthread_mutex_destroy(&ctx->queue_lock);
    pthread_mutex_destroy(&ctx->mem_lock);
    pthread_mutex_destroy(&ctx->pipe_lock);
    free(ctx);
}

const fp_profile *fp_ctx_profile(const fp_ctx *ctx) { return &ctx->prof; }

const fp_measured *fp_ctx_measured(const fp_ctx *ctx) { return &ctx->measured; }

uint32_t fp_ctx_validation_count(const fp_ctx *ctx)
{
    return __atomic_load_n(&ctx->validation_count, __ATOMIC_RELAXED);
}

int fp_ctx_wait_idle(fp_ctx *ctx)
{
    VkResult r = vkDeviceWaitIdle(ctx->dev);
    return r == VK_SUCCESS ? 0 : fp_vk_fail(ctx, r, "vkDeviceWaitIdle");
}

void fp_ctx_debug_fail_pipelines(fp_ctx *ctx, const char *pattern)
{
    pthread_mutex_lock(&ctx->pipe_lock);
    snprintf(ctx->fail_pattern, sizeof ctx->fail_pattern, "%s", pattern ? pattern : "");
    pthread_mutex_unlock(&ctx->pipe_lock);
}
