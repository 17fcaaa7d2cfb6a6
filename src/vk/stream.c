/* Command streams: many dispatches in one command buffer, with a barrier only
 * where a dispatch touches memory an earlier one (since the last barrier) wrote,
 * or writes memory one read. Descriptor sets come from per-stream pools that are
 * reset after each run. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define SETS_PER_POOL 256
#define MAX_TIMED 4096

struct access {
    VkBuffer buf;
    uint64_t off, size;
    int write;
};

struct fp_stream {
    fp_ctx *ctx;
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorPool *dpools;
    uint32_t ndpools, cap_dpools, sets_in_last;
    int recording;
    struct access *acc;
    uint32_t nacc, cap_acc;
    uint32_t dispatches, barriers;
    const char *first_pipe, *last_pipe; /* for FP_TRACE_MS */
    fp_stream_stats last;
    /* profiling */
    VkQueryPool qpool;
    uint32_t ntimed;
    const char *timed_names[MAX_TIMED];
    double timed_us[MAX_TIMED];
    uint32_t nresults;
    /* fp_stream_scratch: pool buffers (busy until their view is released) and
     * the views handed out; all freed when the run completes */
    struct scratch_buf {
        fp_tensor *t;
        int busy;
    } *sbuf;
    uint32_t nsbuf, cap_sbuf;
    struct scratch_view {
        fp_tensor *v;
        uint32_t buf;
    } *sview;
    uint32_t nsview, cap_sview;
    /* texel-buffer views of the current recording, destroyed when it has run */
    VkBufferView *views;
    uint32_t nviews, cap_views;
};

static void views_release(fp_stream *s)
{
    for (uint32_t i = 0; i < s->nviews; i++)
        vkDestroyBufferView(s->ctx->dev, s->views[i], NULL);
    s->nviews = 0;
}

static void scratch_release(fp_stream *s)
{
    for (uint32_t i = 0; i < s->nsview; i++)
        fp_tensor_free(s->sview[i].v);
    for (uint32_t i = 0; i < s->nsbuf; i++)
        fp_tensor_free(s->sbuf[i].t);
    s->nsview = s->nsbuf = 0;
}

static int grow(void **arr, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    uint32_t nc = *cap ? 2 * *cap : 8;
    void *np = realloc(*arr, nc * elem);
    if (!np)
        return fp_seterr(FP_ENOMEM, "stream scratch: out of host memory");
    *arr = np, *cap = nc;
    return 0;
}

int fp_stream_scratch(fp_stream *s, fp_tensor **out, fp_dtype dtype, int64_t numel)
{
    if (!s || !out)
        return fp_seterr(FP_EINVAL, "fp_stream_scratch: NULL argument");
    *out = NULL;
    if (numel < 1)
        return fp_seterr(FP_ESHAPE, "stream scratch of %lld elements", (long long)numel);
    uint64_t need = (uint64_t)numel * fp_dtype_size(dtype);
    /* the smallest free buffer that fits: a released one is reused (the
     * hazard tracker orders its new writes after the old reads) */
    uint32_t best = UINT32_MAX;
    for (uint32_t i = 0; i < s->nsbuf; i++)
        if (!s->sbuf[i].busy && s->sbuf[i].t->nbytes >= need &&
            (best == UINT32_MAX || s->sbuf[i].t->nbytes < s->sbuf[best].t->nbytes))
            best = i;
    int rc = grow((void **)&s->sview, &s->cap_sview, s->nsview, sizeof *s->sview);
    if (!rc && best == UINT32_MAX)
        rc = grow((void **)&s->sbuf, &s->cap_sbuf, s->nsbuf, sizeof *s->sbuf);
    if (rc)
        return rc;
    if (best == UINT32_MAX) {
        int64_t words = (int64_t)((need + 3) / 4);
        fp_tensor *t = NULL;
        rc = fp_tensor_new(&t, s->ctx, FP_F32, 1, &words);
        if (rc)
            return fp_adderr(rc, "stream scratch of %lld elements", (long long)numel);
        best = s->nsbuf++;
        s->sbuf[best] = (struct scratch_buf){t, 0};
    }
    fp_tensor *v = NULL;
    rc = fp_tensor_view(&v, s->sbuf[best].t, 0, dtype, 1, &numel);
    if (rc)
        return fp_adderr(rc, "stream scratch view");
    s->sbuf[best].busy = 1;
    s->sview[s->nsview++] = (struct scratch_view){v, best};
    *out = v;
    return 0;
}

