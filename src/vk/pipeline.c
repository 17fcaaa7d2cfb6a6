/* Pipelines: one descriptor-set layout (FP_MAX_BINDINGS storage buffers, then as
 * many uniform texel buffers) and pipeline layout for every kernel,
 * lazily built pipelines keyed by (shader, specialization constants), and a
 * VkPipelineCache kept on disk per device UUID + driver version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "shader_registry.h"
#include "vk_internal.h"

const struct fp_shader_blob *fp_shader_find(const char *name)
{
    for (unsigned i = 0; i < fp_shader_count; i++)
        if (!strcmp(fp_shader_table[i].name, name))
            return &fp_shader_table[i];
    return NULL;
}

static void cache_path(fp_ctx *ctx)
{
    char dir[400];
    ctx->cache_path[0] = '\0';
    if (fp_cache_dir(dir, sizeof dir) != 0) {
        fp_warn("no cache directory (%s); pipelines will be rebuilt every run", fp_errmsg());
        return;
    }
    char uuid[33];
    for (int i = 0; i < 16; i++)
        snprintf(uuid + 2 * i, 3, "%02x", ctx->prof.pipeline_cache_uuid[i]);
    snprintf(ctx->cache_path, sizeof ctx->cache_path, "%s/pipelines-%s-%08x.bin", dir, uuid,
             ctx->prof.driver_version);
}

/* Accepts cache data only if its header names this device (the driver would
 * also reject it, but some drivers crash on foreign data instead). */
static int cache_header_ok(const fp_ctx *ctx, const unsigned char *d, size_t n)
{
    if (n < 32)
        return 0;
    uint32_t hlen = d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24;
    uint32_t ver = d[4] | d[5] << 8 | d[6] << 16 | (uint32_t)d[7] << 24;
    uint32_t vendor = d[8] | d[9] << 8 | d[10] << 16 | (uint32_t)d[11] << 24;
    uint32_t device = d[12] | d[13] << 8 | d[14] << 16 | (uint32_t)d[15] << 24;
    return hlen >= 32 && hlen <= n && ver == VK_PIPELINE_CACHE_HEADER_VERSION_ONE &&
           vendor == ctx->prof.vendor_id && device == ctx->prof.device_id &&
           memcmp(d + 16, ctx->prof.pipeline_cache_uuid, 16) == 0;
}

int fp_pipelines_init(fp_ctx *ctx)
{
    /* storage buffers at 0..N-1, uniform texel buffers at N..2N-1 (FP_TEXEL_BINDING) */
    VkDescriptorSetLayoutBinding b[2 * FP_MAX_BINDINGS];
    for (uint32_t i = 0; i < 2 * FP_MAX_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){.binding = i,
                                              .descriptorType = i < FP_MAX_BINDINGS
                                                                    ? VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                                                                    : VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
                                              .descriptorCount = 1,
                                              .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .bindingCount = 2 * FP_MAX_BINDINGS,
                                           .pBindings = b};
    VkResult r = vkCreateDescriptorSetLayout(ctx->dev, &dci, NULL, &ctx->dsl);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreateDescriptorSetLayout");
    uint32_t push = FP_PUSH_MAX < ctx->prof.max_push_constants ? FP_PUSH_MAX : ctx->prof.max_push_constants;
    VkPushConstantRange pr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = push};
    VkPipelineLayoutCreateInfo lci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &ctx->dsl,
                                      .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pr};
    r = vkCreatePipelineLayout(ctx->dev, &lci, NULL, &ctx->layout);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreatePipelineLayout");

    void *data = NULL;
    size_t len = 0;
    if (!ctx->no_cache) {
        cache_path(ctx);
        if (ctx->cache_path[0] && fp_read_file(&data, &len, ctx->cache_path, 256u << 20) == 0 &&
            !cache_header_ok(ctx, data, len)) {
            fp_warn("ignoring pipeline cache %s: it was written for another device or driver", ctx->cache_path);
            free(data);
            data = NULL;
            len = 0;
        }
        fp_errclear();
    }
    VkPipelineCacheCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                     .initialDataSize = len,
                                     .pInitialData = data};
    r = vkCreatePipelineCache(ctx->dev, &pci, NULL, &ctx->cache);
    if (r != VK_SUCCESS && data) {
        pci.initialDataSize = 0;
        pci.pInitialData = NULL;
        len = 0;
        r = vkCreatePipelineCache(ctx->dev, &pci, NULL, &ctx->cache);
    }
    free(data);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreatePipelineCache");
    ctx->cache_loaded = len;
    return 0;
}

