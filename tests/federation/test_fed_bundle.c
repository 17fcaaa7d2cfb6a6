/* The proxy bundle and the engine federation's configuration, without a
 * device: pack/unpack round trip; every malformed bundle refused before
 * anything is written (unsafe names, duplicates, counts, sizes, trailing or
 * missing bytes, hash mismatches); a few thousand random mutations never crash
 * (ASan) nor write anything but plain, non-hidden files inside the target
 * directory;
 * server.json's "lora" and the checks at server creation (dim derived from the
 * proxy's config.json, a disagreeing dim refused, lora without proxy_dir). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fedproxy/fed.h"
#include "fedproxy/fileio.h"
#include "fedproxy/lora_vec.h"
#include "fp_test.h"

static char dir[600];

static const char *cfg_json =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 16,\n"
    " \"num_hidden_layers\": 3, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,\n"
    " \"intermediate_size\": 24, \"vocab_size\": 40, \"rms_norm_eps\": 1e-5}";

static void put(const char *d, const char *name, const void *data, size_t n)
{
    char p[1000];
    snprintf(p, sizeof p, "%s/%s", d, name);
    CHECK_OK(fp_write_file_atomic(p, data, n, 0644));
}

/* A bundle from explicit entries (for malformed cases pack would never make). */
static uint8_t *build(size_t *len, int n, const char *const *names, const char *const *data, const size_t *sizes)
{
    size_t total = 12;
    for (int i = 0; i < n; i++)
        total += 2 + strlen(names[i]) + 40 + sizes[i];
    uint8_t *b = malloc(total), *p = b + 12;
    memcpy(b, "FPBUNDL1", 8);
    for (int i = 0; i < 4; i++)
        b[8 + i] = (uint8_t)((unsigned)n >> (8 * i));
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        p[0] = (uint8_t)nl;
        p[1] = (uint8_t)(nl >> 8);
        memcpy(p + 2, names[i], nl);
        p += 2 + nl;
        for (int k = 0; k < 8; k++)
            p[k] = (uint8_t)((uint64_t)sizes[i] >> (8 * k));
        crypto_generichash(p + 8, 32, (const uint8_t *)data[i], sizes[i], NULL, 0);
        p += 40;
    }
    for (int i = 0; i < n; i++) {
        memcpy(p, data[i], sizes[i]);
        p += sizes[i];
    }
    *len = total;
    return b;
}

static int count_entries(const char *d, int *odd)
{
    DIR *dh = opendir(d);
    if (!dh)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dh))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        n++;
        if (e->d_type != DT_REG || e->d_name[0] == '.')
            (*odd)++;
    }
    closedir(dh);
    return n;
}

