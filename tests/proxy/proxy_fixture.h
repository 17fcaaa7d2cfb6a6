/* Shared by the proxy tests: a tiny random "LLM" directory with a trained
 * byte-level BPE tokenizer, calibration text and a server identity, all under
 * one temporary directory. */
#ifndef PROXY_FIXTURE_H
#define PROXY_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/identity.h"
#include "fedproxy/model.h"
#include "fedproxy/proxy.h"
#include "fedproxy/tokenizer.h"
#include "fp_test.h"

typedef struct pfx {
    char root[1024], llm[1200], keys[1200], keys2[1200], calib[1200];
    fp_llama_config cfg;
    fp_identity server, other;
} pfx;

static const char PFX_TEXT[] =
    "The quick brown fox jumps over the lazy dog. A federated proxy keeps the large model on the server, "
    "while clients fine-tune a smaller model on their own data. Layers that barely turn the residual stream "
    "can be dropped; the others are kept and distilled. Every message is signed, every file written "
    "atomically, and the adapter goes back into the large model without training. ";

/* writes the tokenizer, a random L-layer LLM (seed) into root/<name>, keys, calibration text */
static inline void pfx_llm(pfx *f, const char *dir, int layers, uint64_t seed, fp_ctx *ctx)
{
    const char *texts[1] = {PFX_TEXT};
    size_t lens[1] = {sizeof PFX_TEXT - 1};
    fp_bpe_train_opts bo = {.vocab_size = 300, .min_frequency = 2};
    char *tj = NULL;
    CHECK_OK(fp_bpe_train(&tj, &bo, texts, lens, 1));
    fp_tokenizer *tok = NULL;
    CHECK_OK(fp_tokenizer_parse(&tok, tj, strlen(tj), "fixture tokenizer"));
    f->cfg = (fp_llama_config){.hidden = 16, .layers = layers, .heads = 4, .kv_heads = 2, .head_dim = 4,
                               .intermediate = 24, .vocab = (int64_t)fp_tokenizer_vocab_size(tok),
                               .rms_eps = 1e-5f, .rope_theta = 10000.0f};
    fp_tokenizer_free(tok);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &f->cfg));
    CHECK_OK(fp_model_init_random(m, seed));
    /* larger weights than the 0.02 default so that layers differ in influence */
    int64_t n = fp_llama_param_count(&f->cfg);
    float *p = malloc((size_t)n * sizeof *p);
    CHECK_OK(fp_model_download(m, 0, p, n));
    for (int i = 0; i < fp_model_tensor_count(m, 0); i++) {
        fp_param_info pi;
        CHECK_OK(fp_model_tensor_info(m, 0, i, &pi));
        float sc = strstr(pi.name, "norm") ? 0.0f : strstr(pi.name, "embed") ? 40.0f : 10.0f;
        for (int64_t j = 0; j < pi.numel; j++)
            p[pi.offset + j] = strstr(pi.name, "norm") ? 1.0f + 0.1f * fp_test_normal() : p[pi.offset + j] * sc;
    }
    CHECK_OK(fp_model_upload(m, 0, p, n));
    free(p);
    CHECK_OK(fp_model_save_dir(m, dir));
    fp_model_free(m);
    char path[1300];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK_OK(fp_write_file_atomic(path, tj, strlen(tj), 0644));
    free(tj);
}

static inline void pfx_init(pfx *f, const char *tag, int layers, fp_ctx *ctx)
{
    memset(f, 0, sizeof *f);
    snprintf(f->root, sizeof f->root, "%s", fp_test_tmpdir(tag));
    snprintf(f->llm, sizeof f->llm, "%s/llm", f->root);
    snprintf(f->keys, sizeof f->keys, "%s/keys", f->root);
    snprintf(f->keys2, sizeof f->keys2, "%s/keys2", f->root);
    snprintf(f->calib, sizeof f->calib, "%s/calib.txt", f->root);
    pfx_llm(f, f->llm, layers, 1234, ctx);
    unsigned char seed[FP_IDENTITY_SEEDBYTES];
    memset(seed, 7, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&f->server, seed));
    memset(seed, 8, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&f->other, seed));
    CHECK_OK(fp_identity_save(&f->server, f->keys));
    CHECK_OK(fp_identity_save(&f->other, f->keys2));
    /* calibration text: the fixture text a few times over */
    size_t tl = sizeof PFX_TEXT - 1;
    char *calib = malloc(tl * 4);
    for (int i = 0; i < 4; i++)
        memcpy(calib + i * tl, PFX_TEXT, tl);
    CHECK_OK(fp_write_file_atomic(f->calib, calib, tl * 4, 0644));
    free(calib);
}

static inline void pfx_done(pfx *f)
{
    fp_identity_wipe(&f->server);
    fp_identity_wipe(&f->other);
}

/* reads a whole file (NUL-terminated) */
static inline char *pfx_read(const char *path, size_t *len)
{
    void *d = NULL;
    size_t l = 0;
    if (fp_read_file(&d, &l, path, (size_t)1 << 30))
        return NULL;
    if (len)
        *len = l;
    return d;
}

/* cp -r of the flat directory src into dst (the proxy dirs have no subdirectories) */
static inline void pfx_copy_dir(const char *src, const char *dst)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
    CHECK(system(cmd) == 0);
}

/* A random LoRA adapter (rank 3, alpha 6, every module, N(0, scale^2)
 * entries) for the proxy in proxy_dir, saved as PEFT in adapter_dir. */
static inline void pfx_random_adapter(fp_ctx *ctx, const char *proxy_dir, const char *adapter_dir, float scale)
{
    fp_model *pm = NULL;
    CHECK_OK(fp_model_load_dir(&pm, ctx, proxy_dir));
    fp_lora_config lc = {.rank = 3, .alpha = 6.0f, .targets = FP_LORA_ALL};
    CHECK_OK(fp_model_lora_enable(pm, &lc, 1));
    int64_t nl = fp_lora_param_count(fp_model_cfg(pm), &lc);
    float *lv = malloc((size_t)nl * sizeof *lv);
    for (int64_t i = 0; i < nl; i++)
        lv[i] = scale * fp_test_normal();
    CHECK_OK(fp_model_upload(pm, 1, lv, nl));
    CHECK_OK(fp_model_save_adapter(pm, adapter_dir));
    fp_model_free(pm);
    free(lv);
}

#endif
