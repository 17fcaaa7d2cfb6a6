/* safetensors writer. The header is built in memory (small); tensor data is
 * streamed from the caller's buffers into a temp file beside the target, which
 * is fsynced and renamed over it: readers never see a half-written checkpoint,
 * and a multi-GiB model never needs a second in-memory copy. */
#include "fedproxy/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error_internal.h"
#include "model/hashmap.h"
#include "model/strbuf.h"

static atomic_uint st_tmp_counter;

static int write_all(int fd, const void *data, size_t len, const char *tmp)
{
    const unsigned char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return fp_seterr(FP_EIO, "write to %s failed: %s", tmp, strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (!slash)
        strcpy(dir, ".");
    else if (n == 0)
        strcpy(dir, "/");
    else if (n < sizeof dir) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    } else
        return;
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd); /* best effort: the rename already happened */
        close(fd);
    }
}

/* Validates one entry; *nbytes gets its data size. */
static int check_entry(const fp_st_entry *e, size_t i, uint64_t *nbytes, const char *path)
{
    if (!e->name || !e->name[0])
        return fp_seterr(FP_EINVAL, "%s: tensor #%zu has no name", path, i);
    if (!strcmp(e->name, "__metadata__"))
        return fp_seterr(FP_EINVAL, "%s: '__metadata__' is reserved, not a tensor name", path);
    size_t esz = fp_st_dtype_size(e->dtype);
    if (!esz)
        return fp_seterr(FP_EINVAL, "%s: tensor '%s': unknown dtype %d", path, e->name, e->dtype);
    if (e->rank < 0 || e->rank > FP_ST_MAX_RANK || (e->rank && !e->shape))
        return fp_seterr(FP_EINVAL, "%s: tensor '%s': rank %d outside 0..%d", path, e->name, e->rank,
                         FP_ST_MAX_RANK);
    uint64_t numel = 1;
    for (int d = 0; d < e->rank; d++) {
        if (e->shape[d] < 0)
            return fp_seterr(FP_EINVAL, "%s: tensor '%s': shape[%d] = %lld is negative", path,
                             e->name, d, (long long)e->shape[d]);
        uint64_t v = (uint64_t)e->shape[d];
        if (v && numel > (UINT64_MAX / 8) / v)
            return fp_seterr(FP_EOVERFLOW, "%s: tensor '%s': element count overflows", path, e->name);
        numel *= v;
    }
    *nbytes = numel * esz;
    if (*nbytes && !e->data)
        return fp_seterr(FP_EINVAL, "%s: tensor '%s' has no data", path, e->name);
    return 0;
}

int fp_st_write(const char *path, const fp_st_entry *tensors, size_t n,
                const char *const *metadata, size_t n_meta)
{
    if (!path || (n && !tensors) || (n_meta && !metadata))
        return fp_seterr(FP_EINVAL, "fp_st_write: NULL argument");
    int rc = 0;
    size_t *order = malloc((n + 1) * sizeof *order);
    uint64_t *sizes = malloc((n + 1) * sizeof *sizes);
    fp_strmap seen;
    fp_sb h;
    fp_sb_init(&h);
    if (!order || !sizes || fp_strmap_init(&seen, n)) {
        free(order);
        free(sizes);
        return fp_seterr(FP_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_entry(&tensors[i], i, &sizes[i], path)))
            goto out;
        int ins = fp_strmap_put(&seen, tensors[i].name, strlen(tensors[i].name), 0, NULL);
        if (ins <= 0) {
            rc = ins < 0 ? ins : fp_seterr(FP_EINVAL, "%s: tensor name '%s' given twice", path,
                                           tensors[i].name);
            goto out;
        }
    }
    /* Widest element first (stable), so with the header padded to 8 bytes each
     * tensor starts aligned to its element size. */
    size_t k = 0;
    for (size_t w = 8; w >= 1; w /= 2)
        for (size_t i = 0; i < n; i++)
            if (fp_st_dtype_size(tensors[i].dtype) == w)
                order[k++] = i;

    fp_sb_puts(&h, "{");
    if (n_meta) {
        fp_sb_puts(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            const char *key = metadata[2 * i], *val = metadata[2 * i + 1];
            if (!key || !val) {
                rc = fp_seterr(FP_EINVAL, "%s: metadata pair %zu has a NULL key or value", path, i);
                goto out;
            }
            if (i)
                fp_sb_puts(&h, ",");
            fp_sb_json_str(&h, key, strlen(key));
            fp_sb_puts(&h, ":");
            fp_sb_json_str(&h, val, strlen(val));
        }
        fp_sb_puts(&h, "}");
    }
    uint64_t off = 0;
    for (size_t j = 0; j < n; j++) {
        const fp_st_entry *e = &tensors[order[j]];
        if (j || n_meta)
            fp_sb_puts(&h, ",");
        fp_sb_json_str(&h, e->name, strlen(e->name));
        fp_sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", fp_st_dtype_name(e->dtype));
        for (int d = 0; d < e->rank; d++)
            fp_sb_printf(&h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        fp_sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                     (unsigned long long)(off + sizes[order[j]]));
        off += sizes[order[j]];
    }
    fp_sb_puts(&h, "}");
    while (h.len % 8)
        fp_sb_puts(&h, " ");
    if ((rc = fp_sb_finish(&h)))
        goto out;

    char tmp[4200];
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
                      atomic_fetch_add(&st_tmp_counter, 1u));
    if (tn < 0 || (size_t)tn >= sizeof tmp) {
        rc = fp_seterr(FP_EINVAL, "path too long: %s", path);
        goto out;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = fp_seterr(FP_EIO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    rc = write_all(fd, len8, 8, tmp);
    if (!rc)
        rc = write_all(fd, h.p, h.len, tmp);
    for (size_t j = 0; !rc && j < n; j++)
        rc = write_all(fd, tensors[order[j]].data, sizes[order[j]], tmp);
    if (!rc && fsync(fd) != 0)
        rc = fp_seterr(FP_EIO, "fsync of %s failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = fp_seterr(FP_EIO, "close of %s failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = fp_seterr(FP_EIO, "rename %s -> %s failed: %s", tmp, path, strerror(errno));
    if (rc)
        unlink(tmp);
    else
        fsync_parent(path);
out:
    fp_sb_free(&h);
    fp_strmap_free(&seen);
    free(order);
    free(sizes);
    return rc;
}
