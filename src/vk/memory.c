/* Device memory: a few large blocks (one VkDeviceMemory + one VkBuffer each),
 * sub-allocated first-fit with coalescing free lists; tensors are byte ranges. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define MiB (1024ull * 1024ull)

static uint32_t find_type(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits, VkMemoryPropertyFlags want,
                          VkMemoryPropertyFlags avoid)
{
    for (uint32_t t = 0; t < mp->memoryTypeCount; t++)
        if ((bits & (1u << t)) && (mp->memoryTypes[t].propertyFlags & want) == want &&
            !(mp->memoryTypes[t].propertyFlags & avoid))
            return t;
    return UINT32_MAX;
}

static VkBufferUsageFlags usage_flags(void)
{
    return VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
           VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
}

static int make_buffer(fp_ctx *ctx, VkBuffer *out, uint64_t size)
{
    uint32_t fams[2] = {ctx->qfam_compute, ctx->qfam_transfer};
    int concurrent = ctx->qfam_compute != ctx->qfam_transfer;
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage_flags(),
        .sharingMode = concurrent ? VK_SHARING_MODE_CONCURRENT : VK_SHARING_MODE_EXCLUSIVE,
        .queueFamilyIndexCount = concurrent ? 2 : 0,
        .pQueueFamilyIndices = concurrent ? fams : NULL,
    };
    VkResult r = vkCreateBuffer(ctx->dev, &bci, NULL, out);
    return r == VK_SUCCESS ? 0 : fp_vk_fail(ctx, r, "vkCreateBuffer");
}

int fp_mem_init(fp_ctx *ctx)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(ctx->phys, &mp);
    /* probe the memory type bits a storage buffer accepts */
    VkBuffer probe;
    int rc = make_buffer(ctx, &probe, 4096);
    if (rc)
        return rc;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->dev, probe, &req);
    vkDestroyBuffer(ctx->dev, probe, NULL);

    const VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    const VkMemoryPropertyFlags HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    ctx->use_staging = !ctx->prof.uma;
    if (ctx->prof.uma) {
        /* prefer cached memory: downloads read it from the host */
        ctx->mem_type = find_type(&mp, req.memoryTypeBits, DL | HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
        if (ctx->mem_type == UINT32_MAX)
            ctx->mem_type = find_type(&mp, req.memoryTypeBits, DL | HV, 0);
    } else {
        ctx->mem_type = find_type(&mp, req.memoryTypeBits, DL, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
        if (ctx->mem_type == UINT32_MAX)
            ctx->mem_type = find_type(&mp, req.memoryTypeBits, DL, 0);
    }
    if (ctx->mem_type == UINT32_MAX)
        ctx->mem_type = find_type(&mp, req.memoryTypeBits, 0, 0);
    ctx->staging_type = find_type(&mp, req.memoryTypeBits, HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
    if (ctx->staging_type == UINT32_MAX)
        ctx->staging_type = find_type(&mp, req.memoryTypeBits, HV, 0);
    if (ctx->mem_type == UINT32_MAX || ctx->staging_type == UINT32_MAX)
        return fp_seterr(FP_EUNSUPPORTED, "device %s has no usable memory type for storage buffers", ctx->prof.name);

    uint64_t heap = mp.memoryHeaps[mp.memoryTypes[ctx->mem_type].heapIndex].size;
    ctx->heap_budget = heap;
    if (ctx->prof.device_local_bytes && ctx->prof.device_local_bytes < heap)
        ctx->heap_budget = ctx->prof.device_local_bytes; /* an overlay may shrink it */
    /* blocks: 64 MiB, never above what one binding or one allocation may span */
    uint64_t bs = 64 * MiB;
    if (bs > ctx->prof.storage_range)
        bs = ctx->prof.storage_range;
    if (bs > ctx->prof.max_alloc)
        bs = ctx->prof.max_alloc;
    if (bs > ctx->heap_budget / 4)
        bs = ctx->heap_budget / 4;
    ctx->block_size = bs;

    fp_tensor *dummy;
    int64_t shape = 64;
    rc = fp_tensor_new(&dummy, ctx, FP_F32, 1, &shape);
    if (rc)
        return rc;
    ctx->dummy = dummy->block;
    fp_tensor_free(dummy); /* the block stays; only its buffer handle is needed */
    return 0;
}

int fp_block_create(fp_ctx *ctx, fp_block **out, uint64_t size, uint32_t type, int map, int dedicated)
{
    fp_block *b = calloc(1, sizeof *b);
    if (!b)
        return fp_seterr(FP_ENOMEM, "out of memory");
    int rc = make_buffer(ctx, &b->buf, size);
    if (rc) {
        free(b);
        return rc;
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->dev, b->buf, &req);
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .allocationSize = req.size,
                               .memoryTypeIndex = type};
    VkResult r = vkAllocateMemory(ctx->dev, &ai, NULL, &b->mem);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(ctx->dev, b->buf, NULL);
        free(b);
        rc = fp_vk_fail(ctx, r, "vkAllocateMemory");
        return fp_adderr(rc, "allocating a %.1f MiB block", (double)size / MiB);
    }
    r = vkBindBufferMemory(ctx->dev, b->buf, b->mem, 0);
    if (r == VK_SUCCESS && map)
        r = vkMapMemory(ctx->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(ctx->dev, b->buf, NULL);
        vkFreeMemory(ctx->dev, b->mem, NULL);
        free(b);
        return fp_vk_fail(ctx, r, map ? "vkMapMemory" : "vkBindBufferMemory");
    }
    b->size = size;
    b->dedicated = dedicated;
    b->cap_free = 8;
    b->free = malloc(b->cap_free * sizeof *b->free);
    if (!b->free) {
        fp_block_destroy(ctx, b);
        return fp_seterr(FP_ENOMEM, "out of memory");
    }
    b->free[0].off = 0;
    b->free[0].size = size;
    b->nfree = 1;
    *out = b;
    return 0;
}

