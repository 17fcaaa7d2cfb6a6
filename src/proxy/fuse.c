/* Stage 4 (proxy.h): the federated proxy adapter goes back into the LLM
 * without training. Proxy layer i's LoRA pair becomes the LLM layer map(i)'s
 * pair unchanged (and, with "spread", a copy with B scaled on every other
 * layer of its span); the result is written as a PEFT adapter for the LLM or
 * merged into its weights (fuse_merge.c). */
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
#include "fuse_internal.h"

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

int fp_proxy_fuse(const char *llm_dir, const char *proxy_dir, const char *adapter_dir,
                  const unsigned char server_pk[FP_IDENTITY_PUBLICKEYBYTES], const fp_fuse_opts *o,
                  const char *merge_dir, const char *peft_dir)
{
    if (!llm_dir || !proxy_dir || !adapter_dir || !server_pk)
        return fp_seterr(FP_EINVAL, "fuse: NULL argument (the LLM, proxy and adapter directories and the server "
                                    "key are required)");
    if (!merge_dir == !peft_dir)
        return fp_seterr(FP_EINVAL, "fuse: give exactly one of a merge directory and a PEFT directory");
    fp_fuse_opts def = {"none", 0.0f, 0};
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
        rc = fp_fuse_write_merged(llm_dir, &la, merge_dir, o->merge_dtype);
    fp_lora_adapter_free(&pa);
    fp_lora_adapter_free(&la);
    return rc;
}
