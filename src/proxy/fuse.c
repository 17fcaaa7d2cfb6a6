/* Stage 4 (proxy.h): the federated proxy adapter goes back into the LLM
 * without training. Proxy layer i's LoRA pair becomes the LLM layer map(i)'s
 * pair unchanged (and, with "spread", a copy with B scaled on every other
 * layer of its span); the result is written as a PEFT adapter for the LLM or
 * merged into its weights (W += (alpha/r) B A, accumulated in double). */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/model_config.h"
#include "fedproxy/peft.h"
#include "fedproxy/proxy.h"
#include "fedproxy/safetensors.h"

static int copy_file(const char *src_dir, const char *dst_dir, const char *name, int optional)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    if (optional) {
        FILE *f = fopen(a, "rb");
        if (!f)
            return 0;
        fclose(f);
    }
    void *data = NULL;
    size_t len = 0;
    int rc = fp_read_file(&data, &len, a, (size_t)1 << 30);
    if (rc)
        return rc;
    rc = fp_write_file_atomic(b, data, len, 0644);
    free(data);
    return rc;
}

/* the LLM adapter: the proxy's pairs on their LLM layers (+ the spread copies) */
static int map_adapter(fp_lora_adapter *out, const fp_lora_adapter *pa, const fp_proxy_map *map,
                       const fp_model_config *mc, const fp_fuse_opts *o, const char *llm_dir)
{
    int spread = o && o->span && !strcmp(o->span, "spread");
    if (o && o->span && !spread && strcmp(o->span, "none"))
        return fp_seterr(FP_EINVAL, "fuse: unknown span mode '%s' (none or spread)", o->span);
    int64_t C = mc->hidden_size, qd = mc->num_attention_heads * mc->head_dim,
            kd = mc->num_key_value_heads * mc->head_dim, I = mc->intermediate_size;
    const int64_t in_of[7] = {C, C, C, qd, C, C, I}, out_of[7] = {qd, kd, kd, C, I, I, C};
    fp_lora_adapter_init(out, pa->r, pa->lora_alpha, pa->lora_dropout, llm_dir);
    int rc = 0;
    float *Bs = NULL;
    for (size_t k = 0; k < pa->n && !rc; k++) {
        const fp_lora_pair *p = &pa->pairs[k];
        if (p->layer < 0 || p->layer >= map->proxy_layers) {
            rc = fp_seterr(FP_EFORMAT, "fuse: the adapter has a pair for proxy layer %d, the proxy has %d layers",
                           p->layer, map->proxy_layers);
            break;
        }
        if (p->module < 0 || p->module > 6 || p->in != in_of[p->module] || p->out != out_of[p->module]) {
            rc = fp_seterr(FP_EFORMAT, "fuse: the adapter's layer %d %s adapts a [%d, %d] weight, the LLM's is "
                                       "[%lld, %lld]", p->layer, fp_lora_module_name(p->module), p->out, p->in,
                           (long long)out_of[p->module], (long long)in_of[p->module]);
            break;
        }
        const fp_proxy_layer *pl = &map->layers[p->layer];
        rc = fp_lora_adapter_add(out, pl->llm, p->module, p->rank, p->in, p->out, p->alpha, p->A, p->B);
        if (rc || !spread || pl->span_last == pl->span_first)
            continue;
        /* spread: every other layer of the span gets the delta times the scale */
        float sc = (o->spread_scale > 0) ? o->spread_scale : 1.0f / (float)(pl->span_last - pl->span_first + 1);
        size_t nb = (size_t)p->out * (size_t)p->rank;
        free(Bs);
        Bs = malloc(nb * sizeof *Bs);
        if (!Bs) {
            rc = fp_seterr(FP_ENOMEM, "fuse: out of host memory");
            break;
        }
        for (size_t i = 0; i < nb; i++)
            Bs[i] = sc * p->B[i];
        for (int l = pl->span_first; l <= pl->span_last && !rc; l++)
            if (l != pl->llm)
                rc = fp_lora_adapter_add(out, l, p->module, p->rank, p->in, p->out, p->alpha, p->A, Bs);
    }
    free(Bs);
    return rc;
}

/* W (f32 [out, in]) += (alpha / rank) B A, each element summed in double and rounded once */
static void merge_pair(float *W, const fp_lora_pair *p)
{
    double s = (double)p->alpha / (double)p->rank;
    double *row = malloc((size_t)p->in * sizeof *row);
    for (int o = 0; o < p->out && row; o++) {
        memset(row, 0, (size_t)p->in * sizeof *row);
        for (int r = 0; r < p->rank; r++) {
            double b = p->B[(size_t)o * p->rank + r];
            const float *a = p->A + (size_t)r * p->in;
            for (int i = 0; i < p->in; i++)
                row[i] += b * a[i];
        }
        for (int i = 0; i < p->in; i++)
            W[(size_t)o * p->in + i] = (float)((double)W[(size_t)o * p->in + i] + s * row[i]);
    }
    free(row);
}