void fp_block_destroy(fp_ctx *ctx, fp_block *b)
{
    if (!b)
        return;
    if (b->map)
        vkUnmapMemory(ctx->dev, b->mem);
    vkDestroyBuffer(ctx->dev, b->buf, NULL);
    vkFreeMemory(ctx->dev, b->mem, NULL);
    free(b->free);
    free(b);
}

void fp_mem_destroy(fp_ctx *ctx)
{
    for (uint32_t i = 0; i < ctx->nblocks; i++)
        fp_block_destroy(ctx, ctx->blocks[i]);
    free(ctx->blocks);
    ctx->blocks = NULL;
    ctx->nblocks = 0;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* first fit within one block; returns 1 and the offset on success */
static int block_alloc(fp_block *b, uint64_t size, uint64_t align, uint64_t *off)
{
    for (uint32_t i = 0; i < b->nfree; i++) {
        uint64_t start = align_up(b->free[i].off, align);
        uint64_t end = b->free[i].off + b->free[i].size;
        if (start + size > end)
            continue;
        /* split: [off, start) stays free, [start+size, end) stays free */
        uint64_t head = start - b->free[i].off, tail = end - (start + size);
        if (head && tail) {
            if (b->nfree == b->cap_free) {
                void *n = realloc(b->free, 2 * b->cap_free * sizeof *b->free);
                if (!n)
                    return 0;
                b->free = n;
                b->cap_free *= 2;
            }
            memmove(&b->free[i + 2], &b->free[i + 1], (b->nfree - i - 1) * sizeof *b->free);
            b->free[i].size = head;
            b->free[i + 1].off = start + size;
            b->free[i + 1].size = tail;
            b->nfree++;
        } else if (head) {
            b->free[i].size = head;
        } else if (tail) {
            b->free[i].off = start + size;
            b->free[i].size = tail;
        } else {
            memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof *b->free);
            b->nfree--;
        }
        b->used += size;
        *off = start;
        return 1;
    }
    return 0;
}