static void save_cache(fp_ctx *ctx)
{
    if (ctx->no_cache || !ctx->cache_path[0] || !ctx->pipelines_created)
        return;
    size_t n = 0;
    if (vkGetPipelineCacheData(ctx->dev, ctx->cache, &n, NULL) != VK_SUCCESS || n == 0)
        return;
    void *d = malloc(n);
    if (!d)
        return;
    if (vkGetPipelineCacheData(ctx->dev, ctx->cache, &n, d) == VK_SUCCESS &&
        fp_write_file_atomic(ctx->cache_path, d, n, 0644) != 0)
        fp_warn("could not save the pipeline cache: %s", fp_errmsg());
    free(d);
}

void fp_pipelines_destroy(fp_ctx *ctx)
{
    if (ctx->cache) {
        save_cache(ctx);
        vkDestroyPipelineCache(ctx->dev, ctx->cache, NULL);
    }
    for (uint32_t i = 0; i < ctx->npipes; i++) {
        vkDestroyPipeline(ctx->dev, ctx->pipes[i]->pipe, NULL);
        free(ctx->pipes[i]);
    }
    free(ctx->pipes);
    for (uint32_t i = 0; i < ctx->nmods; i++)
        vkDestroyShaderModule(ctx->dev, ctx->mods[i].mod, NULL);
    free(ctx->mods);
    if (ctx->layout)
        vkDestroyPipelineLayout(ctx->dev, ctx->layout, NULL);
    if (ctx->dsl)
        vkDestroyDescriptorSetLayout(ctx->dev, ctx->dsl, NULL);
}

static int get_module(fp_ctx *ctx, const struct fp_shader_blob *blob, VkShaderModule *out)
{
    for (uint32_t i = 0; i < ctx->nmods; i++)
        if (ctx->mods[i].name == blob->name) {
            *out = ctx->mods[i].mod;
            return 0;
        }
    if (ctx->nmods == ctx->cap_mods) {
        uint32_t cap = ctx->cap_mods ? 2 * ctx->cap_mods : 32;
        void *n = realloc(ctx->mods, cap * sizeof *ctx->mods);
        if (!n)
            return fp_seterr(FP_ENOMEM, "out of memory");
        ctx->mods = n;
        ctx->cap_mods = cap;
    }
    VkShaderModuleCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                   .codeSize = *blob->size,
                                   .pCode = blob->code};
    VkResult r = vkCreateShaderModule(ctx->dev, &ci, NULL, out);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreateShaderModule");
    ctx->mods[ctx->nmods].name = blob->name;
    ctx->mods[ctx->nmods].mod = *out;
    ctx->nmods++;
    return 0;
}

