/* The server's side of engine federations: with "lora" in server.json the
 * global vector is the proxy's packed LoRA vector (lora_vec.h) at rank R, the
 * proxy directory goes to every client once as a signed bundle, clients'
 * ranks are capped at R, and the global adapter is written as a PEFT
 * directory after every completed round. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/model_config.h"
#include "server_internal.h"

int srv_engine_init(fp_fed_server *s)
{
    fp_fed_server_config *c = &s->cfg;
    if (c->proxy[0] && c->proxy_dir[0])
        return fp_seterr(FP_EINVAL, "server config: give \"proxy\" (a file) or \"proxy_dir\", not both");
    if (c->lora.rank > 0 && !c->proxy_dir[0])
        return fp_seterr(FP_EINVAL, "server config: \"lora\" needs \"proxy_dir\" (the model the layout is for)");
    if (c->adapter_out[0] && c->lora.rank < 1)
        return fp_seterr(FP_EINVAL, "server config: \"adapter_out\" needs a \"lora\" layout");
    if (c->lora.rank > 0) {
        fp_llama_config lc;
        int rc = fed_proxy_llama_config(&lc, c->proxy_dir, "server: proxy_dir");
        if (!rc)
            rc = fp_lora_vec_layout_build(&s->lay, &lc, &c->lora);
        if (rc)
            return fp_adderr(rc, "server config: \"lora\"");
        if (c->dim && c->dim != s->lay.dim)
            return fp_seterr(FP_EFORMAT, "server config: \"dim\" is %llu but the rank-%d LoRA layout of %s has %zu "
                                         "values (leave \"dim\" out)",
                             (unsigned long long)c->dim, c->lora.rank, c->proxy_dir, s->lay.dim);
        if (s->lay.dim > FP_FED_MAX_DIM)
            return fp_seterr(FP_EFORMAT, "server config: the LoRA layout has %zu values, above %llu", s->lay.dim,
                             (unsigned long long)FP_FED_MAX_DIM);
        c->dim = s->lay.dim;
        /* Registration plans rank, batch and sequence for this model, not the benchmark's. */
        fp_model_shape sh = {(int)lc.layers, (int)lc.hidden, (int)lc.heads, (int)lc.kv_heads, (int)lc.intermediate,
                             (int)lc.vocab, 4};
        c->model = sh;
    }
    if (!c->proxy_dir[0])
        return 0;
    int rc = fp_fed_bundle_pack(&s->proxy, &s->proxy_len, c->proxy_dir);
    if (!rc)
        rc = fp_identity_sign(s->proxy_sig, s->proxy, s->proxy_len, &s->id);
    if (!rc)
        fed_log("fp serve: proxy %s bundled (%.1f MiB, signed)%s\n", c->proxy_dir, s->proxy_len / 1048576.0,
                c->lora.rank > 0 ? "" : "; no \"lora\" layout: clients get a plain vector");
    return rc;
}

int srv_engine_init_global(fp_fed_server *s)
{
    if (s->cfg.lora.rank < 1)
        return 1; /* not ours: the plain vector's init applies */
    return fp_lora_vec_init(s->global, s->cfg.dim, &s->lay, s->cfg.init_seed ? s->cfg.init_seed : 1);
}

void srv_engine_cap_rank(const fp_fed_server *s, int *rank)
{
    int R = s->cfg.lora.rank;
    if (R < 1)
        return;
    if (*rank > R)
        *rank = R;
    if (*rank < 1)
        *rank = 1;
}

void srv_engine_start_fields(const fp_fed_server *s, cJSON *o)
{
    const fp_lora_config *l = &s->cfg.lora;
    if (l->rank < 1)
        return;
    cJSON *j = cJSON_AddObjectToObject(o, "lora");
    char mask[24];
    snprintf(mask, sizeof mask, "%llx", (unsigned long long)l->layers);
    cJSON_AddNumberToObject(j, "rank", l->rank);
    cJSON_AddNumberToObject(j, "alpha", l->alpha);
    cJSON_AddNumberToObject(j, "targets", l->targets);
    cJSON_AddStringToObject(j, "layers", mask);
    cJSON_AddNumberToObject(o, "prox_mu", s->cfg.prox_mu);
}

void srv_engine_round_done(fp_fed_server *s)
{
    if (!s->cfg.adapter_out[0])
        return;
    /* Each file is replaced atomically; the config is the same every round, so
     * a reader sees one round's weights with the (unchanging) config. */
    int rc = fp_lora_vec_save_peft(&s->lay, s->global, s->cfg.dim, 0.0f, s->cfg.proxy_dir, s->cfg.adapter_out);
    if (rc)
        fp_warn("fp serve: writing the global adapter to %s failed: %s", s->cfg.adapter_out, fp_errmsg());
}

size_t fp_fed_server_dim(const fp_fed_server *s) { return s ? (size_t)s->cfg.dim : 0; }