static void block_release(fp_block *b, uint64_t off, uint64_t size)
{
    uint32_t i = 0;
    while (i < b->nfree && b->free[i].off < off)
        i++;
    int merge_prev = i > 0 && b->free[i - 1].off + b->free[i - 1].size == off;
    int merge_next = i < b->nfree && off + size == b->free[i].off;
    if (merge_prev && merge_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof *b->free);
        b->nfree--;
    } else if (merge_prev) {
        b->free[i - 1].size += size;
    } else if (merge_next) {
        b->free[i].off = off;
        b->free[i].size += size;
    } else {
        if (b->nfree == b->cap_free) {
            void *n = realloc(b->free, 2 * b->cap_free * sizeof *b->free);
            if (!n)
                return; /* leaks the range inside the block; harmless */
            b->free = n;
            b->cap_free *= 2;
        }
        memmove(&b->free[i + 1], &b->free[i], (b->nfree - i) * sizeof *b->free);
        b->free[i].off = off;
        b->free[i].size = size;
        b->nfree++;
    }
    b->used -= size;
}

size_t fp_dtype_size(fp_dtype t)
{
    switch (t) {
    case FP_F32: case FP_I32: case FP_U32: return 4;
    case FP_F16: case FP_BF16: return 2;
    case FP_U8: return 1;
    default: return 0;
    }
}

const char *fp_dtype_name(fp_dtype t)
{
    static const char *n[] = {"f32", "f16", "bf16", "i32", "u8", "u32"};
    return (unsigned)t < FP_DTYPE_COUNT ? n[t] : "invalid";
}

int64_t fp_tensor_numel(const fp_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static int check_shape(fp_dtype dtype, int ndim, const int64_t *shape, uint64_t *nbytes)
{
    if ((unsigned)dtype >= FP_DTYPE_COUNT)
        return fp_seterr(FP_EINVAL, "invalid dtype %d", (int)dtype);
    if (ndim < 1 || ndim > FP_MAX_DIMS || !shape)
        return fp_seterr(FP_EINVAL, "tensor needs 1 to %d dimensions, got %d", FP_MAX_DIMS, ndim);
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || (uint64_t)shape[i] > (1ull << 40) / n)
            return fp_seterr(FP_EINVAL, "bad tensor dimension %d: %lld", i, (long long)shape[i]);
        n *= (uint64_t)shape[i];
    }
    *nbytes = n * fp_dtype_size(dtype);
    return 0;
}

int fp_tensor_new(fp_tensor **out, fp_ctx *ctx, fp_dtype dtype, int ndim, const int64_t *shape)
{
    if (!out || !ctx)
        return fp_seterr(FP_EINVAL, "fp_tensor_new: NULL argument");
    *out = NULL;
    uint64_t nbytes;
    int rc = check_shape(dtype, ndim, shape, &nbytes);
    if (rc)
        return rc;
    fp_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return fp_seterr(FP_ENOMEM, "out of memory");
    t->ctx = ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    /* round sizes so every tensor starts aligned for binding (as a storage or a
     * texel buffer) and for 16-byte vector loads */
    uint64_t align = ctx->prof.min_storage_align > 16 ? ctx->prof.min_storage_align : 16;
    if (ctx->prof.min_texel_align > align)
        align = ctx->prof.min_texel_align;
    uint64_t size = align_up(nbytes, align);
    t->alloc_size = size;

    pthread_mutex_lock(&ctx->mem_lock);
    fp_block *hit = NULL;
    uint64_t off = 0;
    if (size <= ctx->block_size) {
        for (uint32_t i = 0; i < ctx->nblocks && !hit; i++)
            if (!ctx->blocks[i]->dedicated && block_alloc(ctx->blocks[i], size, align, &off))
                hit = ctx->blocks[i];
    }
    if (!hit) {
        int dedicated = size > ctx->block_size;
        uint64_t bsize = dedicated ? size : ctx->block_size;
        if (bsize > ctx->prof.max_alloc) {
            pthread_mutex_unlock(&ctx->mem_lock);
            free(t);
            return fp_seterr(FP_EDEVMEM,
                             "out of device memory on %s: a %.1f MiB %s tensor is larger than the largest "
                             "allocation the device allows (%.1f MiB)",
                             ctx->prof.name, (double)nbytes / MiB, fp_dtype_name(dtype),
                             (double)ctx->prof.max_alloc / MiB);
        }
        if (ctx->reserved + bsize > ctx->heap_budget) {
            pthread_mutex_unlock(&ctx->mem_lock);
            free(t);
            return fp_seterr(FP_EDEVMEM,
                             "out of device memory on %s: a %.1f MiB %s tensor needs %.1f MiB more, but %.1f "
                             "of the heap's %.1f MiB are already reserved",
                             ctx->prof.name, (double)nbytes / MiB, fp_dtype_name(dtype), (double)bsize / MiB,
                             (double)ctx->reserved / MiB, (double)ctx->heap_budget / MiB);
        }
        if (ctx->nblocks == ctx->cap_blocks) {
            uint32_t cap = ctx->cap_blocks ? 2 * ctx->cap_blocks : 8;
            void *n = realloc(ctx->blocks, cap * sizeof *ctx->blocks);
            if (!n) {
                pthread_mutex_unlock(&ctx->mem_lock);
                free(t);
                return fp_seterr(FP_ENOMEM, "out of memory");
            }
            ctx->blocks = n;
            ctx->cap_blocks = cap;
        }
        fp_block *b;
        rc = fp_block_create(ctx, &b, bsize, ctx->mem_type, !ctx->use_staging, dedicated);
        if (rc) {
            pthread_mutex_unlock(&ctx->mem_lock);
            free(t);
            return fp_adderr(rc, "tensor of %.1f MiB (%s)", (double)nbytes / MiB, fp_dtype_name(dtype));
        }
        ctx->blocks[ctx->nblocks++] = b;
        ctx->reserved += bsize;
        block_alloc(b, size, align, &off);
        hit = b;
    }
    ctx->in_use += size;
    if (ctx->in_use > ctx->peak_in_use)
        ctx->peak_in_use = ctx->in_use;
    pthread_mutex_unlock(&ctx->mem_lock);
    t->block = hit;
    t->offset = off;
    *out = t;
    return 0;
}

