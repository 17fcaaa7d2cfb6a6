/* The signed proxy bundle carries a sharded proxy (issue 6): the index and
 * every shard it names travel and unpack byte for byte, and the unpacked
 * directory opens as the same tensors; an index naming a path outside the
 * directory, a hidden file or a missing shard is refused when packing, and a
 * bundle whose index names a shard it lacks or an unsafe name is refused
 * before anything is written; a later unsharded bundle removes the stale
 * index that would shadow its model.safetensors. No device. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "fedproxy/fed.h"
#include "fedproxy/fileio.h"
#include "fedproxy/safetensors.h"
#include "fp_test.h"

#define INDEX "model.safetensors.index.json"

static const char *SH[3] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                            "model-00003-of-00003.safetensors"};

static void put(const char *d, const char *name, const void *data, size_t n)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", d, name);
    CHECK_OK(fp_write_file_atomic(p, data, n, 0644));
}

static char *slurp(const char *d, const char *name, size_t *len)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", d, name);
    void *x = NULL;
    *len = 0;
    if (fp_read_file(&x, len, p, 1 << 24))
        return NULL;
    return x;
}

static int entries(const char *d)
{
    DIR *dd = opendir(d);
    int n = 0;
    for (struct dirent *e; dd && (e = readdir(dd));)
        n += e->d_name[0] != '.';
    if (dd)
        closedir(dd);
    return dd ? n : -1;
}

/* a sharded directory: 6 tensors over 3 shards, the index, config, tokenizer, proxy.json */
static void make_sharded(const char *d, const char *index_text)
{
    CHECK_OK(fp_mkdirs(d, 0755));
    static float v[6][12];
    static const int64_t shape[2] = {3, 4};
    char names[6][32];
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 12; j++)
            v[i][j] = (float)(i * 100 + j) * 0.25f;
        snprintf(names[i], sizeof names[i], "t%d.weight", i);
    }
    for (int s = 0; s < 3; s++) {
        fp_st_entry e[2] = {{names[2 * s], FP_ST_F32, 2, shape, v[2 * s]},
                            {names[2 * s + 1], FP_ST_F32, 2, shape, v[2 * s + 1]}};
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", d, SH[s]);
        CHECK_OK(fp_st_write(p, e, 2, NULL, 0));
    }
    put(d, INDEX, index_text, strlen(index_text));
    put(d, "config.json", "{\"model_type\": \"llama\"}", 23);
    put(d, "tokenizer.json", "{}", 2);
    put(d, "proxy.json", "{\"version\": 1}", 14);
}

static const char *GOOD_INDEX =
    "{\"metadata\": {\"total_size\": 288}, \"weight_map\": {"
    "\"t0.weight\": \"model-00001-of-00003.safetensors\", \"t1.weight\": \"model-00001-of-00003.safetensors\", "
    "\"t2.weight\": \"model-00002-of-00003.safetensors\", \"t3.weight\": \"model-00002-of-00003.safetensors\", "
    "\"t4.weight\": \"model-00003-of-00003.safetensors\", \"t5.weight\": \"model-00003-of-00003.safetensors\"}}";

