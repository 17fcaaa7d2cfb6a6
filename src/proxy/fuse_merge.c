/* The merged LLM of fp_proxy_fuse (proxy.h): W += (alpha/r) B A for every
 * adapted weight, in double, rounded once to the output dtype; the LLM's own
 * sharding kept (same shard files, same weight_map, index total_size
 * recomputed). Each shard is built and written before the next is touched,
 * so the host holds at most one shard's changed tensors (plus two rows of
 * doubles) beyond the read-only mapping of the input. Everything goes into a
 * sibling temp directory that is renamed into place only when complete. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dir_stage.h"
#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/safetensors.h"
#include "fuse_internal.h"

#define INDEX_NAME "model.safetensors.index.json"
#define CHUNK 65536u

/* dir/name into out (cap bytes), FP_EINVAL when it does not fit */
static int join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return fp_seterr(FP_EINVAL, "fuse: path too long: %s/%s", dir, name);
    return 0;
}

static int is_float(int dt) { return dt == FP_ST_F32 || dt == FP_ST_F16 || dt == FP_ST_BF16 || dt == FP_ST_F64; }

/* d rounded to float with round-to-odd: rounding that to a narrower format
 * (bf16, f16: at least 2 bits fewer) with round-to-nearest-even gives the
 * correctly rounded d, with no double-rounding error. */
static float f32_round_odd(double d)
{
    float f = (float)d;
    if (isnan(d) || isinf(f) || (double)f == d)
        return f;
    if (fabs((double)f) > fabs(d))
        f = nextafterf(f, 0.0f);
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 1u;
    memcpy(&f, &u, 4);
    return f;
}

static void load_d(double *dst, const unsigned char *src, int dt, size_t start, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + (start + i) * fp_st_dtype_size(dt);
        if (dt == FP_ST_F64) {
            memcpy(&dst[i], p, 8);
        } else if (dt == FP_ST_F32) {
            float f;
            memcpy(&f, p, 4);
            dst[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, p, 2);
            dst[i] = dt == FP_ST_BF16 ? fp_bf16_to_f32(h) : fp_f16_to_f32(h);
        }
    }
}

static void store_d(unsigned char *dst, int dt, size_t start, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = dst + (start + i) * fp_st_dtype_size(dt);
        if (dt == FP_ST_F64) {
            memcpy(p, &src[i], 8);
        } else if (dt == FP_ST_F32) {
            float f = (float)src[i];
            memcpy(p, &f, 4);
        } else {
            float f = f32_round_odd(src[i]);
            uint16_t h = dt == FP_ST_BF16 ? fp_f32_to_bf16(f) : fp_f32_to_f16(f);
            memcpy(p, &h, 2);
        }
    }
}

static void weight_name(char *out, size_t cap, const fp_lora_pair *p)
{
    snprintf(out, cap, "model.layers.%d.%s.%s.weight", p->layer, p->module <= 3 ? "self_attn" : "mlp",
             fp_lora_module_name(p->module));
}

/* a new buffer with t in dtype od and every pair of la on t merged */
static int merged_tensor(void **out, const fp_st_tensor *t, int od, const fp_lora_adapter *la)
{
    size_t n = (size_t)t->numel, es = fp_st_dtype_size(od);
    unsigned char *buf = malloc(n ? n * es : 1);
    int adapted = 0;
    char nm[160];
    for (size_t k = 0; k < la->n && !adapted; k++) {
        weight_name(nm, sizeof nm, &la->pairs[k]);
        adapted = !strcmp(nm, t->name);
    }
    /* adapted weights go row by row ([out, in]), others in chunks */
    size_t cols = adapted ? (size_t)t->shape[1] : CHUNK;
    double *row = malloc((cols ? cols : 1) * sizeof *row), *acc = malloc((cols ? cols : 1) * sizeof *acc);
    if (!buf || !row || !acc) {
        free(buf);
        free(row);
        free(acc);
        return fp_seterr(FP_ENOMEM, "fuse: out of host memory for %s (%zu elements)", t->name, n);
    }
    for (size_t start = 0, o = 0; start < n; start += cols, o++) {
        size_t m = n - start < cols ? n - start : cols;
        load_d(row, t->data, t->dtype, start, m);
        for (size_t k = 0; adapted && k < la->n; k++) {
            const fp_lora_pair *p = &la->pairs[k];
            weight_name(nm, sizeof nm, p);
            if (strcmp(nm, t->name))
                continue;
            double s = (double)p->alpha / (double)p->rank;
            memset(acc, 0, m * sizeof *acc);
            for (int r = 0; r < p->rank; r++) {
                double b = p->B[o * (size_t)p->rank + (size_t)r];
                const float *a = p->A + (size_t)r * (size_t)p->in;
                for (size_t i = 0; i < m; i++)
                    acc[i] += b * a[i];
            }
            for (size_t i = 0; i < m; i++)
                row[i] += s * acc[i];
        }
        store_d(buf, od, start, row, m);
    }
    free(row);
    free(acc);
    *out = buf;
    return 0;
}

