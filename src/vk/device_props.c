/* Reads a physical device's properties and features into an fp_profile. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "vk_internal.h"

static int has_device_ext(VkPhysicalDevice phys, const char *name)
{
    uint32_t n = 0;
    vkEnumerateDeviceExtensionProperties(phys, NULL, &n, NULL);
    VkExtensionProperties *props = calloc(n ? n : 1, sizeof *props);
    if (!props)
        return 0;
    vkEnumerateDeviceExtensionProperties(phys, NULL, &n, props);
    int found = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(props[i].extensionName, name))
            found = 1;
    free(props);
    return found;
}

static fp_vendor vendor_of(uint32_t vendor_id, VkPhysicalDeviceType type)
{
    switch (vendor_id) {
    case 0x1002: return FP_VENDOR_AMD;
    case 0x8086: return FP_VENDOR_INTEL;
    case 0x13B5: return FP_VENDOR_ARM;
    case 0x5143: return FP_VENDOR_QUALCOMM;
    case 0x10DE: return FP_VENDOR_NVIDIA;
    case 0x106B: return FP_VENDOR_APPLE;
    case 0x10005: return FP_VENDOR_MESA_CPU;
    default: return type == VK_PHYSICAL_DEVICE_TYPE_CPU ? FP_VENDOR_MESA_CPU : FP_VENDOR_OTHER;
    }
}

static fp_device_type type_of(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return FP_DEVICE_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return FP_DEVICE_DISCRETE;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return FP_DEVICE_VIRTUAL;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return FP_DEVICE_CPU;
    default: return FP_DEVICE_OTHER;
    }
}

/* 1 when fedproxy's cooperative-matrix kernels (shaders/matmul/mm_cm.comp, written
 * with GL_NV_cooperative_matrix) can run: VK_NV_cooperative_matrix with its
 * cooperativeMatrix feature for compute shaders, a subgroup-scope 16x16x16
 * f16 x f16 + f32 -> f32 shape, shaderFloat16, and the Vulkan memory model
 * (glslang emits NV cooperative-matrix code under it). VK_KHR_cooperative_matrix
 * alone (AMD, Intel) does not count: its GLSL needs a newer glslang than the build
 * uses, so no kernel for it exists. */
