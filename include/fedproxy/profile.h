/* fedproxy: the device profile — everything kernels choose their variant by.
 *
 * fp_profile is filled from a physical device's properties, then capped by a
 * restriction overlay (FP_PROFILE: a built-in name or a JSON file) and by the
 * FP_NO_* environment switches, so that kernel selection on one device behaves
 * as it would on another. Kernels must never use a feature the profile lacks.
 * Plain data; no ownership; thread-safe to read.
 */
#ifndef FEDPROXY_PROFILE_H
#define FEDPROXY_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_PROFILE_MAX_HEAPS 16
#define FP_PROFILE_NAME_MAX 256

typedef enum fp_vendor {
    FP_VENDOR_OTHER = 0,
    FP_VENDOR_AMD,
    FP_VENDOR_INTEL,
    FP_VENDOR_ARM,
    FP_VENDOR_QUALCOMM,
    FP_VENDOR_NVIDIA,
    FP_VENDOR_APPLE,
    FP_VENDOR_MESA_CPU /* lavapipe / llvmpipe */
} fp_vendor;

typedef enum fp_device_type {
    FP_DEVICE_OTHER = 0,
    FP_DEVICE_INTEGRATED,
    FP_DEVICE_DISCRETE,
    FP_DEVICE_VIRTUAL,
    FP_DEVICE_CPU
} fp_device_type;

typedef struct fp_heap {
    uint64_t size;
    int device_local;
    int host_visible; /* some memory type of this heap is host-visible */
} fp_heap;

typedef struct fp_profile {
    char name[FP_PROFILE_NAME_MAX];
    char driver_name[FP_PROFILE_NAME_MAX];
    char driver_info[FP_PROFILE_NAME_MAX];
    char overlay[64]; /* restriction applied ("" for none) */
    uint32_t index;   /* position in Vulkan's enumeration */
    uint32_t vendor_id, device_id, driver_id, api_version, driver_version;
    fp_vendor vendor;
    fp_device_type type;
    uint8_t device_uuid[16];
    uint8_t pipeline_cache_uuid[16];

    /* compute limits */
    uint32_t subgroup_size;             /* default size the driver reports */
    uint32_t subgroup_min, subgroup_max; /* range (size control) kernels must tolerate */
    int subgroup_ops;                   /* basic+arithmetic+shuffle in compute shaders */
    int subgroup_size_control;
    uint32_t shared_mem;                /* maxComputeSharedMemorySize, bytes */
    uint32_t max_wg_invocations;
    uint32_t max_wg_size[3];
    uint32_t max_wg_count[3];
    uint32_t max_push_constants;

    /* arithmetic / storage features */
    int fp16_arith;   /* shaderFloat16 */
    int storage16;    /* storageBuffer16BitAccess */
    int int8_arith;   /* shaderInt8 */
    int storage8;     /* storageBuffer8BitAccess */
    int int_dot;      /* shaderIntegerDotProduct */
    int coopmat;      /* fedproxy's cooperative-matrix kernels can run: VK_NV_cooperative_matrix
                         with a subgroup 16x16x16 f16*f16+f32 shape, shaderFloat16 and the
                         Vulkan memory model (KHR-only devices: 0, no kernel is built for it) */

    /* memory */
    uint64_t storage_range;     /* maxStorageBufferRange: no binding exceeds it */
    uint64_t max_alloc;         /* maxMemoryAllocationSize */
    uint32_t min_storage_align; /* minStorageBufferOffsetAlignment */
    int texel_buffers;          /* R32 and R32G32B32A32 SFLOAT, UINT, SINT usable as uniform texel buffers */
    uint64_t max_texel_elements; /* maxTexelBufferElements */
    uint32_t min_texel_align;   /* minTexelBufferOffsetAlignment */
    int uma;                    /* device-local memory is host-visible: no staging */
    uint32_t heap_count;
    fp_heap heaps[FP_PROFILE_MAX_HEAPS];
    uint64_t device_local_bytes; /* sum of device-local heaps */

    /* queues and timing */
    int transfer_queue;      /* a dedicated transfer-only queue family exists */
    int timestamps;          /* compute queue supports timestamps */
    float timestamp_period;  /* ns per tick */

    uint32_t quirks;         /* FP_QUIRK_* bits from the vendor table */
} fp_profile;

/* Vendor quirks (data, in src/vk/quirks.c's table). */
#define FP_QUIRK_SLOW_WG_BARRIERS (1u << 0)  /* big workgroup barrier trees are slow (llvmpipe) */
#define FP_QUIRK_NO_LARGE_K_SHARED (1u << 1) /* wrong results with big-K shared tiles (Mali) */
#define FP_QUIRK_FRAGILE_COMPILER (1u << 2)  /* compiler rejects complex shaders: fall back */
#define FP_QUIRK_ALLOC_LIMIT_2G (1u << 3)    /* allocations above 2 GiB fail */

/* A restriction overlay: caps and switches applied on top of a real profile.
 * Zero in a cap field means "no cap"; a feature set to 0 removes it. */
typedef struct fp_overlay {
    char name[64];
    uint32_t subgroup_min, subgroup_max; /* widen the range kernels must tolerate */
    int subgroup_ops, fp16_arith, storage16, int8_arith, storage8, int_dot, coopmat, uma, texel_buffers;
    uint32_t shared_mem, max_wg_invocations, max_push_constants;
    uint64_t storage_range, max_alloc, device_local_bytes, max_texel_elements;
} fp_overlay;

/* Names of the built-in overlays, NULL-terminated. */
extern const char *const fp_overlay_builtin_names[];

/* Looks up a built-in overlay by name. FP_ENOTFOUND if unknown. */
int fp_overlay_builtin(fp_overlay *out, const char *name);

/* Parses an overlay from JSON text ({"name":..., "shared_mem":16384, "fp16_arith":false,...}).
 * Unknown keys and wrongly typed values are errors (FP_EFORMAT). */
int fp_overlay_parse_json(fp_overlay *out, const char *json, size_t len);

/* Loads FP_PROFILE's value: a built-in name or a path to a JSON file. */
int fp_overlay_load(fp_overlay *out, const char *name_or_path);

/* Caps p by ov (min of limits, AND of features) and records ov->name in p->overlay. */
void fp_profile_apply_overlay(fp_profile *p, const fp_overlay *ov);

/* Applies the FP_NO_FP16, FP_NO_SUBGROUP, FP_NO_INTDOT, FP_NO_COOPMAT, FP_NO_UMA,
 * FP_NO_16BIT_STORAGE, FP_NO_TEXEL environment switches (any non-empty value but "0"). */
void fp_profile_apply_env(fp_profile *p);

const char *fp_vendor_name(fp_vendor v);
const char *fp_device_type_name(fp_device_type t);

/* 1 if the device runs on the host's CPU (a device of CPU type, or Mesa's
 * lavapipe/llvmpipe whatever type it reports), else 0. Every kernel choice
 * that differs for CPU devices asks this, so they cannot disagree. */
int fp_profile_is_cpu(const fp_profile *p);

/* Serialises a profile as a JSON object (malloc'd string; caller frees with free()). */
int fp_profile_to_json(char **out, const fp_profile *p);

#ifdef __cplusplus
}
#endif
#endif
