/* safetensors reader: maps one file and validates its header completely before
 * any tensor is handed out, so the engine can trust offsets and shapes. */
#include "model/safetensors_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_internal.h"

/* A header larger than this is surely not a real checkpoint's (a 100k-tensor
 * model needs ~10 MiB); refuse before cJSON allocates for it. */
#define ST_MAX_HEADER (100u << 20)

int st_file_new(fp_st_file **out)
{
    fp_st_file *f = calloc(1, sizeof *f);
    if (!f)
        return fp_seterr(FP_ENOMEM, "out of memory for a safetensors handle");
    int rc = fp_strmap_init(&f->by_name, 64);
    if (rc) {
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void fp_st_close(fp_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_maps; i++) {
        if (f->maps[i].base)
            munmap(f->maps[i].base, f->maps[i].size);
        free(f->maps[i].path);
    }
    free(f->maps);
    for (size_t i = 0; i < f->n; i++)
        free((char *)f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->meta);
    fp_strmap_free(&f->by_name);
    free(f);
}

size_t fp_st_count(const fp_st_file *f) { return f ? f->n : 0; }

size_t fp_st_file_count(const fp_st_file *f) { return f ? f->n_maps : 0; }

const char *fp_st_file_at(const fp_st_file *f, size_t i, size_t *first, size_t *end)
{
    if (!f || i >= f->n_maps)
        return NULL;
    if (first)
        *first = f->maps[i].first;
    if (end)
        *end = i + 1 < f->n_maps ? f->maps[i + 1].first : f->n;
    return f->maps[i].path;
}

const fp_st_tensor *fp_st_at(const fp_st_file *f, size_t i)
{
    return f && i < f->n ? &f->tensors[i] : NULL;
}

const fp_st_tensor *fp_st_find(const fp_st_file *f, const char *name)
{
    int64_t idx;
    if (!f || !name || !fp_strmap_get(&f->by_name, name, strlen(name), &idx))
        return NULL;
    return &f->tensors[idx];
}

size_t fp_st_metadata_count(const fp_st_file *f) { return f ? f->n_meta : 0; }

void fp_st_metadata_at(const fp_st_file *f, size_t i, const char **key, const char **value)
{
    int ok = f && i < f->n_meta;
    if (key)
        *key = ok ? f->meta[2 * i] : NULL;
    if (value)
        *value = ok ? f->meta[2 * i + 1] : NULL;
}

const char *fp_st_metadata(const fp_st_file *f, const char *key)
{
    for (size_t i = 0; f && key && i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || floor(d) != d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* One parsed tensor before it joins the set. */
struct pending {
    fp_st_tensor t;
    uint64_t begin, end;
};

static int cmp_pending(const void *a, const void *b)
{
    const struct pending *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_tensor(struct pending *p, const cJSON *e, const char *path, uint64_t data_size)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "dtype")          ? &dtype
                             : !strcmp(c->string, "shape")        ? &shape
                             : !strcmp(c->string, "data_offsets") ? &offs
                                                                  : NULL;
        if (!slot)
            return fp_seterr(FP_EFORMAT, "%s: tensor '%s': unexpected key '%s'", path, name, c->string);
        if (*slot)
            return fp_seterr(FP_EFORMAT, "%s: tensor '%s': key '%s' appears twice", path, name,
                             c->string);
        *slot = c;
    }
    if (!dtype || !shape || !offs)
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': missing '%s'", path, name,
                         !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dtype))
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': dtype is not a string", path, name);
    int dt = fp_st_dtype_parse(dtype->valuestring);
    if (!dt)
        return fp_seterr(FP_EFORMAT,
                         "%s: tensor '%s': unsupported dtype '%s' (F32, F16, BF16, F64, I32, I64, U8)",
                         path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': shape is not an array", path, name);
    int rank = cJSON_GetArraySize(shape);
    if (rank > FP_ST_MAX_RANK)
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': rank %d exceeds the maximum %d", path, name,
                         rank, FP_ST_MAX_RANK);
    memset(p, 0, sizeof *p);
    p->t.dtype = dt;
    p->t.rank = rank;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return fp_seterr(FP_EFORMAT,
                             "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        if (v && numel > UINT64_MAX / v)
            return fp_seterr(FP_EFORMAT, "%s: tensor '%s': element count overflows", path, name);
        numel *= v;
        p->t.shape[i] = (int64_t)v;
    }
    uint64_t esz = fp_st_dtype_size(dt);
    if (numel > UINT64_MAX / esz)
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': byte size overflows", path, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &p->begin) ||
        !json_uint(offs->child->next, &p->end))
        return fp_seterr(FP_EFORMAT,
                         "%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                         path, name);
    if (p->begin > p->end)
        return fp_seterr(FP_EFORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", path, name,
                         (unsigned long long)p->begin, (unsigned long long)p->end);
    if (p->end > data_size)
        return fp_seterr(FP_EFORMAT,
                         "%s: tensor '%s' ends at data byte %llu, past the data section's %llu bytes",
                         path, name, (unsigned long long)p->end, (unsigned long long)data_size);
    if (p->end - p->begin != numel * esz)
        return fp_seterr(FP_EFORMAT,
                         "%s: tensor '%s' spans %llu bytes but shape x %s needs %llu bytes", path, name,
                         (unsigned long long)(p->end - p->begin), dtype->valuestring,
                         (unsigned long long)(numel * esz));
    p->t.numel = numel;
    p->t.nbytes = (size_t)(numel * esz);
    return 0;
}