int fp_stream_scratch_release(fp_stream *s, fp_tensor *t)
{
    if (!s || !t)
        return fp_seterr(FP_EINVAL, "fp_stream_scratch_release: NULL argument");
    for (uint32_t i = 0; i < s->nsview; i++)
        if (s->sview[i].v == t) {
            s->sbuf[s->sview[i].buf].busy = 0;
            return 0;
        }
    return fp_seterr(FP_EINVAL, "fp_stream_scratch_release: not scratch of this stream's recording");
}

int fp_stream_new(fp_stream **out, fp_ctx *ctx)
{
    if (!out || !ctx)
        return fp_seterr(FP_EINVAL, "fp_stream_new: NULL argument");
    fp_stream *s = calloc(1, sizeof *s);
    if (!s)
        return fp_seterr(FP_ENOMEM, "out of memory");
    s->ctx = ctx;
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = ctx->qfam_compute};
    VkResult r = vkCreateCommandPool(ctx->dev, &pci, NULL, &s->pool);
    if (r == VK_SUCCESS) {
        VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                          .commandPool = s->pool,
                                          .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                          .commandBufferCount = 1};
        r = vkAllocateCommandBuffers(ctx->dev, &ai, &s->cmd);
    }
    if (r == VK_SUCCESS) {
        VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        r = vkCreateFence(ctx->dev, &fci, NULL, &s->fence);
    }
    if (r == VK_SUCCESS && ctx->profiling && ctx->prof.timestamps) {
        VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                     .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                     .queryCount = 2 * MAX_TIMED};
        r = vkCreateQueryPool(ctx->dev, &qci, NULL, &s->qpool);
    }
    if (r != VK_SUCCESS) {
        int rc = fp_vk_fail(ctx, r, "creating a command stream");
        fp_stream_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void fp_stream_free(fp_stream *s)
{
    if (!s)
        return;
    fp_ctx *ctx = s->ctx;
    if (s->recording)
        vkEndCommandBuffer(s->cmd);
    for (uint32_t i = 0; i < s->ndpools; i++)
        vkDestroyDescriptorPool(ctx->dev, s->dpools[i], NULL);
    free(s->dpools);
    if (s->qpool)
        vkDestroyQueryPool(ctx->dev, s->qpool, NULL);
    if (s->fence)
        vkDestroyFence(ctx->dev, s->fence, NULL);
    if (s->pool)
        vkDestroyCommandPool(ctx->dev, s->pool, NULL);
    free(s->acc);
    views_release(s);
    free(s->views);
    scratch_release(s); /* after the pools: nothing recorded can run any more */
    free(s->sbuf);
    free(s->sview);
    free(s);
}

static void full_barrier(fp_stream *s, VkPipelineStageFlags dst_stage, VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = dst_access};
    vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, dst_stage,
                         0, 1, &mb, 0, NULL, 0, NULL);
}

static int begin(fp_stream *s)
{
    if (s->recording)
        return 0;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = vkBeginCommandBuffer(s->cmd, &bi);
    if (r != VK_SUCCESS)
        return fp_vk_fail(s->ctx, r, "vkBeginCommandBuffer");
    s->recording = 1;
    s->nacc = 0;
    s->dispatches = s->barriers = 0;
    s->ntimed = 0;
    if (s->qpool)
        vkCmdResetQueryPool(s->cmd, s->qpool, 0, 2 * MAX_TIMED);
    return 0;
}

static int ranges_overlap(const struct access *a, VkBuffer buf, uint64_t off, uint64_t size)
{
    return a->buf == buf && off < a->off + a->size && a->off < off + size;
}