static int write_merged(const char *llm_dir, const fp_lora_adapter *la, const char *out_dir)
{
    fp_st_file *st = NULL;
    int rc = fp_st_open_dir(&st, llm_dir);
    if (rc)
        return rc;
    size_t n = fp_st_count(st);
    fp_st_entry *e = calloc(n ? n : 1, sizeof *e);
    float **owned = calloc(n ? n : 1, sizeof *owned);
    if (!e || !owned)
        rc = fp_seterr(FP_ENOMEM, "fuse: out of host memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const fp_st_tensor *t = fp_st_at(st, i);
        e[i] = (fp_st_entry){t->name, t->dtype, t->rank, t->shape, t->data};
        for (size_t k = 0; k < la->n && !rc; k++) {
            const fp_lora_pair *p = &la->pairs[k];
            char nm[160];
            snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", p->layer, p->module <= 3 ? "self_attn" : "mlp",
                     fp_lora_module_name(p->module));
            if (strcmp(nm, t->name))
                continue;
            if (t->rank != 2 || t->shape[0] != p->out || t->shape[1] != p->in) {
                rc = fp_seterr(FP_EFORMAT, "fuse: %s in %s is not [%d, %d]", nm, llm_dir, p->out, p->in);
                break;
            }
            if (!owned[i]) { /* merged tensors are written as F32 */
                owned[i] = malloc((size_t)t->numel * sizeof(float));
                if (!owned[i]) {
                    rc = fp_seterr(FP_ENOMEM, "fuse: out of host memory");
                    break;
                }
                rc = fp_st_to_f32(owned[i], (size_t)t->numel, t);
                e[i].dtype = FP_ST_F32;
                e[i].data = owned[i];
            }
            if (!rc)
                merge_pair(owned[i], p);
        }
    }
    /* every pair must have found its weight */
    for (size_t k = 0; k < la->n && !rc; k++) {
        char nm[160];
        const fp_lora_pair *p = &la->pairs[k];
        snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", p->layer, p->module <= 3 ? "self_attn" : "mlp",
                 fp_lora_module_name(p->module));
        if (!fp_st_find(st, nm))
            rc = fp_seterr(FP_EFORMAT, "fuse: the LLM in %s has no tensor %s", llm_dir, nm);
    }
    char path[4096];
    if (!rc)
        rc = fp_mkdirs(out_dir, 0755);
    if (!rc) {
        const char *meta[2] = {"format", "pt"};
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        rc = fp_st_write(path, e, n, meta, 1);
    }
    if (!rc)
        rc = copy_file(llm_dir, out_dir, "config.json", 0);
    if (!rc)
        rc = copy_file(llm_dir, out_dir, "tokenizer.json", 1);
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(e);
    fp_st_close(st);
    return rc;
}

int fp_proxy_fuse(const char *llm_dir, const char *proxy_dir, const char *adapter_dir,
                  const unsigned char server_pk[FP_IDENTITY_PUBLICKEYBYTES], const fp_fuse_opts *o,
                  const char *merge_dir, const char *peft_dir)
{
    if (!llm_dir || !proxy_dir || !adapter_dir || !server_pk)
        return fp_seterr(FP_EINVAL, "fuse: NULL argument (the LLM, proxy and adapter directories and the server "
                                    "key are required)");
    if (!merge_dir == !peft_dir)
        return fp_seterr(FP_EINVAL, "fuse: give exactly one of a merge directory and a PEFT directory");
    fp_fuse_opts def = {"none", 0.0f};
    if (!o)
        o = &def;
    if (o->span && strcmp(o->span, "none") && strcmp(o->span, "spread"))
        return fp_seterr(FP_EINVAL, "fuse: unknown span mode '%s' (none or spread)", o->span);
    if (!(o->spread_scale >= 0) || !isfinite(o->spread_scale))
        return fp_seterr(FP_EINVAL, "fuse: spread scale %g must be >= 0 (0: 1/len(span))", (double)o->spread_scale);
    fp_proxy_map map;
    int rc = fp_proxy_read(&map, proxy_dir, server_pk);
    if (rc)
        return rc;
    unsigned char fp[FP_PROXY_FINGERPRINTBYTES];
    if ((rc = fp_model_fingerprint(fp, llm_dir)))
        return rc;
    if (sodium_memcmp(fp, map.llm_fingerprint, sizeof fp)) {
        char a[65], b[65];
        fp_hex_encode(a, sizeof a, fp, sizeof fp);
        fp_hex_encode(b, sizeof b, map.llm_fingerprint, sizeof fp);
        return fp_seterr(FP_ECRYPTO, "fuse: the proxy in %s was made from another LLM: %s has fingerprint %s, "
                                     "proxy.json names %s", proxy_dir, llm_dir, a, b);
    }
    fp_model_config mc;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", llm_dir);
    if ((rc = fp_model_config_load(&mc, path)))
        return rc;
    if (mc.num_hidden_layers != map.llm_layers || mc.hidden_size != map.llm_hidden || mc.vocab_size != map.llm_vocab)
        return fp_seterr(FP_EFORMAT, "fuse: %s has %lld layers, hidden %lld, vocab %lld; proxy.json says %d, %lld, "
                                     "%lld", path, (long long)mc.num_hidden_layers, (long long)mc.hidden_size,
                         (long long)mc.vocab_size, map.llm_layers, (long long)map.llm_hidden,
                         (long long)map.llm_vocab);
    fp_lora_adapter pa, la;
    memset(&la, 0, sizeof la);
    if ((rc = fp_lora_adapter_load(&pa, adapter_dir)))
        return rc;
    if (!pa.n)
        rc = fp_seterr(FP_EFORMAT, "fuse: the adapter in %s has no LoRA pairs", adapter_dir);
    if (!rc)
        rc = map_adapter(&la, &pa, &map, &mc, o, llm_dir);
    if (!rc && peft_dir)
        rc = fp_lora_adapter_save(&la, peft_dir);
    if (!rc && merge_dir)
        rc = write_merged(llm_dir, &la, merge_dir);
    fp_lora_adapter_free(&pa);
    fp_lora_adapter_free(&la);
    return rc;
}