static int parse_metadata(char ***kv, size_t *n, const cJSON *m, const char *path)
{
    *kv = NULL;
    *n = 0;
    if (cJSON_IsNull(m))
        return 0;
    if (!cJSON_IsObject(m))
        return fp_seterr(FP_EFORMAT, "%s: __metadata__ is not an object", path);
    size_t cnt = (size_t)cJSON_GetArraySize(m);
    char **a = calloc(2 * cnt + 1, sizeof *a);
    if (!a)
        return fp_seterr(FP_ENOMEM, "%s: out of memory for metadata", path);
    size_t i = 0;
    for (const cJSON *c = m->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c)) {
            for (size_t j = 0; j < 2 * i; j++)
                free(a[j]);
            free(a);
            return fp_seterr(FP_EFORMAT, "%s: __metadata__ value of '%s' is not a string", path,
                             c->string);
        }
        a[2 * i] = strdup(c->string);
        a[2 * i + 1] = strdup(c->valuestring);
        if (!a[2 * i] || !a[2 * i + 1]) {
            for (size_t j = 0; j < 2 * i + 2; j++)
                free(a[j]);
            free(a);
            return fp_seterr(FP_ENOMEM, "%s: out of memory for metadata", path);
        }
    }
    *kv = a;
    *n = cnt;
    return 0;
}

static int map_file(struct st_map *m, const char *path)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fp_seterr(errno == ENOENT ? FP_ENOTFOUND : FP_EIO, "cannot open %s: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fp_seterr(FP_EIO, "%s is not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return fp_seterr(FP_EIO, "cannot map %s: %s", path, strerror(e));
        }
        m->base = p;
    }
    close(fd); /* the mapping stays valid */
    m->path = strdup(path);
    if (!m->path) {
        if (m->base)
            munmap(m->base, m->size);
        return fp_seterr(FP_ENOMEM, "out of memory");
    }
    return 0;
}

/* Checks the length prefix and parses the JSON header (an object, nothing but
 * whitespace after it); *hlen_out is the header's length in bytes. */