int fp_pipeline_get(fp_pipeline **out, fp_ctx *ctx, const char *name, const uint32_t *spec, uint32_t nspec)
{
    if (!out || !ctx || !name || nspec > FP_MAX_SPEC || (nspec && !spec))
        return fp_seterr(FP_EINVAL, "fp_pipeline_get: bad arguments");
    pthread_mutex_lock(&ctx->pipe_lock);
    for (uint32_t i = 0; i < ctx->npipes; i++) {
        struct fp_pipeline *p = ctx->pipes[i];
        if (p->nspec == nspec && !strcmp(p->name, name) && !memcmp(p->spec, spec, nspec * sizeof *spec)) {
            pthread_mutex_unlock(&ctx->pipe_lock);
            *out = p;
            return 0;
        }
    }
    int rc = 0;
    const struct fp_shader_blob *blob = fp_shader_find(name);
    if (!blob) {
        rc = fp_seterr(FP_ENOTFOUND, "no embedded shader named '%s'", name);
        goto done;
    }
    if (ctx->fail_pattern[0] && strstr(name, ctx->fail_pattern)) {
        rc = fp_seterr(FP_EPIPELINE, "pipeline '%s' failed to build on %s (forced by FP_FAIL_PIPELINE=%s)", name,
                       ctx->prof.name, ctx->fail_pattern);
        goto done;
    }
    /* workgroup size must respect the (restricted) profile */
    if (nspec >= 1) {
        uint64_t inv = (uint64_t)spec[0] * (nspec > 1 ? spec[1] : 1) * (nspec > 2 ? spec[2] : 1);
        if (inv > ctx->prof.max_wg_invocations || spec[0] > ctx->prof.max_wg_size[0]) {
            rc = fp_seterr(FP_EPIPELINE, "pipeline '%s': workgroup of %llu invocations exceeds %s's limit of %u%s%s",
                           name, (unsigned long long)inv, ctx->prof.name, ctx->prof.max_wg_invocations,
                           ctx->prof.overlay[0] ? " under profile " : "", ctx->prof.overlay);
            goto done;
        }
    }
    VkShaderModule mod;
    rc = get_module(ctx, blob, &mod);
    if (rc)
        goto done;
    VkSpecializationMapEntry map[FP_MAX_SPEC];
    for (uint32_t i = 0; i < nspec; i++)
        map[i] = (VkSpecializationMapEntry){.constantID = i, .offset = i * 4, .size = 4};
    VkSpecializationInfo si = {.mapEntryCount = nspec, .pMapEntries = map, .dataSize = nspec * 4, .pData = spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod,
                  .pName = "main",
                  .pSpecializationInfo = nspec ? &si : NULL},
        .layout = ctx->layout,
    };
    struct fp_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        rc = fp_seterr(FP_ENOMEM, "out of memory");
        goto done;
    }
    double t0 = fp_trace_begin(ctx);
    VkResult r = vkCreateComputePipelines(ctx->dev, ctx->cache, 1, &ci, NULL, &p->pipe);
    fp_trace_end(ctx, t0, "pipeline %s built", name);
    if (r != VK_SUCCESS) {
        free(p);
        rc = fp_vk_fail(ctx, r, "vkCreateComputePipelines");
        rc = fp_adderr(FP_EPIPELINE, "pipeline '%s'", name);
        goto done;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    memcpy(p->spec, spec, nspec * sizeof *spec);
    p->nspec = nspec;
    if (ctx->npipes == ctx->cap_pipes) {
        uint32_t cap = ctx->cap_pipes ? 2 * ctx->cap_pipes : 32;
        void *n = realloc(ctx->pipes, cap * sizeof *ctx->pipes);
        if (!n) {
            vkDestroyPipeline(ctx->dev, p->pipe, NULL);
            free(p);
            rc = fp_seterr(FP_ENOMEM, "out of memory");
            goto done;
        }
        ctx->pipes = n;
        ctx->cap_pipes = cap;
    }
    ctx->pipes[ctx->npipes++] = p;
    ctx->pipelines_created++;
    *out = p;
done:
    pthread_mutex_unlock(&ctx->pipe_lock);
    return rc;
}

int fp_pipeline_get_first(fp_pipeline **out, uint32_t *chosen, fp_ctx *ctx, const fp_variant *v, uint32_t count)
{
    int rc = fp_seterr(FP_EINVAL, "no pipeline variants given");
    for (uint32_t i = 0; i < count; i++) {
        rc = fp_pipeline_get(out, ctx, v[i].name, v[i].spec, v[i].nspec);
        if (rc == 0) {
            if (chosen)
                *chosen = i;
            return 0;
        }
        if (i + 1 < count) {
            fp_warn("%s; falling back to '%s'", fp_errmsg(), v[i + 1].name);
            pthread_mutex_lock(&ctx->pipe_lock);
            ctx->fallbacks++;
            pthread_mutex_unlock(&ctx->pipe_lock);
        }
    }
    return rc;
}

const char *fp_pipeline_name(const fp_pipeline *p) { return p->name; }

void fp_ctx_pipeline_stats(const fp_ctx *ctx, fp_pipeline_stats *out)
{
    fp_ctx *c = (fp_ctx *)ctx;
    pthread_mutex_lock(&c->pipe_lock);
    out->cache_bytes_loaded = c->cache_loaded;
    out->pipelines_created = c->pipelines_created;
    out->fallbacks = c->fallbacks;
    snprintf(out->cache_path, sizeof out->cache_path, "%s", c->cache_path);
    pthread_mutex_unlock(&c->pipe_lock);
}
