/* Stage 1 (proxy.h): score, select, build, distil, write, sign. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/model_config.h"
#include "fedproxy/proxy.h"
#include "fedproxy/tokenizer.h"

void fp_compress_opts_default(fp_compress_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->keep_first = 2;
    o->keep_last = 2;
    o->middle = -1;
    o->select = "influence";
    o->calib_tokens = 16384;
    o->kd_weight = 1.0f;
    o->hidden_weight = 1.0f;
    o->temperature = 2.0f;
    o->lr = 1e-4f;
    o->batch = 4;
    o->seq = 128;
}

/* text file -> token ids with the LLM's tokenizer (at most max ids when max > 0) */
static int tokenize_file(int32_t **ids, int64_t *n, const fp_tokenizer *tok, const char *path, int64_t max)
{
    void *text = NULL;
    size_t len = 0;
    int rc = fp_read_file(&text, &len, path, (size_t)1 << 31);
    if (rc)
        return rc;
    size_t ni = 0;
    /* only as much text as the tokens asked for need be encoded (BPE is
     * superlinear in nothing, but files may be large): 8 bytes per token is ample */
    if (max > 0 && len > (size_t)max * 8)
        len = (size_t)max * 8;
    rc = fp_tokenizer_encode(ids, &ni, tok, text, len, 0);
    free(text);
    if (rc)
        return rc;
    *n = (int64_t)ni;
    if (max > 0 && *n > max)
        *n = max;
    return 0;
}

static int copy_file(const char *src_dir, const char *dst_dir, const char *name)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    void *data = NULL;
    size_t len = 0;
    int rc = fp_read_file(&data, &len, a, (size_t)1 << 30);
    if (rc)
        return rc;
    rc = fp_write_file_atomic(b, data, len, 0644);
    free(data);
    return rc;
}

static int vocab_check(const int32_t *ids, int64_t n, int64_t V, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return fp_seterr(FP_EFORMAT, "compress: %s: token id %d is outside the LLM's vocabulary of %lld (the "
                                         "tokenizer does not fit the model)", what, ids[i], (long long)V);
    return 0;
}