static int parse_header(const struct st_map *m, cJSON **root_out, uint64_t *hlen_out, const char *path)
{
    const unsigned char *b = m->base;
    if (m->size < 8)
        return fp_seterr(FP_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                         path, m->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | b[i];
    if (hlen > ST_MAX_HEADER)
        return fp_seterr(FP_EFORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > m->size - 8)
        return fp_seterr(FP_EFORMAT, "%s: header length %llu is past the file's %zu bytes", path,
                         (unsigned long long)hlen, m->size);
    const char *h = (const char *)b + 8;
    if (memchr(h, '\0', hlen))
        return fp_seterr(FP_EFORMAT, "%s: header contains a NUL byte", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, hlen, &end, 0);
    if (!root)
        return fp_seterr(FP_EFORMAT, "%s: header is not valid JSON (near byte %lld of the header)",
                         path, end ? (long long)(end - h) : -1LL);
    for (const char *q = end; q < h + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            cJSON_Delete(root);
            return fp_seterr(FP_EFORMAT, "%s: trailing bytes after the header's JSON", path);
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fp_seterr(FP_EFORMAT, "%s: header is not a JSON object", path);
    }
    *root_out = root;
    *hlen_out = hlen;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return fp_seterr(FP_ENOMEM, "out of memory (%zu entries)", nc);
    *p = q;
    *cap = nc;
    return 0;
}

int st_file_append(fp_st_file *f, const char *path, int keep_meta)
{
    int rc = grow((void **)&f->maps, &f->cap_maps, f->n_maps + 1, sizeof *f->maps);
    if (rc)
        return rc;
    struct st_map *m = &f->maps[f->n_maps];
    if ((rc = map_file(m, path)))
        return rc;
    m->first = f->n;
    f->n_maps++; /* owned by f from here on, also on failure below */

    cJSON *root = NULL;
    uint64_t hlen = 0;
    if ((rc = parse_header(m, &root, &hlen, path)))
        return rc;
    const unsigned char *data = (const unsigned char *)m->base + 8 + hlen;
    uint64_t data_size = m->size - 8 - hlen;

    size_t cnt = (size_t)cJSON_GetArraySize(root);
    struct pending *pend = calloc(cnt + 1, sizeof *pend);
    char **meta = NULL;
    size_t n_meta = 0, np = 0;
    int seen_meta = 0;
    fp_strmap local;
    if (!pend || fp_strmap_init(&local, cnt)) {
        free(pend);
        cJSON_Delete(root);
        return fp_seterr(FP_ENOMEM, "%s: out of memory for %zu tensors", path, cnt);
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (seen_meta) {
                rc = fp_seterr(FP_EFORMAT, "%s: __metadata__ appears twice", path);
                goto out;
            }
            seen_meta = 1;
            if ((rc = parse_metadata(&meta, &n_meta, e, path)))
                goto out;
            continue;
        }
        int ins = fp_strmap_put(&local, e->string, strlen(e->string), (int64_t)np, NULL);
        if (ins < 0) {
            rc = ins;
            goto out;
        }
        if (ins == 0) {
            rc = fp_seterr(FP_EFORMAT, "%s: tensor name '%s' appears twice", path, e->string);
            goto out;
        }
        if (fp_strmap_get(&f->by_name, e->string, strlen(e->string), NULL)) {
            rc = fp_seterr(FP_EFORMAT, "%s: tensor '%s' is also in another shard", path, e->string);
            goto out;
        }
        if ((rc = parse_tensor(&pend[np], e, path, data_size)))
            goto out;
        pend[np].t.name = e->string; /* borrowed from root until copied below */
        np++;
    }
    qsort(pend, np, sizeof *pend, cmp_pending);
    /* No overlap: sorted by begin, every non-empty range must start at or after
     * the furthest end seen so far. */
    uint64_t max_end = 0;
    const char *max_name = NULL;
    for (size_t i = 0; i < np; i++) {
        if (pend[i].begin == pend[i].end)
            continue;
        if (max_name && pend[i].begin < max_end) {
            rc = fp_seterr(FP_EFORMAT, "%s: tensors '%s' and '%s' overlap (data bytes %llu..%llu)",
                           path, max_name, pend[i].t.name, (unsigned long long)pend[i].begin,
                           (unsigned long long)(max_end < pend[i].end ? max_end : pend[i].end));
            goto out;
        }
        max_end = pend[i].end;
        max_name = pend[i].t.name;
    }
    if ((rc = grow((void **)&f->tensors, &f->cap, f->n + np, sizeof *f->tensors)))
        goto out;
    size_t base_n = f->n;
    for (size_t i = 0; i < np; i++) {
        fp_st_tensor t = pend[i].t;
        t.data = data + pend[i].begin;
        t.name = strdup(pend[i].t.name);
        int ins = t.name ? fp_strmap_put(&f->by_name, t.name, strlen(t.name), (int64_t)f->n, NULL)
                         : FP_ENOMEM;
        if (ins != 1) {
            free((char *)t.name);
            /* roll back this file's tensors so f stays consistent */
            for (size_t j = base_n; j < f->n; j++)
                free((char *)f->tensors[j].name);
            f->n = base_n;
            fp_strmap_free(&f->by_name);
            rc = fp_seterr(FP_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        f->tensors[f->n++] = t;
    }
    if (keep_meta) {
        f->meta = meta;
        f->n_meta = n_meta;
        meta = NULL;
        n_meta = 0;
    }
    rc = 0;
out:
    for (size_t i = 0; i < 2 * n_meta; i++)
        free(meta[i]);
    free(meta);
    fp_strmap_free(&local);
    free(pend);
    cJSON_Delete(root);
    return rc;
}

int fp_st_open(fp_st_file **out, const char *path)
{
    if (!out || !path)
        return fp_seterr(FP_EINVAL, "fp_st_open: NULL argument");
    *out = NULL;
    fp_st_file *f;
    int rc = st_file_new(&f);
    if (rc)
        return rc;
    if ((rc = st_file_append(f, path, 1))) {
        fp_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}
