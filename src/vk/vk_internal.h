/* Internal state of the Vulkan runtime (see include/fedproxy/runtime.h). */
#ifndef FP_VK_INTERNAL_H
#define FP_VK_INTERNAL_H

#include <pthread.h>
#include <volk.h>

#include "error_internal.h"
#include "fedproxy/runtime.h"

/* One VkDeviceMemory with one VkBuffer over all of it; tensors are ranges in it. */
struct fp_block {
    VkDeviceMemory mem;
    VkBuffer buf;
    uint64_t size;
    void *map;        /* persistent mapping on UMA devices, else NULL */
    int dedicated;    /* holds exactly one large tensor */
    uint32_t nfree, cap_free;
    struct fp_range { uint64_t off, size; } *free; /* sorted by offset, coalesced */
    uint64_t used;
};

struct fp_pipeline {
    char name[96];
    uint32_t spec[FP_MAX_SPEC];
    uint32_t nspec;
    VkPipeline pipe;
};

struct fp_shader_module {
    const char *name;
    VkShaderModule mod;
};

struct fp_ctx {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice phys;
    VkDevice dev;
    fp_profile prof;
    fp_measured measured; /* from the cache; valid == 0 if absent */
    uint32_t api_version;

    uint32_t qfam_compute, qfam_transfer;
    VkQueue q_compute, q_transfer; /* q_transfer == q_compute without a dedicated family */
    pthread_mutex_t queue_lock;

    /* memory */
    pthread_mutex_t mem_lock;
    uint32_t mem_type;         /* for tensors */
    uint32_t staging_type;     /* host-visible coherent, for staging */
    uint64_t heap_budget;      /* bytes we allow ourselves on the tensor heap */
    uint64_t block_size;
    fp_block **blocks;
    uint32_t nblocks, cap_blocks;
    uint64_t reserved, in_use, peak_in_use;
    int use_staging;
    fp_block *staging;         /* lazily created, used under queue_lock: two halves (transfer.c) */
    VkCommandPool xfer_pool;
    VkCommandBuffer xfer_cmd[2]; /* one per staging half */
    VkFence xfer_fence[2];
    fp_block *dummy;           /* bound to unused binding slots */

    /* pipelines */
    pthread_mutex_t pipe_lock;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipelineCache cache;
    char cache_path[512];
    uint64_t cache_loaded;
    int no_cache;
    struct fp_pipeline **pipes;
    uint32_t npipes, cap_pipes;
    struct fp_shader_module *mods;
    uint32_t nmods, cap_mods;
    uint32_t pipelines_created, fallbacks;
    char fail_pattern[96];

    int profiling;
    int trace_ms; /* FP_TRACE_MS: report stream runs, transfers and pipeline builds at least this long (-1: off) */
    volatile uint32_t validation_count;
};

/* Maps a VkResult to an FP_E* code with a message naming the device and op. */
int fp_vk_fail(const fp_ctx *ctx, VkResult r, const char *op);

/* FP_TRACE_MS (trace.c): t0 = fp_trace_begin(ctx) before the work, then
 * fp_trace_end reports "what: N ms" on stderr when it took trace_ms or more. */
double fp_trace_begin(const fp_ctx *ctx);
void fp_trace_end(const fp_ctx *ctx, double t0, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *fp_vk_result_name(VkResult r);

/* Fills a profile from a physical device (no overlay). */
void fp_profile_from_physical(fp_profile *p, VkPhysicalDevice phys, uint32_t index);

/* Applies the vendor-quirk table to p->quirks. */
void fp_quirks_apply(fp_profile *p);

/* Memory (memory.c). */
int fp_mem_init(fp_ctx *ctx);
void fp_mem_destroy(fp_ctx *ctx);
int fp_block_create(fp_ctx *ctx, fp_block **out, uint64_t size, uint32_t type, int map, int dedicated);
void fp_block_destroy(fp_ctx *ctx, fp_block *b);

/* Transfers (transfer.c). */
void fp_transfer_destroy(fp_ctx *ctx);

/* Pipelines (pipeline.c). */
int fp_pipelines_init(fp_ctx *ctx);
void fp_pipelines_destroy(fp_ctx *ctx);

/* Instance (instance.c). */
int fp_instance_create(VkInstance *out, VkDebugUtilsMessengerEXT *messenger, fp_ctx *ctx, int validate);

#endif
