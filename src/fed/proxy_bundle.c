/* The proxy bundle (format in fed.h): the proxy directory packed into the one
 * payload the server signs and sends once per client. Unpacking trusts nothing
 * in it: names are plain file names (no path can escape the directory), sizes
 * must add up exactly, every file's BLAKE2b must match, a sharded proxy's
 * index must name only shards the bundle carries, and nothing is written
 * until all of that has been checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"

#define BUNDLE_MAGIC "FPBUNDL1"
#define BUNDLE_MAX_SHARDS 256u
#define BUNDLE_MAX_FILES (4u + BUNDLE_MAX_SHARDS) /* config, tokenizer, proxy.json, index + shards */
#define INDEX_NAME "model.safetensors.index.json"
#define BUNDLE_NAME_MAX 64u
#define BUNDLE_FILE_MAX ((uint64_t)1 << 34)

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A plain file name: no separators, no "." or "..", no hidden or odd characters. */
static int name_ok(const char *n, size_t len)
{
    if (len < 1 || len > BUNDLE_NAME_MAX || n[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int fp_fed_bundle_is(const uint8_t *data, size_t len)
{
    return data && len >= 12 && !memcmp(data, BUNDLE_MAGIC, 8);
}

/* The shard file names a model.safetensors.index.json names (each once, in
 * order of first mention) into names[0..*n); each must be a safe plain name. */
static int index_shards(char **names, uint32_t *n, uint32_t cap, const char *text, size_t len, const char *what)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    int rc = 0;
    *n = 0;
    if (!cJSON_IsObject(wm))
        rc = fp_seterr(FP_EFORMAT, "proxy bundle: %s has no \"weight_map\" object", what);
    for (const cJSON *e = wm ? wm->child : NULL; e && !rc; e = e->next) {
        const char *s = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!s || !name_ok(s, strlen(s)) || !strcmp(s, INDEX_NAME)) {
            rc = fp_seterr(FP_EFORMAT, "proxy bundle: %s maps %s to an unsafe shard name", what, e->string);
            break;
        }
        uint32_t j = 0;
        while (j < *n && strcmp(names[j], s))
            j++;
        if (j < *n)
            continue;
        if (*n == cap) {
            rc = fp_seterr(FP_EFORMAT, "proxy bundle: %s names more than %u shards", what, cap);
            break;
        }
        if (!(names[(*n)++] = strdup(s)))
            rc = fp_seterr(FP_ENOMEM, "proxy bundle: out of memory");
    }
    if (!rc && !*n)
        rc = fp_seterr(FP_EFORMAT, "proxy bundle: %s has an empty weight_map", what);
    cJSON_Delete(root);
    return rc;
}

int fp_fed_bundle_pack(uint8_t **out, size_t *len, const char *dir)
{
    if (!out || !len || !dir)
        return fp_seterr(FP_EINVAL, "proxy bundle: NULL argument");
    *out = NULL;
    *len = 0;
    /* the files, in bundle order: config.json, the weights (model.safetensors,
     * or the index and every shard it names: what fp_st_open_dir reads), then
     * tokenizer.json and proxy.json when present */
    char *fname[BUNDLE_MAX_FILES] = {0};
    int required[BUNDLE_MAX_FILES] = {0};
    uint32_t nf = 0;
    char ipath[FP_FED_PATH_MAX + 64];
    snprintf(ipath, sizeof ipath, "%s/%s", dir, INDEX_NAME);
    struct stat sb;
    int sharded = stat(ipath, &sb) == 0;
    int rc = 0;
    fname[nf] = strdup("config.json");
    required[nf++] = 1;
    if (sharded) {
        void *itext = NULL;
        size_t ilen = 0;
        uint32_t ns = 0;
        rc = fp_read_file(&itext, &ilen, ipath, (size_t)100 << 20);
        if (!rc) {
            fname[nf] = strdup(INDEX_NAME);
            required[nf++] = 1;
            rc = index_shards(fname + nf, &ns, BUNDLE_MAX_SHARDS, itext, ilen, ipath);
            for (uint32_t i = 0; i < ns; i++)
                required[nf++] = 1;
        }
        free(itext);
    } else {
        fname[nf] = strdup("model.safetensors");
        required[nf++] = 1;
    }
    fname[nf++] = strdup("tokenizer.json");
    fname[nf++] = strdup("proxy.json");
    for (uint32_t i = 0; i < nf && !rc; i++)
        if (!fname[i])
            rc = fp_seterr(FP_ENOMEM, "proxy bundle: out of memory");
    void **data = calloc(nf, sizeof *data);
    size_t *size = calloc(nf, sizeof *size);
    const char **name = calloc(nf, sizeof *name);
    if (!rc && (!data || !size || !name))
        rc = fp_seterr(FP_ENOMEM, "proxy bundle: out of memory");
    uint32_t n = 0;
    size_t total = 12;
    for (uint32_t i = 0; i < nf && !rc; i++) {
        char path[FP_FED_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", dir, fname[i]);
        if (stat(path, &sb) != 0) {
            if (required[i])
                rc = fp_seterr(FP_ENOTFOUND, "proxy bundle: %s is missing%s", path,
                               sharded && i > 0 ? " (named in " INDEX_NAME ")" : "");
            continue;
        }
        rc = fp_read_file(&data[n], &size[n], path, (size_t)BUNDLE_FILE_MAX);
        if (rc) {
            rc = fp_adderr(rc, "proxy bundle");
            break;
        }
        name[n] = fname[i];
        total += 2 + strlen(name[n]) + 8 + 32 + size[n];
        n++;
    }
    uint8_t *b = rc ? NULL : malloc(total);
    if (!rc && !b)
        rc = fp_seterr(FP_ENOMEM, "proxy bundle: out of memory for %zu bytes", total);
    if (!rc) {
        memcpy(b, BUNDLE_MAGIC, 8);
        b[8] = (uint8_t)n;
        b[9] = (uint8_t)(n >> 8);
        b[10] = b[11] = 0;
        size_t off = 12;
        for (uint32_t i = 0; i < n; i++) {
            size_t nl = strlen(name[i]);
            put_u16(b + off, (uint16_t)nl);
            memcpy(b + off + 2, name[i], nl);
            off += 2 + nl;
            put_u64(b + off, size[i]);
            crypto_generichash(b + off + 8, 32, data[i], size[i], NULL, 0);
            off += 40;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (size[i])
                memcpy(b + off, data[i], size[i]);
            off += size[i];
        }
        *out = b;
        *len = total;
    }
    for (uint32_t i = 0; data && i < n; i++)
        free(data[i]);
    for (uint32_t i = 0; i < nf; i++)
        free(fname[i]);
    free(data);
    free(size);
    free(name);
    return rc;
}

typedef struct bentry {
    char name[BUNDLE_NAME_MAX + 1];
    uint64_t size;
    const uint8_t *hash;
    const uint8_t *data;
} bentry;

static int unpack_checked(bentry *e, uint32_t n, const uint8_t *d, size_t len, const char *dir);

int fp_fed_bundle_unpack(const uint8_t *d, size_t len, const char *dir)
{
    if (!d || !dir || !dir[0])
        return fp_seterr(FP_EINVAL, "proxy bundle: NULL argument or empty directory name");
    if (!fp_fed_bundle_is(d, len))
        return fp_seterr(FP_EFORMAT, "proxy bundle: not a bundle (%zu bytes, no " BUNDLE_MAGIC " magic)", len);
    uint32_t n = (uint32_t)get_le(d + 8, 4);
    if (n < 1 || n > BUNDLE_MAX_FILES)
        return fp_seterr(FP_EFORMAT, "proxy bundle: %u files (1..%u allowed)", n, BUNDLE_MAX_FILES);
    bentry *e = calloc(n, sizeof *e);
    if (!e)
        return fp_seterr(FP_ENOMEM, "proxy bundle: out of memory");
    int rc = unpack_checked(e, n, d, len, dir);
    free(e);
    return rc;
}

static int unpack_checked(bentry *e, uint32_t n, const uint8_t *d, size_t len, const char *dir)
{
    size_t off = 12;
    uint64_t body = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < 2)
            return fp_seterr(FP_EFORMAT, "proxy bundle: truncated in entry %u", i);
        size_t nl = (size_t)get_le(d + off, 2);
        if (nl < 1 || nl > BUNDLE_NAME_MAX || len - off - 2 < nl + 40)
            return fp_seterr(FP_EFORMAT, "proxy bundle: entry %u: name of %zu bytes, or truncated", i, nl);
        memcpy(e[i].name, d + off + 2, nl);
        e[i].name[nl] = '\0';
        if (!name_ok(e[i].name, nl) || strlen(e[i].name) != nl)
            return fp_seterr(FP_EFORMAT, "proxy bundle: entry %u has an unsafe file name", i);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(e[j].name, e[i].name))
                return fp_seterr(FP_EFORMAT, "proxy bundle: %s appears twice", e[i].name);
        off += 2 + nl;
        e[i].size = get_le(d + off, 8);
        e[i].hash = d + off + 8;
        off += 40;
        if (e[i].size > BUNDLE_FILE_MAX || body + e[i].size < body)
            return fp_seterr(FP_EFORMAT, "proxy bundle: %s claims %llu bytes", e[i].name,
                             (unsigned long long)e[i].size);
        body += e[i].size;
    }
    if ((uint64_t)(len - off) != body)
        return fp_seterr(FP_EFORMAT, "proxy bundle: the entries add up to %llu bytes of content, the bundle has %zu",
                         (unsigned long long)body, len - off);
    for (uint32_t i = 0; i < n; i++) {
        e[i].data = d + off;
        off += (size_t)e[i].size;
        uint8_t h[32];
        crypto_generichash(h, 32, e[i].data, (size_t)e[i].size, NULL, 0);
        if (sodium_memcmp(h, e[i].hash, 32))
            return fp_seterr(FP_ECRYPTO, "proxy bundle: %s does not match its BLAKE2b hash", e[i].name);
    }
    /* a sharded proxy: every shard its index names is in the bundle */
    const bentry *index = NULL;
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, INDEX_NAME))
            index = &e[i];
    if (index) {
        char *shard[BUNDLE_MAX_SHARDS];
        uint32_t ns = 0;
        int rc = index_shards(shard, &ns, BUNDLE_MAX_SHARDS, (const char *)index->data, (size_t)index->size,
                              INDEX_NAME " in the bundle");
        for (uint32_t k = 0; k < ns; k++) {
            uint32_t j = 0;
            while (j < n && strcmp(e[j].name, shard[k]))
                j++;
            if (!rc && j == n)
                rc = fp_seterr(FP_EFORMAT, "proxy bundle: %s names shard %s, which the bundle lacks", INDEX_NAME,
                               shard[k]);
            free(shard[k]);
        }
        if (rc)
            return rc;
    }
    int rc = fp_mkdirs(dir, 0755);
    if (rc)
        return fp_adderr(rc, "proxy bundle: cannot create %s", dir);
    /* a stale index from an earlier sharded bundle would shadow model.safetensors */
    if (!index) {
        char ip[FP_FED_PATH_MAX + 64];
        int pl = snprintf(ip, sizeof ip, "%s/%s", dir, INDEX_NAME);
        if (pl > 0 && (size_t)pl < sizeof ip && unlink(ip) != 0 && errno != ENOENT)
            return fp_seterr(FP_EIO, "proxy bundle: cannot remove the stale %s: %s", ip, strerror(errno));
    }
    for (uint32_t i = 0; i < n && !rc; i++) {
        char path[FP_FED_PATH_MAX + BUNDLE_NAME_MAX + 2];
        int pl = snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        if (pl < 0 || (size_t)pl >= sizeof path)
            return fp_seterr(FP_EINVAL, "proxy bundle: directory name too long");
        rc = fp_write_file_atomic(path, e[i].data, (size_t)e[i].size, 0644);
    }
    return rc;
}