/* inserts a barrier if needed, then records the new accesses */
static int track(fp_stream *s, const struct access *now, uint32_t n)
{
    int need = 0;
    for (uint32_t i = 0; i < n && !need; i++)
        for (uint32_t j = 0; j < s->nacc && !need; j++)
            if ((now[i].write || s->acc[j].write) && ranges_overlap(&s->acc[j], now[i].buf, now[i].off, now[i].size))
                need = 1;
    if (need) {
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                              .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                               VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
        VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
        vkCmdPipelineBarrier(s->cmd, st, st, 0, 1, &mb, 0, NULL, 0, NULL);
        s->barriers++;
        s->nacc = 0;
    }
    if (s->nacc + n > s->cap_acc) {
        uint32_t cap = s->cap_acc ? 2 * s->cap_acc : 64;
        while (cap < s->nacc + n)
            cap *= 2;
        void *p = realloc(s->acc, cap * sizeof *s->acc);
        if (!p)
            return fp_seterr(FP_ENOMEM, "out of memory");
        s->acc = p;
        s->cap_acc = cap;
    }
    memcpy(&s->acc[s->nacc], now, n * sizeof *now);
    s->nacc += n;
    return 0;
}

static int alloc_set(fp_stream *s, VkDescriptorSet *set)
{
    fp_ctx *ctx = s->ctx;
    if (s->ndpools == 0 || s->sets_in_last == SETS_PER_POOL) {
        if (s->ndpools == s->cap_dpools) {
            uint32_t cap = s->cap_dpools ? 2 * s->cap_dpools : 4;
            void *p = realloc(s->dpools, cap * sizeof *s->dpools);
            if (!p)
                return fp_seterr(FP_ENOMEM, "out of memory");
            s->dpools = p;
            s->cap_dpools = cap;
        }
        VkDescriptorPoolSize ps[2] = {{.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .descriptorCount = SETS_PER_POOL * FP_MAX_BINDINGS},
                                      {.type = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
                                       .descriptorCount = SETS_PER_POOL * FP_MAX_BINDINGS}};
        VkDescriptorPoolCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                         .maxSets = SETS_PER_POOL,
                                         .poolSizeCount = 2,
                                         .pPoolSizes = ps};
        VkResult r = vkCreateDescriptorPool(ctx->dev, &ci, NULL, &s->dpools[s->ndpools]);
        if (r != VK_SUCCESS)
            return fp_vk_fail(ctx, r, "vkCreateDescriptorPool");
        s->ndpools++;
        s->sets_in_last = 0;
    }
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = s->dpools[s->ndpools - 1],
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &ctx->dsl};
    VkResult r = vkAllocateDescriptorSets(ctx->dev, &ai, set);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkAllocateDescriptorSets");
    s->sets_in_last++;
    return 0;
}

static VkFormat texel_format(fp_dtype dt, uint32_t comps)
{
    switch (dt) {
    case FP_F32: return comps == 4 ? VK_FORMAT_R32G32B32A32_SFLOAT : VK_FORMAT_R32_SFLOAT;
    case FP_U32: return comps == 4 ? VK_FORMAT_R32G32B32A32_UINT : VK_FORMAT_R32_UINT;
    case FP_I32: return comps == 4 ? VK_FORMAT_R32G32B32A32_SINT : VK_FORMAT_R32_SINT;
    default: return VK_FORMAT_UNDEFINED;
    }
}

/* Why t cannot be a texel binding of comps components, or NULL if it can. */
static const char *texel_unfit(const fp_ctx *ctx, const fp_tensor *t, uint32_t comps)
{
    if (comps != 1 && comps != 4)
        return "texels must have 1 or 4 components";
    if (!ctx->prof.texel_buffers)
        return "the device has no usable uniform texel buffer formats";
    if (texel_format(t->dtype, comps) == VK_FORMAT_UNDEFINED)
        return "only f32, u32 and i32 tensors have a texel format";
    if (t->offset % ctx->prof.min_texel_align)
        return "its offset is not a multiple of the device's texel-buffer alignment";
    uint64_t texels = t->nbytes / (4u * comps);
    if (texels == 0)
        return "it holds less than one texel";
    if (texels > ctx->prof.max_texel_elements)
        return "it holds more texels than the device's maxTexelBufferElements";
    return NULL;
}