int fp_tensor_view(fp_tensor **out, fp_tensor *base, int64_t elem_offset, fp_dtype dtype, int ndim,
                   const int64_t *shape)
{
    if (!out || !base)
        return fp_seterr(FP_EINVAL, "fp_tensor_view: NULL argument");
    *out = NULL;
    uint64_t nbytes;
    int rc = check_shape(dtype, ndim, shape, &nbytes);
    if (rc)
        return rc;
    uint64_t start = (uint64_t)elem_offset * fp_dtype_size(dtype);
    if (elem_offset < 0 || start + nbytes > base->nbytes)
        return fp_seterr(FP_ESHAPE, "view of %llu bytes at byte %llu exceeds its base of %llu bytes",
                         (unsigned long long)nbytes, (unsigned long long)start,
                         (unsigned long long)base->nbytes);
    fp_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return fp_seterr(FP_ENOMEM, "out of memory");
    *t = *base;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < FP_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 0;
    t->nbytes = nbytes;
    t->offset = base->offset + start;
    t->alloc_size = 0;
    t->is_view = 1;
    *out = t;
    return 0;
}

void fp_tensor_free(fp_tensor *t)
{
    if (!t)
        return;
    if (!t->is_view && t->block) {
        fp_ctx *ctx = t->ctx;
        pthread_mutex_lock(&ctx->mem_lock);
        block_release(t->block, t->offset, t->alloc_size);
        ctx->in_use -= t->alloc_size;
        /* give dedicated blocks back at once; keep shared blocks for reuse */
        if (t->block->dedicated) {
            for (uint32_t i = 0; i < ctx->nblocks; i++)
                if (ctx->blocks[i] == t->block) {
                    ctx->blocks[i] = ctx->blocks[--ctx->nblocks];
                    break;
                }
            ctx->reserved -= t->block->size;
            fp_block_destroy(ctx, t->block);
        }
        pthread_mutex_unlock(&ctx->mem_lock);
    }
    free(t);
}

void fp_ctx_mem_stats(const fp_ctx *ctx, fp_mem_stats *out)
{
    fp_ctx *c = (fp_ctx *)ctx;
    pthread_mutex_lock(&c->mem_lock);
    out->reserved = c->reserved;
    out->in_use = c->in_use;
    out->peak_in_use = c->peak_in_use;
    out->blocks = c->nblocks;
    pthread_mutex_unlock(&c->mem_lock);
}