static void test_bundle(void)
{
    char src[700], out[700];
    snprintf(src, sizeof src, "%s/proxy", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    CHECK_OK(fp_mkdirs(src, 0755));
    uint8_t *w = NULL;
    size_t wl = 0;
    CHECK_ERR(fp_fed_bundle_pack(&w, &wl, src), FP_ENOTFOUND); /* empty directory */
    put(src, "config.json", cfg_json, strlen(cfg_json));
    CHECK_ERR(fp_fed_bundle_pack(&w, &wl, src), FP_ENOTFOUND); /* no weights */
    uint8_t weights[3000];
    for (size_t i = 0; i < sizeof weights; i++)
        weights[i] = (uint8_t)(i * 37 + 11);
    put(src, "model.safetensors", weights, sizeof weights);
    put(src, "tokenizer.json", "{}", 2);
    put(src, "proxy.json", "{\"version\": 1}", 14);
    put(src, "notes.txt", "not bundled", 11);
    CHECK_OK(fp_fed_bundle_pack(&w, &wl, src));
    CHECK(fp_fed_bundle_is(w, wl) && !fp_fed_bundle_is(w, 8));
    CHECK_OK(fp_fed_bundle_unpack(w, wl, out));
    int odd = 0;
    CHECK(count_entries(out, &odd) == 4 && odd == 0); /* the four known files, not notes.txt */
    char p[1000];
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    void *back = NULL;
    size_t bl = 0;
    CHECK_OK(fp_read_file(&back, &bl, p, 1 << 20));
    CHECK(bl == sizeof weights && back && !memcmp(back, weights, bl));
    free(back);

    /* malformed bundles: each refused, nothing written */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    static const char *const unsafe[] = {"..", ".hidden", "a/b", "../x", "", "a\\b", "x y", "con\x01"};
    for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++) {
        const char *names[1] = {unsafe[i]}, *data[1] = {"x"};
        size_t sz[1] = {1}, len = 0;
        uint8_t *b = build(&len, 1, names, data, sz);
        CHECKF(fp_fed_bundle_unpack(b, len, bad) == FP_EFORMAT, "name '%s' accepted", unsafe[i]);
        free(b);
    }
    {
        const char *names[2] = {"a.json", "a.json"}, *data[2] = {"1", "2"};
        size_t sz[2] = {1, 1}, len = 0;
        uint8_t *b = build(&len, 2, names, data, sz);
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT); /* duplicate */
        free(b);
        b = build(&len, 0, names, data, sz);
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT); /* no files */
        free(b);
    }
    {
        enum { TOO_MANY = 261 }; /* 4 + 256 shards allowed */
        const char *names[TOO_MANY], *data[TOO_MANY];
        size_t sz[TOO_MANY], len = 0;
        char nm[TOO_MANY][8];
        for (int i = 0; i < TOO_MANY; i++) {
            snprintf(nm[i], sizeof nm[i], "f%d", i);
            names[i] = nm[i];
            data[i] = "z";
            sz[i] = 1;
        }
        uint8_t *b = build(&len, TOO_MANY, names, data, sz);
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT); /* too many */
        free(b);
    }
    {
        const char *names[1] = {"ok.json"}, *data[1] = {"abc"};
        size_t sz[1] = {3}, len = 0;
        uint8_t *b = build(&len, 1, names, data, sz);
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, b, len);
        longer[len] = 0;
        CHECK_ERR(fp_fed_bundle_unpack(longer, len + 1, bad), FP_EFORMAT); /* trailing byte */
        CHECK_ERR(fp_fed_bundle_unpack(b, len - 1, bad), FP_EFORMAT);       /* missing byte */
        b[12 + 2 + 7 + 7] = 0xff; /* size's top byte: 2^56 + 3 */
        CHECK_ERR(fp_fed_bundle_unpack(b, len, bad), FP_EFORMAT);
        free(longer);
        free(b);
    }
    odd = 0;
    CHECK(count_entries(bad, &odd) == 0);

    /* random mutations of the valid bundle */
    fp_test_seed(5);
    char mut[700];
    snprintf(mut, sizeof mut, "%s/mut", dir);
    uint8_t *m = malloc(wl);
    int accepted = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, w, wl);
        size_t len = wl;
        int kind = (int)(fp_test_u32() % 3);
        if (kind == 0) { /* flip bytes in the header region */
            for (int k = 0; k < 1 + (int)(fp_test_u32() % 4); k++)
                m[fp_test_u32() % 200] ^= (uint8_t)(1 + fp_test_u32() % 255);
        } else if (kind == 1) {
            len = fp_test_u32() % wl;
        } else {
            m[fp_test_u32() % wl] ^= (uint8_t)(1 + fp_test_u32() % 255);
        }
        int rc = fp_fed_bundle_unpack(m, len, mut);
        CHECK(rc <= 0);
        accepted += rc == 0;
    }
    odd = 0;
    int ents = count_entries(mut, &odd);
    /* a mutated name can be another safe name (the content hashes still
     * match; the server's signature is what rules that out): plain files only */
    CHECKF(odd == 0 && ents >= 0, "mutations wrote %d entries, %d not plain files", ents, odd);
    odd = 0;
    int top = count_entries(dir, &odd);
    CHECKF(top <= 3 && odd == top, "something was written beside the test's directories (%d entries, %d dirs)", top,
           odd); /* proxy/, out/ and maybe mut/: directories only */
    fprintf(stderr, "bundle mutations: %d of 3000 accepted (each then a valid bundle)\n", accepted);
    free(m);
    free(w);
}