int fp_proxy_compress(fp_ctx *ctx, const char *llm_dir, const char *out_dir, const fp_compress_opts *o,
                      const fp_identity *server)
{
    if (!ctx || !llm_dir || !out_dir || !o || !server)
        return fp_seterr(FP_EINVAL, "compress: NULL argument");
    const char *method = o->select ? o->select : "influence";
    int influence = !strcmp(method, "influence");
    if (!influence && strcmp(method, "uniform"))
        return fp_seterr(FP_EINVAL, "compress: unknown selection '%s' (influence or uniform)", method);
    if (influence && !o->calib)
        return fp_seterr(FP_EINVAL, "compress: influence selection needs calibration text (--calib)");
    if (o->distill_steps > 0 && !o->distill_data)
        return fp_seterr(FP_EINVAL, "compress: %d distillation steps but no distillation text (--distill-data)",
                         o->distill_steps);
    fp_proxy_map map;
    memset(&map, 0, sizeof map);
    unsigned char llm_fp[FP_PROXY_FINGERPRINTBYTES];
    int rc = fp_model_fingerprint(llm_fp, llm_dir);
    if (rc)
        return rc;
    fp_model *llm = NULL, *proxy = NULL;
    fp_tokenizer *tok = NULL;
    int32_t *calib = NULL, *dist = NULL;
    int64_t n_calib = 0, n_dist = 0;
    double scores[FP_PROXY_MAX_LAYERS];
    char path[4096];
    if ((rc = fp_model_load_dir(&llm, ctx, llm_dir)))
        return rc;
    const fp_llama_config *c = fp_model_cfg(llm);
    int32_t L = (int32_t)c->layers;
    snprintf(path, sizeof path, "%s/tokenizer.json", llm_dir);
    if ((influence || o->distill_steps > 0) && !(rc = fp_tokenizer_load(&tok, path))) {
        if (influence)
            rc = tokenize_file(&calib, &n_calib, tok, o->calib, o->calib_tokens > 0 ? o->calib_tokens : 16384);
        if (!rc && influence)
            rc = vocab_check(calib, n_calib, c->vocab, o->calib);
        if (!rc && o->distill_steps > 0)
            rc = tokenize_file(&dist, &n_dist, tok, o->distill_data, 0);
        if (!rc && o->distill_steps > 0)
            rc = vocab_check(dist, n_dist, c->vocab, o->distill_data);
    }
    if (!rc && L > FP_PROXY_MAX_LAYERS)
        rc = fp_seterr(FP_EUNSUPPORTED, "compress: the LLM has %d layers (at most %d)", L, FP_PROXY_MAX_LAYERS);
    int middle = o->middle;
    if (!rc && middle < 0) {
        /* default: about half the layers in the proxy */
        int n_mid = L - o->keep_first - o->keep_last;
        middle = L / 2 - o->keep_first - o->keep_last;
        if (middle < 0)
            middle = 0;
        if (n_mid >= 0 && middle > n_mid)
            middle = n_mid;
    }
    if (!rc && influence) {
        int64_t seq = o->seq < n_calib ? o->seq : n_calib;
        if (!o->quiet && !o->json)
            fprintf(stderr, "compress: scoring %d layers on %lld calibration tokens\n", L, (long long)n_calib);
        rc = fp_proxy_block_influence(scores, llm, calib, n_calib, seq > 0 ? seq : 1, o->batch > 0 ? o->batch : 1);
    }
    if (!rc)
        rc = fp_proxy_select(&map, influence ? scores : NULL, L, o->keep_first, o->keep_last, middle, method);
    if (!rc && !o->quiet) {
        if (o->json)
            fprintf(stderr, "{\"stage\":\"select\",\"method\":\"%s\",\"proxy_layers\":%d}\n", method, map.proxy_layers);
        else {
            fprintf(stderr, "compress: %s selection keeps %d of %d layers:", method, map.proxy_layers, L);
            for (int i = 0; i < map.proxy_layers; i++)
                fprintf(stderr, " %d", map.layers[i].llm);
            fprintf(stderr, "\n");
        }
    }
    if (!rc)
        rc = fp_proxy_build(&proxy, llm, &map);
    if (!rc && o->distill_steps > 0) /* else map.distill stays all zero: not distilled */
        rc = fp_proxy_distill(&map.distill, proxy, llm, &map, dist, n_dist, o);
    /* write: weights and config first, the signed proxy.json last (an old one
     * is removed first, so an interrupted run leaves no valid-looking proxy) */
    if (!rc)
        rc = fp_mkdirs(out_dir, 0755);
    if (!rc) {
        snprintf(path, sizeof path, "%s/proxy.json", out_dir);
        unlink(path);
    }
    if (!rc)
        rc = fp_model_save_dir(proxy, out_dir);
    if (!rc) {
        /* the LLM's config.json with the proxy's layer count (keeps its ids and settings) */
        fp_model_config mc;
        snprintf(path, sizeof path, "%s/config.json", llm_dir);
        rc = fp_model_config_load(&mc, path);
        if (!rc) {
            mc.num_hidden_layers = map.proxy_layers;
            snprintf(path, sizeof path, "%s/config.json", out_dir);
            rc = fp_model_config_save(path, &mc);
        }
    }
    if (!rc && tok)
        rc = copy_file(llm_dir, out_dir, "tokenizer.json");
    else if (!rc) {
        snprintf(path, sizeof path, "%s/tokenizer.json", llm_dir);
        if (!access(path, R_OK))
            rc = copy_file(llm_dir, out_dir, "tokenizer.json");
    }
    if (!rc) {
        memcpy(map.llm_fingerprint, llm_fp, sizeof llm_fp);
        map.llm_hidden = c->hidden;
        map.llm_vocab = c->vocab;
        rc = fp_proxy_write(out_dir, &map, server);
    }
    fp_model_free(proxy);
    fp_model_free(llm);
    fp_tokenizer_free(tok);
    free(calib);
    free(dist);
    return rc;
}