/* OUT_DIR may be replaced only when it is absent, empty, or a previous merge */
static int check_out_dir(const char *out_dir, const char *llm_dir)
{
    struct stat sb;
    if (lstat(out_dir, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return fp_seterr(FP_EIO, "fuse: cannot stat %s: %s", out_dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return fp_seterr(FP_EINVAL, "fuse: the merge output %s exists and is not a directory", out_dir);
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(out_dir, a) && realpath(llm_dir, b) && !strcmp(a, b))
        return fp_seterr(FP_EINVAL, "fuse: the merge output %s is the LLM directory itself", out_dir);
    char marker[4200];
    int rc = join(marker, sizeof marker, out_dir, FP_FUSE_MARKER);
    if (rc)
        return rc;
    if (access(marker, F_OK) == 0)
        return 0;
    DIR *d = opendir(out_dir);
    if (!d)
        return fp_seterr(FP_EIO, "fuse: cannot read %s: %s", out_dir, strerror(errno));
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));)
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    if (!empty)
        return fp_seterr(FP_EINVAL, "fuse: %s is not empty and not a previous merge output (no %s): refusing to "
                                    "replace it", out_dir, FP_FUSE_MARKER);
    return 0;
}

/* the LLM's index (NULL when it is not sharded), to be written back with the
 * new total_size; fp_st_open_dir has already checked it against the shards */
static int read_index(cJSON **index, const char *llm_dir)
{
    char path[4200];
    *index = NULL;
    int rc = join(path, sizeof path, llm_dir, INDEX_NAME);
    if (rc || access(path, F_OK) != 0)
        return rc;
    void *text = NULL;
    size_t len = 0;
    if ((rc = fp_read_file(&text, &len, path, 100u << 20)))
        return rc;
    *index = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(*index)) {
        cJSON_Delete(*index);
        *index = NULL;
        return fp_seterr(FP_EFORMAT, "fuse: %s is not a JSON object", path);
    }
    return 0;
}

/* copies dir/name to out/name when present (required: must be) */
static int copy_small(const char *dir, const char *out, const char *name, int required)
{
    char a[4200], b[4200];
    int rc = join(a, sizeof a, dir, name);
    if (rc || (rc = join(b, sizeof b, out, name)))
        return rc;
    if (!required && access(a, F_OK) != 0)
        return 0;
    void *data = NULL;
    size_t len = 0;
    rc = fp_read_file(&data, &len, a, (size_t)1 << 30);
    if (!rc)
        rc = fp_write_file_atomic(b, data, len, 0644);
    free(data);
    return rc;
}

/* config.json; a forced dtype also becomes its torch_dtype (as save_pretrained
 * of a model in that dtype writes it) */
static int write_config(const char *llm_dir, const char *out, int merge_dtype)
{
    if (!merge_dtype)
        return copy_small(llm_dir, out, "config.json", 1);
    char a[4200], b[4200];
    int rc = join(a, sizeof a, llm_dir, "config.json");
    if (rc || (rc = join(b, sizeof b, out, "config.json")))
        return rc;
    void *data = NULL;
    size_t len = 0;
    rc = fp_read_file(&data, &len, a, 16u << 20);
    if (rc)
        return rc;
    cJSON *c = cJSON_ParseWithLength(data, len);
    free(data);
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return fp_seterr(FP_EFORMAT, "fuse: %s is not a JSON object", a);
    }
    const char *td = merge_dtype == FP_ST_F32 ? "float32" : merge_dtype == FP_ST_BF16 ? "bfloat16" : "float16";
    cJSON_DeleteItemFromObjectCaseSensitive(c, "torch_dtype");
    cJSON_AddStringToObject(c, "torch_dtype", td);
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    if (!text)
        return fp_seterr(FP_ENOMEM, "fuse: out of host memory");
    rc = fp_write_file_atomic(b, text, strlen(text), 0644);
    free(text);
    return rc;
}

