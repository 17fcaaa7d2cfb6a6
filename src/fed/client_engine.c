/* ROUND_START's engine fields (server_engine.c writes them): the global
 * vector's LoRA layout and the FedProx mu, into the trainer's task; the
 * proxy's model shape, from which both sides build that layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/json_check.h"
#include "fedproxy/model_config.h"

int fed_task_engine_fields(fp_fed_task *t, const cJSON *o)
{
    memset(&t->lora, 0, sizeof t->lora);
    t->prox_mu = 0;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "lora");
    if (!l)
        return 0;
    static const fp_json_field f[] = {{"rank", FP_JSON_UINT, 1},
                                      {"alpha", FP_JSON_NUMBER, 1},
                                      {"targets", FP_JSON_UINT, 1},
                                      {"layers", FP_JSON_STRING, 1}};
    int rc = fp_json_check(l, f, sizeof f / sizeof f[0], "ROUND_START lora");
    if (rc)
        return rc;
    double r = fed_jnum(l, "rank", 0), a = fed_jnum(l, "alpha", 0), tg = fed_jnum(l, "targets", 0);
    const char *ls = fed_jstr(l, "layers", "");
    char *end = NULL;
    unsigned long long mask = strtoull(ls, &end, 16);
    double mu = fed_jnum(o, "prox_mu", 0);
    if (r < 1 || r > 4096 || !(a > 0) || !isfinite(a) || tg < 1 || tg > FP_LORA_ALL || !ls[0] || *end ||
        !(mu >= 0) || !isfinite(mu))
        return fp_seterr(FP_EFORMAT, "ROUND_START: LoRA layout (rank %g, alpha %g, targets %g, layers '%s') or "
                                     "prox_mu %g out of range", r, a, tg, ls, mu);
    t->lora.rank = (int)r;
    t->lora.alpha = (float)a;
    t->lora.targets = (unsigned)tg;
    t->lora.layers = (uint64_t)mask;
    t->prox_mu = (float)mu;
    return 0;
}

/* The model shape of a proxy directory's config.json (the LoRA layout of an
 * engine federation is built from it, on the server and on the clients). */
int fed_proxy_llama_config(fp_llama_config *out, const char *dir, const char *who)
{
    char path[FP_FED_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", dir);
    fp_model_config mc;
    int rc = fp_model_config_load(&mc, path);
    if (rc)
        return fp_adderr(rc, "%s", who);
    fp_llama_config c = {.hidden = mc.hidden_size, .layers = mc.num_hidden_layers, .heads = mc.num_attention_heads,
                         .kv_heads = mc.num_key_value_heads, .head_dim = mc.head_dim,
                         .intermediate = mc.intermediate_size, .vocab = mc.vocab_size,
                         .rms_eps = (float)mc.rms_norm_eps, .rope_theta = (float)mc.rope_theta,
                         .tied = mc.tie_word_embeddings, .attn_bias = mc.attention_bias};
    *out = c;
    return 0;
}
