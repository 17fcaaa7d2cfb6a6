/* fp init: a randomly initialised Hugging Face model directory from a
 * config.json (the starting point for pretraining a base LLM with fp train
 * --full).
 *
 * The directory is assembled under a temporary sibling name and renamed into
 * place at the end, so DIR either does not exist or holds a complete model:
 * an interrupted run never leaves a config.json without its weights. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common/error_internal.h"
#include "fedproxy/error.h"
#include "fedproxy/fileio.h"
#include "fedproxy/model.h"
#include "fedproxy/model_config.h"
#include "fedproxy/runtime.h"
#include "fedproxy/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fp init --config CONFIG.json --out DIR [--tokenizer tokenizer.json] [--seed S]\n"
               "Writes DIR/config.json, DIR/model.safetensors (random init: normal * 0.02, norms 1;\n"
               "deterministic for a seed, default 0) and DIR/tokenizer.json (a copy) when given.\n"
               "CONFIG.json is a Hugging Face Llama/Qwen2/Mistral config (parsed strictly).\n"
               "DIR must not exist or be empty.\n");
}

/* 1 if path is a directory with entries, 0 if it is empty, -1 if it does not exist. */
static int dir_state(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int full = 0;
    struct dirent *e;
    while (!full && (e = readdir(d)))
        full = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return full;
}

/* Best-effort removal of the temporary directory's known files after a failure. */
static void remove_tmp(const char *tmp)
{
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    char p[4300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp, files[i]);
        unlink(p);
    }
    rmdir(tmp);
}

/* Loads the tokenizer (so a broken file fails here, not at training time) and
 * checks that its ids fit the model's embedding table; returns the raw bytes. */
static int read_tokenizer(void **data, size_t *len, const char *path, int64_t vocab)
{
    fp_tokenizer *tk = NULL;
    int rc = fp_tokenizer_load(&tk, path);
    if (rc)
        return rc;
    size_t tv = fp_tokenizer_vocab_size(tk);
    fp_tokenizer_free(tk);
    if ((int64_t)tv > vocab)
        return fp_seterr(FP_EINVAL, "%s has %zu tokens but the config's vocab_size is %lld: ids would not fit", path,
                         tv, (long long)vocab);
    return fp_read_file(data, len, path, (size_t)1 << 30);
}

int fp_cmd_init(int argc, char **argv)
{
    if (fp_cli_flag(argc, argv, "--help") || fp_cli_flag(argc, argv, "-h")) {
        usage(stdout);
        return 0;
    }
    const char *cfg_path = fp_cli_opt(argc, argv, "--config"), *out = fp_cli_opt(argc, argv, "--out");
    const char *tok_path = fp_cli_opt(argc, argv, "--tokenizer"), *v;
    if (!cfg_path || !out) {
        usage(stderr);
        return 2;
    }
    uint64_t seed = 0;
    if ((v = fp_cli_opt(argc, argv, "--seed"))) {
        char *end;
        errno = 0;
        seed = strtoull(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-') {
            fprintf(stderr, "fp init: --seed takes a non-negative integer, not '%s'\n", v);
            return 2;
        }
    }
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/')
        ol--;
    if (ol + 64 > 4096) {
        fprintf(stderr, "fp init: --out path too long\n");
        return 2;
    }
    int state = dir_state(out);
    struct stat st;
    if (state < 0 && stat(out, &st) == 0) {
        fprintf(stderr, "fp init: %s exists and is not a directory\n", out);
        return 1;
    }
    if (state > 0) {
        fprintf(stderr, "fp init: %s is not empty; refusing to overwrite a model directory\n", out);
        return 1;
    }

    fp_model_config mc;
    int err = fp_model_config_load(&mc, cfg_path);
    if (err)
        return fp_cli_fail("init", err);
    void *tok = NULL;
    size_t tok_len = 0;
    if (tok_path && (err = read_tokenizer(&tok, &tok_len, tok_path, mc.vocab_size)))
        return fp_cli_fail("init", err);

    fp_llama_config c = {.hidden = mc.hidden_size, .layers = mc.num_hidden_layers, .heads = mc.num_attention_heads,
                         .kv_heads = mc.num_key_value_heads, .head_dim = mc.head_dim,
                         .intermediate = mc.intermediate_size, .vocab = mc.vocab_size,
                         .rms_eps = (float)mc.rms_norm_eps, .rope_theta = (float)mc.rope_theta,
                         .tied = mc.tie_word_embeddings, .attn_bias = mc.attention_bias, .base_dtype = FP_F32};
    char tmp[4200], path[4300];
    snprintf(tmp, sizeof tmp, "%.*s.init.%ld", (int)ol, out, (long)getpid());
    fp_ctx *ctx = NULL;
    fp_model *m = NULL;
    err = fp_llama_config_check(&c);
    if (!err)
        err = fp_ctx_create(&ctx, NULL);
    if (!err)
        err = fp_model_create(&m, ctx, &c);
    if (!err)
        err = fp_model_init_random(m, seed);
    if (!err)
        err = fp_model_save_dir(m, tmp);
    /* fp_model_save_dir writes the fields the engine uses; the input config's
     * architecture, token ids and context length are kept by rewriting it. */
    if (!err) {
        snprintf(path, sizeof path, "%s/config.json", tmp);
        err = fp_model_config_save(path, &mc);
    }
    if (!err && tok) {
        snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
        err = fp_write_file_atomic(path, tok, tok_len, 0644);
    }
    if (!err && state == 0 && rmdir(out) != 0)
        err = fp_seterr(FP_EIO, "cannot replace the empty directory %s: %s", out, strerror(errno));
    if (!err && rename(tmp, out) != 0)
        err = fp_seterr(FP_EIO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (err)
        remove_tmp(tmp);
    else
        fprintf(stderr, "fp init: wrote %s (%lld layers, hidden %lld, vocab %lld, %.2f M parameters, seed %llu)\n",
                out, (long long)c.layers, (long long)c.hidden, (long long)c.vocab,
                (double)fp_llama_param_count(&c) / 1e6, (unsigned long long)seed);
    fp_model_free(m);
    fp_ctx_destroy(ctx);
    free(tok);
    return err ? fp_cli_fail("init", err) : 0;
}