/* writes every shard, the index and the small files into tmp */
static int write_all(const char *tmp, const char *llm_dir, const fp_st_file *st, const fp_lora_adapter *la,
                     int merge_dtype)
{
    cJSON *index = NULL;
    int rc = read_index(&index, llm_dir);
    if (rc)
        return rc;
    size_t n = fp_st_count(st), ns = fp_st_file_count(st);
    fp_st_entry *e = calloc(n ? n : 1, sizeof *e);
    void **owned = calloc(n ? n : 1, sizeof *owned);
    if (!e || !owned)
        rc = fp_seterr(FP_ENOMEM, "fuse: out of host memory");
    uint64_t total = 0;
    for (size_t s = 0; s < ns && !rc; s++) {
        size_t m = 0, lo = 0, hi = 0;
        const char *shard = fp_st_file_at(st, s, &lo, &hi), *slash = strrchr(shard, '/');
        shard = slash ? slash + 1 : shard; /* a plain name in llm_dir (fp_st_open_dir checked) */
        for (size_t i = lo; i < hi && !rc; i++) {
            const fp_st_tensor *t = fp_st_at(st, i);
            int od = merge_dtype && is_float(t->dtype) ? merge_dtype : t->dtype;
            int adapted = 0;
            char nm[160];
            for (size_t k = 0; k < la->n && !adapted; k++) {
                weight_name(nm, sizeof nm, &la->pairs[k]);
                adapted = !strcmp(nm, t->name);
            }
            e[m] = (fp_st_entry){t->name, od, t->rank, t->shape, t->data};
            if (adapted || od != t->dtype) {
                rc = merged_tensor(&owned[m], t, od, la);
                e[m].data = owned[m];
            }
            total += t->numel * fp_st_dtype_size(od);
            m++;
        }
        if (!rc) {
            char path[4400];
            const char *meta[2] = {"format", "pt"};
            if (!(rc = join(path, sizeof path, tmp, shard)))
                rc = fp_st_write(path, e, m, meta, 1);
        }
        for (size_t i = 0; i < m; i++) {
            free(owned[i]);
            owned[i] = NULL;
        }
    }
    free(e);
    free(owned);
    if (!rc && index) {
        /* the LLM's index with total_size of what was written (an integer
         * string: cJSON numbers are doubles and a 70B model passes 2^53 bits) */
        cJSON *meta = cJSON_GetObjectItemCaseSensitive(index, "metadata");
        if (!cJSON_IsObject(meta)) {
            cJSON_DeleteItemFromObjectCaseSensitive(index, "metadata");
            meta = cJSON_AddObjectToObject(index, "metadata");
        }
        char num[32];
        snprintf(num, sizeof num, "%llu", (unsigned long long)total);
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "total_size");
        char *text = NULL;
        if (!meta || !cJSON_AddRawToObject(meta, "total_size", num) || !(text = cJSON_Print(index)))
            rc = fp_seterr(FP_ENOMEM, "fuse: out of host memory");
        char path[4400];
        if (!rc)
            rc = join(path, sizeof path, tmp, INDEX_NAME);
        if (!rc)
            rc = fp_write_file_atomic(path, text, strlen(text), 0644);
        free(text);
    }
    cJSON_Delete(index);
    if (!rc)
        rc = write_config(llm_dir, tmp, merge_dtype);
    static const char *extra[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "tokenizer.model"};
    for (size_t i = 0; i < sizeof extra / sizeof *extra && !rc; i++)
        rc = copy_small(llm_dir, tmp, extra[i], 0);
    if (!rc) {
        const char *dn = merge_dtype ? fp_st_dtype_name(merge_dtype) : "keep";
        char marker[4400], text[160];
        int tl = snprintf(text, sizeof text, "{\"fedproxy_merge\": 1, \"merge_dtype\": \"%s\", \"pairs\": %zu}\n",
                          dn, la->n);
        if (!(rc = join(marker, sizeof marker, tmp, FP_FUSE_MARKER)))
            rc = fp_write_file_atomic(marker, text, (size_t)tl, 0644);
    }
    return rc;
}

int fp_fuse_write_merged(const char *llm_dir, const fp_lora_adapter *la, const char *out_dir, int merge_dtype)
{
    if (merge_dtype && merge_dtype != FP_ST_F32 && merge_dtype != FP_ST_BF16 && merge_dtype != FP_ST_F16)
        return fp_seterr(FP_EINVAL, "fuse: merge dtype %d is not keep (0), F32, BF16 or F16", merge_dtype);
    int rc = check_out_dir(out_dir, llm_dir);
    if (rc)
        return rc;
    fp_st_file *st = NULL;
    if ((rc = fp_st_open_dir(&st, llm_dir)))
        return rc;
    /* every pair must find a floating [out, in] weight before anything is written */
    for (size_t k = 0; k < la->n && !rc; k++) {
        const fp_lora_pair *p = &la->pairs[k];
        char nm[160];
        weight_name(nm, sizeof nm, p);
        const fp_st_tensor *t = fp_st_find(st, nm);
        if (!t)
            rc = fp_seterr(FP_EFORMAT, "fuse: the LLM in %s has no tensor %s", llm_dir, nm);
        else if (t->rank != 2 || t->shape[0] != p->out || t->shape[1] != p->in || !is_float(t->dtype))
            rc = fp_seterr(FP_EFORMAT, "fuse: %s in %s is not a floating [%d, %d] weight", nm, llm_dir, p->out,
                           p->in);
    }
    char tmp[4400];
    if (!rc)
        rc = fp_dir_stage(tmp, sizeof tmp, out_dir);
    if (rc) {
        fp_st_close(st);
        return rc;
    }
    rc = write_all(tmp, llm_dir, st, la, merge_dtype);
    fp_st_close(st);
    if (!rc)
        rc = fp_dir_commit(tmp, out_dir);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", fp_errmsg());
        fp_rmtree(tmp);
        return fp_seterr(rc, "%s", msg);
    }
    return 0;
}
