/* Sharded checkpoints: DIR/model.safetensors.index.json maps every tensor name to
 * the shard file holding it. We open every shard into one fp_st_file and then
 * check the index against what the shards really contain, so a stale or
 * hand-edited index is caught at load time rather than as a missing weight. */
#include "model/safetensors_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"

#define INDEX_NAME "model.safetensors.index.json"

static int join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return fp_seterr(FP_EINVAL, "path too long: %s/%s", dir, name);
    return 0;
}

/* A shard name must be a plain file name in DIR: an index must not make us open
 * files elsewhere. */
static int shard_name_ok(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static int open_index(fp_st_file *f, const char *dir, const char *index_path)
{
    void *text = NULL;
    size_t len = 0;
    int rc = fp_read_file(&text, &len, index_path, 100u << 20);
    if (rc)
        return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root)
        return fp_seterr(FP_EFORMAT, "%s: not valid JSON", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    size_t n_shards = 0;
    const char **shards = NULL;
    size_t *first = NULL; /* first tensor index of each shard in f */
    fp_strmap names, shard_ids;
    int have_maps = 0;
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        rc = fp_seterr(FP_EFORMAT, "%s: no \"weight_map\" object", index_path);
        goto out;
    }
    size_t cnt = (size_t)cJSON_GetArraySize(wm);
    shards = calloc(cnt + 1, sizeof *shards);
    first = calloc(cnt + 2, sizeof *first);
    if (!shards || !first || fp_strmap_init(&names, cnt)) {
        rc = fp_seterr(FP_ENOMEM, "%s: out of memory", index_path);
        goto out;
    }
    if (fp_strmap_init(&shard_ids, 16)) {
        fp_strmap_free(&names);
        rc = FP_ENOMEM;
        goto out;
    }
    have_maps = 1;
    /* Pass 1: the shard list in order of first mention, and shape checks. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            rc = fp_seterr(FP_EFORMAT, "%s: weight_map entry '%s' is not a file name in %s",
                           index_path, e->string, dir);
            goto out;
        }
        int ins = fp_strmap_put(&names, e->string, strlen(e->string), 0, NULL);
        if (ins <= 0) {
            rc = ins < 0 ? ins
                         : fp_seterr(FP_EFORMAT, "%s: tensor '%s' appears twice in weight_map",
                                     index_path, e->string);
            goto out;
        }
        const char *s = e->valuestring;
        ins = fp_strmap_put(&shard_ids, s, strlen(s), (int64_t)n_shards, NULL);
        if (ins < 0) {
            rc = ins;
            goto out;
        }
        if (ins == 1)
            shards[n_shards++] = s;
    }
    if (n_shards == 0) {
        rc = fp_seterr(FP_EFORMAT, "%s: weight_map is empty", index_path);
        goto out;
    }
    for (size_t i = 0; i < n_shards; i++) {
        char p[4096];
        if ((rc = join(p, sizeof p, dir, shards[i])))
            goto out;
        first[i] = f->n;
        if ((rc = st_file_append(f, p, i == 0))) {
            rc = fp_adderr(rc, "%s", index_path);
            goto out;
        }
    }
    first[n_shards] = f->n;
    /* Pass 2: each indexed name must be in the shard the index names. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        int64_t sid = 0;
        fp_strmap_get(&shard_ids, e->valuestring, strlen(e->valuestring), &sid);
        const fp_st_tensor *t = fp_st_find(f, e->string);
        size_t idx = t ? (size_t)(t - f->tensors) : 0;
        if (!t || idx < first[sid] || idx >= first[sid + 1]) {
            rc = fp_seterr(FP_EFORMAT, "%s: tensor '%s' is indexed in shard %s but %s", index_path,
                           e->string, e->valuestring,
                           t ? "lives in another shard" : "is not in that shard");
            goto out;
        }
    }
    rc = 0;
out:
    if (have_maps) {
        fp_strmap_free(&names);
        fp_strmap_free(&shard_ids);
    }
    free(shards);
    free(first);
    cJSON_Delete(root);
    return rc;
}

int fp_st_open_dir(fp_st_file **out, const char *dir)
{
    if (!out || !dir)
        return fp_seterr(FP_EINVAL, "fp_st_open_dir: NULL argument");
    *out = NULL;
    char p[4096];
    int rc = join(p, sizeof p, dir, INDEX_NAME);
    if (rc)
        return rc;
    if (access(p, F_OK) != 0) {
        if ((rc = join(p, sizeof p, dir, "model.safetensors")))
            return rc;
        if (access(p, F_OK) != 0)
            return fp_seterr(FP_ENOTFOUND, "%s: neither %s nor model.safetensors exists", dir,
                             INDEX_NAME);
        return fp_st_open(out, p);
    }
    fp_st_file *f;
    if ((rc = st_file_new(&f)))
        return rc;
    if ((rc = open_index(f, dir, p))) {
        fp_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}
