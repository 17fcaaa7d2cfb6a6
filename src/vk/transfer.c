/* Host <-> device copies. UMA devices: memcpy through the persistent mapping.
 * Others: through a host-visible staging block, chunk by chunk, on the transfer
 * queue (a dedicated one where the device has it). Serialised by queue_lock. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define STAGING_BYTES (16ull * 1024 * 1024)

static int xfer_init(fp_ctx *ctx)
{
    if (ctx->staging)
        return 0;
    int rc = fp_block_create(ctx, &ctx->staging, STAGING_BYTES, ctx->staging_type, 1, 1);
    if (rc)
        return fp_adderr(rc, "staging buffer");
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = ctx->qfam_transfer};
    VkResult r = vkCreateCommandPool(ctx->dev, &pci, NULL, &ctx->xfer_pool);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreateCommandPool (transfer)");
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = ctx->xfer_pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    r = vkAllocateCommandBuffers(ctx->dev, &ai, &ctx->xfer_cmd);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkAllocateCommandBuffers (transfer)");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(ctx->dev, &fci, NULL, &ctx->xfer_fence);
    if (r != VK_SUCCESS)
        return fp_vk_fail(ctx, r, "vkCreateFence (transfer)");
    return 0;
}

void fp_transfer_destroy(fp_ctx *ctx)
{
    if (ctx->xfer_fence)
        vkDestroyFence(ctx->dev, ctx->xfer_fence, NULL);
    if (ctx->xfer_pool)
        vkDestroyCommandPool(ctx->dev, ctx->xfer_pool, NULL);
    fp_block_destroy(ctx, ctx->staging);
    ctx->staging = NULL;
}

/* one staged copy (to_device: staging -> tensor, else tensor -> staging) */
static int staged_copy(fp_ctx *ctx, const fp_tensor *t, uint64_t off, uint64_t len, int to_device)
{
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    vkResetCommandBuffer(ctx->xfer_cmd, 0);
    vkBeginCommandBuffer(ctx->xfer_cmd, &bi);
    VkBufferCopy c = {.srcOffset = to_device ? 0 : t->offset + off,
                      .dstOffset = to_device ? t->offset + off : 0,
                      .size = len};
    if (to_device)
        vkCmdCopyBuffer(ctx->xfer_cmd, ctx->staging->buf, t->block->buf, 1, &c);
    else
        vkCmdCopyBuffer(ctx->xfer_cmd, t->block->buf, ctx->staging->buf, 1, &c);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT};
    vkCmdPipelineBarrier(ctx->xfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0,
                         NULL, 0, NULL);
    vkEndCommandBuffer(ctx->xfer_cmd);
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &ctx->xfer_cmd};
    double t0 = fp_trace_begin(ctx);
    VkResult r = vkQueueSubmit(ctx->q_transfer, 1, &si, ctx->xfer_fence);
    if (r == VK_SUCCESS)
        r = vkWaitForFences(ctx->dev, 1, &ctx->xfer_fence, VK_TRUE, UINT64_MAX);
    vkResetFences(ctx->dev, 1, &ctx->xfer_fence);
    fp_trace_end(ctx, t0, "%s of %llu bytes", to_device ? "upload" : "download", (unsigned long long)len);
    return r == VK_SUCCESS ? 0 : fp_vk_fail(ctx, r, to_device ? "upload" : "download");
}

static int check_len(const fp_tensor *t, size_t nbytes, const char *op)
{
    if (!t)
        return fp_seterr(FP_EINVAL, "%s: NULL tensor", op);
    if (nbytes != t->nbytes)
        return fp_seterr(FP_ESHAPE, "%s: %zu bytes given for a tensor of %llu bytes", op, nbytes,
                         (unsigned long long)t->nbytes);
    return 0;
}

int fp_tensor_upload(fp_tensor *t, const void *src, size_t nbytes)
{
    int rc = check_len(t, nbytes, "upload");
    if (rc)
        return rc;
    fp_ctx *ctx = t->ctx;
    if (t->block->map) {
        memcpy((char *)t->block->map + t->offset, src, nbytes);
        return 0;
    }
    pthread_mutex_lock(&ctx->queue_lock);
    rc = xfer_init(ctx);
    for (uint64_t off = 0; !rc && off < nbytes; off += STAGING_BYTES) {
        uint64_t len = nbytes - off < STAGING_BYTES ? nbytes - off : STAGING_BYTES;
        memcpy(ctx->staging->map, (const char *)src + off, len);
        rc = staged_copy(ctx, t, off, len, 1);
    }
    pthread_mutex_unlock(&ctx->queue_lock);
    return rc;
}

int fp_tensor_download(void *dst, size_t nbytes, const fp_tensor *t)
{
    int rc = check_len(t, nbytes, "download");
    if (rc)
        return rc;
    fp_ctx *ctx = t->ctx;
    if (t->block->map) {
        memcpy(dst, (const char *)t->block->map + t->offset, nbytes);
        return 0;
    }
    pthread_mutex_lock(&ctx->queue_lock);
    rc = xfer_init(ctx);
    for (uint64_t off = 0; !rc && off < nbytes; off += STAGING_BYTES) {
        uint64_t len = nbytes - off < STAGING_BYTES ? nbytes - off : STAGING_BYTES;
        rc = staged_copy(ctx, t, off, len, 0);
        if (!rc)
            memcpy((char *)dst + off, ctx->staging->map, len);
    }
    pthread_mutex_unlock(&ctx->queue_lock);
    return rc;
}

int fp_tensor_zero(fp_tensor *t)
{
    if (!t)
        return fp_seterr(FP_EINVAL, "zero: NULL tensor");
    fp_ctx *ctx = t->ctx;
    if (t->block->map) {
        memset((char *)t->block->map + t->offset, 0, t->nbytes);
        return 0;
    }
    if (t->offset % 4 || t->nbytes % 4) {
        /* vkCmdFillBuffer needs 4-byte offsets and sizes: a view of 8- or 16-bit
         * elements that is not word-aligned gets zeros uploaded instead, so the
         * bytes next to it are never touched */
        void *zeros = calloc(1, t->nbytes);
        if (!zeros)
            return fp_seterr(FP_ENOMEM, "zero: out of host memory");
        int urc = fp_tensor_upload(t, zeros, t->nbytes);
        free(zeros);
        return urc;
    }
    pthread_mutex_lock(&ctx->queue_lock);
    int rc = xfer_init(ctx);
    if (!rc) {
        VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                       .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
        vkResetCommandBuffer(ctx->xfer_cmd, 0);
        vkBeginCommandBuffer(ctx->xfer_cmd, &bi);
        vkCmdFillBuffer(ctx->xfer_cmd, t->block->buf, t->offset, t->nbytes, 0);
        vkEndCommandBuffer(ctx->xfer_cmd);
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                           .pCommandBuffers = &ctx->xfer_cmd};
        VkResult r = vkQueueSubmit(ctx->q_transfer, 1, &si, ctx->xfer_fence);
        if (r == VK_SUCCESS)
            r = vkWaitForFences(ctx->dev, 1, &ctx->xfer_fence, VK_TRUE, UINT64_MAX);
        vkResetFences(ctx->dev, 1, &ctx->xfer_fence);
        if (r != VK_SUCCESS)
            rc = fp_vk_fail(ctx, r, "zero fill");
    }
    pthread_mutex_unlock(&ctx->queue_lock);
    return rc;
}