/* a bundle of explicit entries (what pack would never make) */
static uint8_t *build(size_t *len, int n, const char *const *names, const char *const *data)
{
    size_t total = 12;
    for (int i = 0; i < n; i++)
        total += 2 + strlen(names[i]) + 40 + strlen(data[i]);
    uint8_t *b = malloc(total), *p = b + 12;
    memcpy(b, "FPBUNDL1", 8);
    for (int i = 0; i < 4; i++)
        b[8 + i] = (uint8_t)((unsigned)n >> (8 * i));
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]), sz = strlen(data[i]);
        p[0] = (uint8_t)nl;
        p[1] = 0;
        memcpy(p + 2, names[i], nl);
        p += 2 + nl;
        for (int k = 0; k < 8; k++)
            p[k] = (uint8_t)((uint64_t)sz >> (8 * k));
        crypto_generichash(p + 8, 32, (const uint8_t *)data[i], sz, NULL, 0);
        p += 40;
    }
    for (int i = 0; i < n; i++) {
        memcpy(p, data[i], strlen(data[i]));
        p += strlen(data[i]);
    }
    *len = total;
    return b;
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    char root[600], src[700], out[700], bad[700];
    snprintf(root, sizeof root, "%s", fp_test_tmpdir("bundle_sharded"));
    snprintf(src, sizeof src, "%s/proxy", root);
    snprintf(out, sizeof out, "%s/client", root);
    snprintf(bad, sizeof bad, "%s/bad", root);
    make_sharded(src, GOOD_INDEX);
    put(src, "notes.txt", "not bundled", 11);

    /* round trip: the 7 files verbatim, the same tensors */
    uint8_t *w = NULL;
    size_t wl = 0;
    CHECK_OK(fp_fed_bundle_pack(&w, &wl, src));
    CHECK_OK(fp_fed_bundle_unpack(w, wl, out));
    CHECKF(entries(out) == 7, "unpacked %d files, want config, index, 3 shards, tokenizer, proxy.json", entries(out));
    static const char *files[] = {"config.json", INDEX, "tokenizer.json", "proxy.json"};
    for (int i = 0; i < 7; i++) {
        const char *nm = i < 4 ? files[i] : SH[i - 4];
        size_t la = 0, lb = 0;
        char *a = slurp(src, nm, &la), *b = slurp(out, nm, &lb);
        CHECKF(a && b && la == lb && !memcmp(a, b, la), "%s differs after the round trip", nm);
        free(a);
        free(b);
    }
    fp_st_file *st = NULL;
    CHECK_OK(fp_st_open_dir(&st, out));
    CHECK(st && fp_st_count(st) == 6);
    const fp_st_tensor *t5 = st ? fp_st_find(st, "t5.weight") : NULL;
    float x = 0;
    if (t5)
        memcpy(&x, (const char *)t5->data + 11 * sizeof(float), sizeof x);
    CHECK(t5 && x == (500 + 11) * 0.25f);
    fp_st_close(st);
    free(w);

    /* a later unsharded bundle into the same directory: the stale index goes */
    {
        char one[700];
        snprintf(one, sizeof one, "%s/one", root);
        CHECK_OK(fp_mkdirs(one, 0755));
        static const float z[4] = {1, 2, 3, 4};
        static const int64_t sh[1] = {4};
        fp_st_entry e = {"only.weight", FP_ST_F32, 1, sh, z};
        char p[800];
        snprintf(p, sizeof p, "%s/model.safetensors", one);
        CHECK_OK(fp_st_write(p, &e, 1, NULL, 0));
        put(one, "config.json", "{}", 2);
        CHECK_OK(fp_fed_bundle_pack(&w, &wl, one));
        CHECK_OK(fp_fed_bundle_unpack(w, wl, out));
        free(w);
        CHECK_OK(fp_st_open_dir(&st, out));
        CHECK(st && fp_st_count(st) == 1 && fp_st_find(st, "only.weight"));
        fp_st_close(st);
    }

    /* pack refuses an index naming a path outside, a hidden file, a missing shard */
    static const struct { const char *shard; int err; } evil[] = {
        {"../evil.safetensors", FP_EFORMAT}, {"/etc/passwd", FP_EFORMAT}, {".hidden.safetensors", FP_EFORMAT},
        {"sub/x.safetensors", FP_EFORMAT}, {INDEX, FP_EFORMAT}, {"absent.safetensors", FP_ENOTFOUND}};
    for (size_t i = 0; i < sizeof evil / sizeof *evil; i++) {
        char d[800], idx[600];
        snprintf(d, sizeof d, "%s/evil%zu", root, i);
        snprintf(idx, sizeof idx, "{\"weight_map\": {\"t0.weight\": \"%s\", \"t1.weight\": \"%s\"}}", SH[0],
                 evil[i].shard);
        make_sharded(d, idx);
        w = NULL;
        int rc = fp_fed_bundle_pack(&w, &wl, d);
        CHECKF(rc == evil[i].err && !w, "index naming '%s': pack gave %d (%s)", evil[i].shard, rc, fp_errmsg());
        free(w);
    }
    {
        char d[800];
        snprintf(d, sizeof d, "%s/noidx", root);
        make_sharded(d, "{\"metadata\": {}}");
        CHECK_ERR(fp_fed_bundle_pack(&w, &wl, d), FP_EFORMAT); /* no weight_map */
    }

    /* unpack refuses a bundle whose index names a shard it lacks, or an unsafe one: nothing written */
    {
        const char *idx_missing = "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}";
        const char *idx_evil = "{\"weight_map\": {\"a\": \"../s1.safetensors\"}}";
        const char *names[3] = {"config.json", INDEX, "s1.safetensors"};
        const char *data[3] = {"{}", idx_missing, "shard bytes"};
        size_t len = 0;
        uint8_t *b = build(&len, 3, names, data);
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT);
        CHECKF(strstr(fp_errmsg(), "s2.safetensors") != NULL, "message: %s", fp_errmsg());
        free(b);
        data[1] = idx_evil;
        b = build(&len, 3, names, data);
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT);
        free(b);
        data[1] = "not json";
        b = build(&len, 3, names, data);
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT);
        free(b);
        struct stat sb;
        CHECK(stat(bad, &sb) != 0);
    }
    return fp_test_report("bundle_sharded");
}
