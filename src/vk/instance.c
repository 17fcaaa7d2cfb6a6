/* Vulkan loader, instance and the validation-message channel. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int load_state; /* 0 untried, 1 ok, -1 failed */

int fp_vk_load(void)
{
    pthread_mutex_lock(&load_lock);
    /* FP_VULKAN_LOADER names another loader library (a vendor's, or a missing one in tests) */
    const char *path = getenv("FP_VULKAN_LOADER");
    if (load_state == 0) {
        if (path && path[0]) {
            void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            void *gipa = lib ? dlsym(lib, "vkGetInstanceProcAddr") : NULL;
            if (gipa) {
                PFN_vkGetInstanceProcAddr fn;
                memcpy(&fn, &gipa, sizeof fn);
                volkInitializeCustom(fn);
                load_state = 1;
            } else {
                load_state = -1;
            }
        } else {
            load_state = volkInitialize() == VK_SUCCESS ? 1 : -1;
        }
    }
    int st = load_state;
    pthread_mutex_unlock(&load_lock);
    if (st < 0)
        return fp_seterr(FP_ENOLOADER,
                         "no Vulkan loader found (%s); install the Vulkan loader and a driver (Debian: "
                         "libvulkan1 mesa-vulkan-drivers)",
                         path && path[0] ? path : "libvulkan.so.1");
    return 0;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                 VkDebugUtilsMessageTypeFlagsEXT type,
                                                 const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                 void *user)
{
    fp_ctx *ctx = user;
    (void)type;
    if (sev < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
        return VK_FALSE;
    if (ctx)
        __atomic_add_fetch(&ctx->validation_count, 1, __ATOMIC_RELAXED);
    fprintf(stderr, "fedproxy: vulkan validation %s: %s\n",
            sev >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error" : "warning",
            data && data->pMessage ? data->pMessage : "(no message)");
    return VK_FALSE;
}

static int has_layer(const char *name)
{
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, NULL);
    VkLayerProperties *props = calloc(n ? n : 1, sizeof *props);
    if (!props)
        return 0;
    vkEnumerateInstanceLayerProperties(&n, props);
    int found = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(props[i].layerName, name))
            found = 1;
    free(props);
    return found;
}

static int has_instance_ext(const char *name)
{
    uint32_t n = 0;
    vkEnumerateInstanceExtensionProperties(NULL, &n, NULL);
    VkExtensionProperties *props = calloc(n ? n : 1, sizeof *props);
    if (!props)
        return 0;
    vkEnumerateInstanceExtensionProperties(NULL, &n, props);
    int found = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(props[i].extensionName, name))
            found = 1;
    free(props);
    return found;
}

int fp_instance_create(VkInstance *out, VkDebugUtilsMessengerEXT *messenger, fp_ctx *ctx, int validate)
{
    int rc = fp_vk_load();
    if (rc)
        return rc;
    uint32_t loader_version = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion)
        vkEnumerateInstanceVersion(&loader_version);
    if (loader_version < VK_API_VERSION_1_1)
        return fp_seterr(FP_EUNSUPPORTED, "the Vulkan loader is version 1.0; fedproxy needs 1.1 or newer");

    const char *layers[1];
    const char *exts[2];
    uint32_t nlayers = 0, nexts = 0;
    if (validate) {
        if (!has_layer("VK_LAYER_KHRONOS_validation"))
            return fp_seterr(FP_EUNSUPPORTED,
                             "validation requested (FP_VALIDATE) but VK_LAYER_KHRONOS_validation is not "
                             "installed (Debian: vulkan-validationlayers)");
        layers[nlayers++] = "VK_LAYER_KHRONOS_validation";
        exts[nexts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    }
    int portability = has_instance_ext("VK_KHR_portability_enumeration");
    if (portability)
        exts[nexts++] = "VK_KHR_portability_enumeration";

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "fedproxy",
        .applicationVersion = 1,
        .pEngineName = "fedproxy",
        .engineVersion = 1,
        .apiVersion = loader_version >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : loader_version,
    };
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_message,
        .pUserData = ctx,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = validate ? &dbg : NULL,
        .flags = portability ? 0x00000001 /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */ : 0,
        .pApplicationInfo = &app,
        .enabledLayerCount = nlayers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = nexts,
        .ppEnabledExtensionNames = exts,
    };
    VkInstance inst;
    VkResult r = vkCreateInstance(&ci, NULL, &inst);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return fp_seterr(FP_ENODEV, "no Vulkan driver found: the loader has no usable ICD (for a CPU device, "
                                    "Debian's mesa-vulkan-drivers provides lavapipe; check VK_ICD_FILENAMES)");
    if (r != VK_SUCCESS)
        return fp_vk_fail(NULL, r, "vkCreateInstance");
    volkLoadInstanceOnly(inst);
    *messenger = VK_NULL_HANDLE;
    if (validate) {
        r = vkCreateDebugUtilsMessengerEXT(inst, &dbg, NULL, messenger);
        if (r != VK_SUCCESS) {
            vkDestroyInstance(inst, NULL);
            return fp_vk_fail(NULL, r, "vkCreateDebugUtilsMessengerEXT");
        }
    }
    *out = inst;
    return 0;
}

int fp_device_list(fp_profile *out, uint32_t max, uint32_t *count)
{
    VkInstance inst;
    VkDebugUtilsMessengerEXT msg;
    int rc = fp_instance_create(&inst, &msg, NULL, 0);
    if (rc)
        return rc;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        vkDestroyInstance(inst, NULL);
        *count = 0;
        return fp_seterr(FP_ENODEV, "no Vulkan device found (a driver is needed: for a CPU device, "
                                    "Debian's mesa-vulkan-drivers provides lavapipe)");
    }
    VkPhysicalDevice *devs = calloc(n, sizeof *devs);
    if (!devs) {
        vkDestroyInstance(inst, NULL);
        return fp_seterr(FP_ENOMEM, "out of memory listing devices");
    }
    vkEnumeratePhysicalDevices(inst, &n, devs);
    for (uint32_t i = 0; i < n && i < max; i++)
        fp_profile_from_physical(&out[i], devs[i], i);
    free(devs);
    vkDestroyInstance(inst, NULL);
    *count = n;
    return 0;
}