static void test_config(void)
{
    fp_fed_server_config c;
    const char *ok = "{\"proxy_dir\": \"proxy\", \"lora\": {\"rank\": 4, \"alpha\": 16, \"targets\": \"q,v\", "
                     "\"layers\": \"0,2\"}, \"adapter_out\": \"ad\", \"prox_mu\": 0.1}";
    CHECK_OK(fp_fed_server_config_parse(&c, ok, strlen(ok), dir));
    CHECK(c.lora.rank == 4 && c.lora.alpha == 16 && c.lora.targets == (FP_LORA_Q | FP_LORA_V) &&
          c.lora.layers == 5 && c.dim == 0 && c.prox_mu == 0.1f);
    CHECK(strstr(c.proxy_dir, "/proxy") && strstr(c.adapter_out, "/ad"));
    /* FedProxy's default aggregator (chosen on the benchmark's valid split) for "lora"
     * federations; fedavg under DP, for plain vectors, and whatever is named */
    CHECKF(!strcmp(c.aggregator, "ties"), "lora default aggregator %s", c.aggregator);
    const char *dpj = "{\"proxy_dir\": \"proxy\", \"lora\": {\"rank\": 4}, \"dp\": {\"clip\": 1, "
                      "\"noise_multiplier\": 1}}";
    CHECK_OK(fp_fed_server_config_parse(&c, dpj, strlen(dpj), dir));
    CHECKF(!strcmp(c.aggregator, "fedavg"), "lora + dp default aggregator %s", c.aggregator);
    const char *named = "{\"proxy_dir\": \"proxy\", \"lora\": {\"rank\": 4}, \"aggregator\": \"hetlora\"}";
    CHECK_OK(fp_fed_server_config_parse(&c, named, strlen(named), dir));
    CHECK(!strcmp(c.aggregator, "hetlora"));
    const char *plainv = "{\"dim\": 10}";
    CHECK_OK(fp_fed_server_config_parse(&c, plainv, strlen(plainv), dir));
    CHECK(!strcmp(c.aggregator, "fedavg"));
    const char *bads[] = {
        "{\"lora\": {\"rank\": 0}}",
        "{\"lora\": {\"rank\": 4, \"targets\": \"q,x\"}}",
        "{\"lora\": {\"rank\": 4, \"layers\": \"0,x\"}}",
        "{\"lora\": {\"rank\": 4, \"layers\": \"64\"}}",
        "{\"lora\": {\"rank\": 4, \"alpha\": -1}}",
        "{\"lora\": {\"rank\": 4, \"dropout\": 0.1}}",
        "{\"prox_mu\": -1}",
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++)
        CHECKF(fp_fed_server_config_parse(&c, bads[i], strlen(bads[i]), dir) != 0, "accepted %s", bads[i]);
    /* creation: dim from the layout of the proxy's config.json; mismatches refused */
    fp_identity id;
    CHECK_OK(fp_identity_keygen(&id));
    char js[2000];
    fp_identity cl;
    CHECK_OK(fp_identity_keygen(&cl));
    char kh[65], al[200];
    fp_hex_encode(kh, sizeof kh, cl.pk, 32);
    int an = snprintf(al, sizeof al, "{\"version\": 1, \"clients\": [{\"name\": \"c\", \"key\": \"%s\"}]}", kh);
    put(dir, "clients.json", al, (size_t)an);
    snprintf(js, sizeof js,
             "{\"clients\": \"clients.json\", \"state_dir\": \"st\", \"proxy_dir\": \"proxy\", \"lora\": {\"rank\": 2}}");
    CHECK_OK(fp_fed_server_config_parse(&c, js, strlen(js), dir));
    fp_fed_server *s = NULL;
    int rc = fp_fed_server_create(&s, &c, &id, 0);
    CHECK_OK(rc);
    fp_llama_config lc = {.hidden = 16, .layers = 3, .heads = 2, .kv_heads = 1, .head_dim = 8, .intermediate = 24,
                          .vocab = 40, .rms_eps = 1e-5f, .rope_theta = 10000.0f};
    fp_lora_config l2 = {2, 4.0f, FP_LORA_ALL, 0};
    size_t want = (size_t)fp_lora_param_count(&lc, &l2);
    if (rc == 0) {
        CHECK(fp_fed_server_dim(s) == want);
        float *g = malloc(want * sizeof(float));
        CHECK_OK(fp_fed_server_global(s, g, want, NULL));
        /* the initial adapter: A random, B zero (fp_lora_vec_init with seed 1) */
        fp_lora_vec_layout lay;
        CHECK_OK(fp_lora_vec_layout_build(&lay, &lc, &l2));
        float *ref = malloc(want * sizeof(float));
        CHECK_OK(fp_lora_vec_init(ref, want, &lay, 1));
        CHECK(memcmp(g, ref, want * sizeof(float)) == 0);
        fp_lora_vec_layout_free(&lay);
        free(ref);
        free(g);
        fp_fed_server_destroy(s);
    }
    snprintf(js, sizeof js,
             "{\"clients\": \"clients.json\", \"state_dir\": \"st2\", \"proxy_dir\": \"proxy\", \"lora\": {\"rank\": 2},"
             " \"dim\": %zu}", want + 1);
    CHECK_OK(fp_fed_server_config_parse(&c, js, strlen(js), dir));
    CHECK_ERR(fp_fed_server_create(&s, &c, &id, 0), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "dim"));
    snprintf(js, sizeof js, "{\"clients\": \"clients.json\", \"state_dir\": \"st3\", \"lora\": {\"rank\": 2}}");
    CHECK_OK(fp_fed_server_config_parse(&c, js, strlen(js), dir));
    CHECK_ERR(fp_fed_server_create(&s, &c, &id, 0), FP_EINVAL);
    CHECK(strstr(fp_errmsg(), "proxy_dir"));
    snprintf(js, sizeof js, "{\"clients\": \"clients.json\", \"state_dir\": \"st4\", \"adapter_out\": \"a\"}");
    CHECK_OK(fp_fed_server_config_parse(&c, js, strlen(js), dir));
    CHECK_ERR(fp_fed_server_create(&s, &c, &id, 0), FP_EINVAL);
    fp_identity_wipe(&id);
}

int main(void)
{
    setenv("FP_QUIET", "1", 0);
    snprintf(dir, sizeof dir, "%s", fp_test_tmpdir("fed-bundle"));
    test_bundle();
    test_config();
    return fp_test_report("test_fed_bundle");
}