static int nv_coopmat_usable(VkPhysicalDevice phys, uint32_t api, int fp16)
{
    if (!fp16 || !has_device_ext(phys, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME))
        return 0;
    int have_vmm = api >= VK_API_VERSION_1_2 || has_device_ext(phys, VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME);
    if (!have_vmm || !vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
        return 0;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceVulkanMemoryModelFeatures vmm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES, .pNext = &cmf};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &vmm};
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    VkPhysicalDeviceCooperativeMatrixPropertiesNV cmp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &cmp};
    vkGetPhysicalDeviceProperties2(phys, &p2);
    if (!cmf.cooperativeMatrix || !vmm.vulkanMemoryModel ||
        !(cmp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
        return 0;
    uint32_t n = 0;
    if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(phys, &n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkCooperativeMatrixPropertiesNV *cp = calloc(n, sizeof *cp);
    if (!cp)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        cp[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    int found = 0;
    if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(phys, &n, cp) >= 0)
        for (uint32_t i = 0; i < n; i++)
            if (cp[i].MSize == 16 && cp[i].NSize == 16 && cp[i].KSize == 16 &&
                cp[i].AType == VK_COMPONENT_TYPE_FLOAT16_NV && cp[i].BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                cp[i].CType == VK_COMPONENT_TYPE_FLOAT32_NV && cp[i].DType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                cp[i].scope == VK_SCOPE_SUBGROUP_NV)
                found = 1;
    free(cp);
    return found;
}

void fp_profile_from_physical(fp_profile *p, VkPhysicalDevice phys, uint32_t index)
{
    memset(p, 0, sizeof *p);
    p->index = index;

    VkPhysicalDeviceProperties base;
    vkGetPhysicalDeviceProperties(phys, &base);
    uint32_t api = base.apiVersion;

    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceSubgroupSizeControlPropertiesEXT sgc = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES_EXT};
    VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceIDProperties idp = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 props2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    void **tail = &props2.pNext;
    *tail = &sg; tail = &sg.pNext;
    *tail = &idp; tail = &idp.pNext;
    *tail = &m3; tail = &m3.pNext;
    int have_sgc = api >= VK_API_VERSION_1_3 || has_device_ext(phys, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
    int have_drv = api >= VK_API_VERSION_1_2 || has_device_ext(phys, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
    if (have_sgc) { *tail = &sgc; tail = &sgc.pNext; }
    if (have_drv) { *tail = &drv; tail = &drv.pNext; }
    vkGetPhysicalDeviceProperties2(phys, &props2);

    snprintf(p->name, sizeof p->name, "%s", base.deviceName);
    if (have_drv) {
        snprintf(p->driver_name, sizeof p->driver_name, "%s", drv.driverName);
        snprintf(p->driver_info, sizeof p->driver_info, "%s", drv.driverInfo);
        p->driver_id = drv.driverID;
    }
    p->vendor_id = base.vendorID;
    p->device_id = base.deviceID;
    p->api_version = api;
    p->driver_version = base.driverVersion;
    p->vendor = vendor_of(base.vendorID, base.deviceType);
    p->type = type_of(base.deviceType);
    memcpy(p->device_uuid, idp.deviceUUID, 16);
    memcpy(p->pipeline_cache_uuid, base.pipelineCacheUUID, 16);

    const VkPhysicalDeviceLimits *L = &base.limits;
    p->subgroup_size = sg.subgroupSize;
    p->subgroup_min = have_sgc && sgc.minSubgroupSize ? sgc.minSubgroupSize : sg.subgroupSize;
    p->subgroup_max = have_sgc && sgc.maxSubgroupSize ? sgc.maxSubgroupSize : sg.subgroupSize;
    VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT |
                                  VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
    p->subgroup_ops = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) && (sg.supportedOperations & need) == need;
    p->shared_mem = L->maxComputeSharedMemorySize;
    p->max_wg_invocations = L->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        p->max_wg_size[i] = L->maxComputeWorkGroupSize[i];
        p->max_wg_count[i] = L->maxComputeWorkGroupCount[i];
    }
    p->max_push_constants = L->maxPushConstantsSize;
    p->storage_range = L->maxStorageBufferRange;
    p->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1ull << 30);
    p->min_storage_align = (uint32_t)L->minStorageBufferOffsetAlignment;
    p->max_texel_elements = L->maxTexelBufferElements;
    p->min_texel_align = (uint32_t)L->minTexelBufferOffsetAlignment;
    /* all six are required of every Vulkan device; checked, not assumed */
    static const VkFormat texel_formats[] = {VK_FORMAT_R32_SFLOAT, VK_FORMAT_R32_UINT,
                                             VK_FORMAT_R32_SINT,   VK_FORMAT_R32G32B32A32_SFLOAT,
                                             VK_FORMAT_R32G32B32A32_UINT, VK_FORMAT_R32G32B32A32_SINT};
    p->texel_buffers = p->min_texel_align > 0;
    for (size_t i = 0; i < sizeof texel_formats / sizeof texel_formats[0]; i++) {
        VkFormatProperties fp;
        vkGetPhysicalDeviceFormatProperties(phys, texel_formats[i], &fp);
        if (!(fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT))
            p->texel_buffers = 0;
    }
    p->timestamp_period = L->timestampPeriod;

    /* features */
    VkPhysicalDevice16BitStorageFeatures s16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDevice8BitStorageFeatures s8 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES};
    VkPhysicalDeviceSubgroupSizeControlFeaturesEXT sgcf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT};
    VkPhysicalDeviceShaderIntegerDotProductFeatures idot = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    tail = &f2.pNext;
    *tail = &s16; tail = &s16.pNext;
    int have_f16 = api >= VK_API_VERSION_1_2 || has_device_ext(phys, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    int have_s8 = api >= VK_API_VERSION_1_2 || has_device_ext(phys, VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
    int have_idot = api >= VK_API_VERSION_1_3 || has_device_ext(phys, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
    if (have_f16) { *tail = &f16; tail = &f16.pNext; }
    if (have_s8) { *tail = &s8; tail = &s8.pNext; }
    if (have_sgc) { *tail = &sgcf; tail = &sgcf.pNext; }
    if (have_idot) { *tail = &idot; tail = &idot.pNext; }
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    p->storage16 = s16.storageBuffer16BitAccess;
    p->fp16_arith = have_f16 && f16.shaderFloat16;
    p->int8_arith = have_f16 && f16.shaderInt8;
    p->storage8 = have_s8 && s8.storageBuffer8BitAccess;
    p->subgroup_size_control = have_sgc && sgcf.subgroupSizeControl && sgcf.computeFullSubgroups;
    p->int_dot = have_idot && idot.shaderIntegerDotProduct;
    p->coopmat = nv_coopmat_usable(phys, api, p->fp16_arith);

    /* memory */
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(phys, &mp);
    p->heap_count = mp.memoryHeapCount < FP_PROFILE_MAX_HEAPS ? mp.memoryHeapCount : FP_PROFILE_MAX_HEAPS;
    int dl_host_visible = 0;
    for (uint32_t h = 0; h < p->heap_count; h++) {
        p->heaps[h].size = mp.memoryHeaps[h].size;
        p->heaps[h].device_local = (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0;
        if (p->heaps[h].device_local)
            p->device_local_bytes += mp.memoryHeaps[h].size;
    }
    for (uint32_t t = 0; t < mp.memoryTypeCount; t++) {
        VkMemoryPropertyFlags f = mp.memoryTypes[t].propertyFlags;
        uint32_t h = mp.memoryTypes[t].heapIndex;
        if ((f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) && h < p->heap_count)
            p->heaps[h].host_visible = 1;
        if ((f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) &&
            (f & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT))
            dl_host_visible = 1;
    }
    /* UMA: integrated or CPU devices whose device-local memory the host can map.
     * (A discrete GPU's small host-visible BAR window does not make it UMA.) */
    p->uma = dl_host_visible && (p->type == FP_DEVICE_INTEGRATED || p->type == FP_DEVICE_CPU);

    /* queues */
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, NULL);
    VkQueueFamilyProperties *qp = calloc(nq ? nq : 1, sizeof *qp);
    if (qp) {
        vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, qp);
        for (uint32_t i = 0; i < nq; i++) {
            VkQueueFlags f = qp[i].queueFlags;
            if ((f & VK_QUEUE_COMPUTE_BIT) && qp[i].timestampValidBits > 0)
                p->timestamps = 1;
            if ((f & VK_QUEUE_TRANSFER_BIT) && !(f & VK_QUEUE_COMPUTE_BIT) && !(f & VK_QUEUE_GRAPHICS_BIT))
                p->transfer_queue = 1;
        }
        free(qp);
    }
    fp_quirks_apply(p);
}