int fp_ctx_texel_fits(const fp_ctx *ctx, const fp_tensor *t, uint32_t comps)
{
    return ctx && t && t->block && t->ctx == ctx && !texel_unfit(ctx, t, comps);
}

int fp_stream_dispatch(fp_stream *s, fp_pipeline *p, const fp_binding *bindings, uint32_t nbindings,
                       const void *push, uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz)
{
    if (!s || !p || nbindings > FP_MAX_BINDINGS || (nbindings && !bindings))
        return fp_seterr(FP_EINVAL, "fp_stream_dispatch: bad arguments");
    fp_ctx *ctx = s->ctx;
    if (push_size > FP_PUSH_MAX || push_size > ctx->prof.max_push_constants || push_size % 4)
        return fp_seterr(FP_EINVAL, "dispatch of '%s': %u bytes of push constants (limit %u, multiple of 4)",
                         p->name, push_size, FP_PUSH_MAX);
    if (gx == 0 || gy == 0 || gz == 0)
        return fp_seterr(FP_EINVAL, "dispatch of '%s' with an empty grid %ux%ux%u", p->name, gx, gy, gz);
    if (gx > ctx->prof.max_wg_count[0] || gy > ctx->prof.max_wg_count[1] || gz > ctx->prof.max_wg_count[2])
        return fp_seterr(FP_EINVAL, "dispatch of '%s': grid %ux%ux%u exceeds %s's limit %ux%ux%u", p->name, gx, gy,
                         gz, ctx->prof.name, ctx->prof.max_wg_count[0], ctx->prof.max_wg_count[1],
                         ctx->prof.max_wg_count[2]);
    if (!s->first_pipe || !s->dispatches)
        s->first_pipe = p->name;
    s->last_pipe = p->name;
    struct access acc[FP_MAX_BINDINGS];
    VkDescriptorBufferInfo bi[FP_MAX_BINDINGS];
    uint32_t ntex = 0;
    for (uint32_t i = 0; i < FP_MAX_BINDINGS; i++) {
        bi[i] = (VkDescriptorBufferInfo){.buffer = ctx->dummy->buf, .offset = 0, .range = 256};
        if (i >= nbindings)
            continue;
        const fp_tensor *t = bindings[i].t;
        if (!t || !t->block)
            return fp_seterr(FP_EINVAL, "dispatch of '%s': binding %u has no tensor", p->name, i);
        if (t->ctx != ctx)
            return fp_seterr(FP_EINVAL, "dispatch of '%s': binding %u belongs to another context", p->name, i);
        acc[i] = (struct access){t->block->buf, t->offset, t->nbytes, bindings[i].write};
        if (bindings[i].texel) {
            const char *why = texel_unfit(ctx, t, (uint32_t)bindings[i].texel);
            if (why)
                return fp_seterr(FP_EUNSUPPORTED,
                                 "dispatch of '%s': binding %u (%llu bytes at offset %llu) cannot be a texel "
                                 "buffer on %s: %s",
                                 p->name, i, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                                 ctx->prof.name, why);
            ntex++;
            if (!bindings[i].write) { /* storage binding i keeps the placeholder */
                uint64_t tb = 4ull * (uint32_t)bindings[i].texel;
                acc[i].size = t->nbytes / tb * tb;
                continue;
            }
        }
        if (t->nbytes > ctx->prof.storage_range)
            return fp_seterr(FP_EUNSUPPORTED,
                             "dispatch of '%s': binding %u spans %llu bytes, more than %s's storage range of "
                             "%llu; bind it in chunks (views)",
                             p->name, i, (unsigned long long)t->nbytes, ctx->prof.name,
                             (unsigned long long)ctx->prof.storage_range);
        if (t->offset % ctx->prof.min_storage_align)
            return fp_seterr(FP_EINVAL, "dispatch of '%s': binding %u starts at byte %llu, not a multiple of "
                             "the device's storage alignment %u",
                             p->name, i, (unsigned long long)t->offset, ctx->prof.min_storage_align);
        bi[i] = (VkDescriptorBufferInfo){.buffer = t->block->buf, .offset = t->offset,
                                         .range = (t->nbytes + 3) & ~3ull};
    }
    int rc = begin(s);
    if (rc)
        return rc;
    VkDescriptorSet set;
    rc = alloc_set(s, &set);
    if (rc)
        return rc;
    VkWriteDescriptorSet w[1 + FP_MAX_BINDINGS];
    w[0] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                  .dstSet = set,
                                  .dstBinding = 0,
                                  .descriptorCount = FP_MAX_BINDINGS,
                                  .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                  .pBufferInfo = bi};
    uint32_t nw = 1;
    /* texel bindings get a view each, kept until the run completes; the other
     * texel slots stay unwritten (no pipeline that uses them is bound with them) */
    if (ntex && grow((void **)&s->views, &s->cap_views, s->nviews + ntex - 1, sizeof *s->views))
        return fp_seterr(FP_ENOMEM, "dispatch of '%s': out of host memory for texel views", p->name);
    for (uint32_t i = 0; i < nbindings && ntex; i++) {
        if (!bindings[i].texel)
            continue;
        const fp_tensor *t = bindings[i].t;
        VkBufferViewCreateInfo vi = {.sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                                     .buffer = t->block->buf,
                                     .format = texel_format(t->dtype, (uint32_t)bindings[i].texel),
                                     .offset = t->offset,
                                     .range = t->nbytes / (4u * (uint32_t)bindings[i].texel) *
                                              (4u * (uint32_t)bindings[i].texel)};
        VkResult r = vkCreateBufferView(ctx->dev, &vi, NULL, &s->views[s->nviews]);
        if (r != VK_SUCCESS)
            return fp_adderr(fp_vk_fail(ctx, r, "vkCreateBufferView"), "dispatch of '%s', binding %u", p->name, i);
        w[nw++] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                         .dstSet = set,
                                         .dstBinding = FP_TEXEL_BINDING(i),
                                         .descriptorCount = 1,
                                         .descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER,
                                         .pTexelBufferView = &s->views[s->nviews]};
        s->nviews++;
    }
    vkUpdateDescriptorSets(ctx->dev, nw, w, 0, NULL);
    rc = track(s, acc, nbindings);
    if (rc)
        return rc;
    int timed = s->qpool && s->ntimed < MAX_TIMED;
    if (timed)
        vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s->qpool, 2 * s->ntimed);
    vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipe);
    vkCmdBindDescriptorSets(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, ctx->layout, 0, 1, &set, 0, NULL);
    if (push_size)
        vkCmdPushConstants(s->cmd, ctx->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
    vkCmdDispatch(s->cmd, gx, gy, gz);
    if (timed) {
        vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->qpool, 2 * s->ntimed + 1);
        s->timed_names[s->ntimed++] = p->name;
    }
    s->dispatches++;
    return 0;
}

int fp_stream_copy(fp_stream *s, const fp_tensor *dst, const fp_tensor *src)
{
    if (!s || !dst || !src)
        return fp_seterr(FP_EINVAL, "fp_stream_copy: NULL argument");
    if (dst->nbytes != src->nbytes)
        return fp_seterr(FP_ESHAPE, "copy of %llu bytes into a tensor of %llu bytes",
                         (unsigned long long)src->nbytes, (unsigned long long)dst->nbytes);
    int rc = begin(s);
    if (rc)
        return rc;
    struct access acc[2] = {{src->block->buf, src->offset, src->nbytes, 0},
                            {dst->block->buf, dst->offset, dst->nbytes, 1}};
    rc = track(s, acc, 2);
    if (rc)
        return rc;
    VkBufferCopy c = {.srcOffset = src->offset, .dstOffset = dst->offset, .size = src->nbytes};
    vkCmdCopyBuffer(s->cmd, src->block->buf, dst->block->buf, 1, &c);
    return 0;
}

int fp_stream_run(fp_stream *s)
{
    if (!s)
        return fp_seterr(FP_EINVAL, "fp_stream_run: NULL stream");
    fp_ctx *ctx = s->ctx;
    if (!s->recording) {
        scratch_release(s);
        views_release(s);
        return 0;
    }
    /* make the results visible to the host (downloads map the memory) */
    /* ... and to whatever the next submission runs */
    full_barrier(s, VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                 VK_ACCESS_HOST_READ_BIT | VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT);
    VkResult r = vkEndCommandBuffer(s->cmd);
    s->recording = 0;
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &s->cmd};
    double t0 = fp_trace_begin(ctx);
    pthread_mutex_lock(&ctx->queue_lock);
    r = vkQueueSubmit(ctx->q_compute, 1, &si, s->fence);
    pthread_mutex_unlock(&ctx->queue_lock);
    if (r == VK_SUCCESS)
        r = vkWaitForFences(ctx->dev, 1, &s->fence, VK_TRUE, UINT64_MAX);
    fp_trace_end(ctx, t0, "stream run of %u dispatches (first %s, last %s), %u barriers", s->dispatches,
                 s->first_pipe ? s->first_pipe : "-", s->last_pipe ? s->last_pipe : "-", s->barriers);
    vkResetFences(ctx->dev, 1, &s->fence);
    s->last.dispatches = s->dispatches;
    s->last.barriers = s->barriers;
    int rc = 0;
    if (r != VK_SUCCESS) {
        rc = fp_vk_fail(ctx, r, "running a command stream");
        rc = fp_adderr(rc, "stream of %u dispatches", s->dispatches);
    }
    s->nresults = 0;
    if (!rc && s->qpool && s->ntimed) {
        uint64_t *ts = malloc(2 * s->ntimed * sizeof *ts);
        if (ts && vkGetQueryPoolResults(ctx->dev, s->qpool, 0, 2 * s->ntimed, 2 * s->ntimed * sizeof *ts, ts,
                                        sizeof *ts, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS) {
            for (uint32_t i = 0; i < s->ntimed; i++)
                s->timed_us[i] = (double)(ts[2 * i + 1] - ts[2 * i]) * ctx->prof.timestamp_period / 1000.0;
            s->nresults = s->ntimed;
        }
        free(ts);
    }
    /* the device is done with this run (or lost): its scratch can go. After a
     * failed submit nothing ran, so freeing is safe either way. */
    scratch_release(s);
    views_release(s);
    vkResetCommandBuffer(s->cmd, 0);
    for (uint32_t i = 0; i < s->ndpools; i++)
        vkResetDescriptorPool(ctx->dev, s->dpools[i], 0);
    /* keep the first pool, free the rest: a stream's next run usually has a similar size */
    s->sets_in_last = 0;
    if (s->ndpools > 1) {
        for (uint32_t i = 1; i < s->ndpools; i++)
            vkDestroyDescriptorPool(ctx->dev, s->dpools[i], NULL);
        s->ndpools = 1;
    }
    s->nacc = 0;
    return rc;
}

fp_ctx *fp_stream_ctx(const fp_stream *s) { return s->ctx; }

void fp_stream_stats_get(const fp_stream *s, fp_stream_stats *out) { *out = s->last; }

int fp_stream_timings(const fp_stream *s, fp_dispatch_time *out, uint32_t max, uint32_t *count)
{
    if (!s->ctx->profiling)
        return fp_seterr(FP_ESTATE, "timings need a context created with profiling on");
    for (uint32_t i = 0; i < s->nresults && i < max; i++) {
        out[i].pipeline = s->timed_names[i];
        out[i].us = s->timed_us[i];
    }
    *count = s->nresults;
    return 0;
}
