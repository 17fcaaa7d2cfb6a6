/* Checks a checkpoint against its config: every tensor the architecture needs,
 * with HF's names and shapes, and no tensor that would mean different math. */
#include "fedproxy/model_config.h"

#include <stdio.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/safetensors.h"
#include "model/hashmap.h"

struct expect_ctx {
    const struct fp_st_file *st;
    fp_strmap names;
    int rc;
};

static void expect(struct expect_ctx *x, const char *name, int rank, int64_t d0, int64_t d1)
{
    if (x->rc)
        return;
    if (fp_strmap_put(&x->names, name, strlen(name), 0, NULL) < 0) {
        x->rc = FP_ENOMEM;
        return;
    }
    const fp_st_tensor *t = fp_st_find(x->st, name);
    if (!t) {
        x->rc = fp_seterr(FP_EFORMAT, "checkpoint lacks tensor '%s'", name);
        return;
    }
    if (t->dtype != FP_ST_F32 && t->dtype != FP_ST_F16 && t->dtype != FP_ST_BF16) {
        x->rc = fp_seterr(FP_EFORMAT, "tensor '%s' is %s; weights must be F32, F16 or BF16", name,
                          fp_st_dtype_name(t->dtype));
        return;
    }
    if (t->rank != rank || t->shape[0] != d0 || (rank == 2 && t->shape[1] != d1)) {
        char got[128] = "[", want[64];
        for (int i = 0; i < t->rank; i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        }
        strncat(got, "]", sizeof got - strlen(got) - 1);
        if (rank == 2)
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof want, "[%lld]", (long long)d0);
        x->rc = fp_seterr(FP_EFORMAT, "tensor '%s' has shape %s, the config implies %s", name, got,
                          want);
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int fp_model_config_check_tensors(const fp_model_config *c, const struct fp_st_file *st)
{
    if (!c || !st)
        return fp_seterr(FP_EINVAL, "fp_model_config_check_tensors: NULL argument");
    int rc = fp_model_config_validate(c, "model config");
    if (rc)
        return rc;
    struct expect_ctx x = {st, {0}, 0};
    if ((rc = fp_strmap_init(&x.names, (size_t)(16 * c->num_hidden_layers + 8))))
        return rc;
    const int64_t H = c->hidden_size, V = c->vocab_size, I = c->intermediate_size;
    const int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    char n[256];
    expect(&x, "model.embed_tokens.weight", 2, V, H);
    for (int64_t i = 0; i < c->num_hidden_layers && !x.rc; i++) {
        const struct {
            const char *fmt;
            int rank;
            int64_t d0, d1;
            int bias_only;
        } L[] = {
            {"model.layers.%lld.self_attn.q_proj.weight", 2, q, H, 0},
            {"model.layers.%lld.self_attn.k_proj.weight", 2, kv, H, 0},
            {"model.layers.%lld.self_attn.v_proj.weight", 2, kv, H, 0},
            {"model.layers.%lld.self_attn.o_proj.weight", 2, H, q, 0},
            {"model.layers.%lld.self_attn.q_proj.bias", 1, q, 0, 1},
            {"model.layers.%lld.self_attn.k_proj.bias", 1, kv, 0, 1},
            {"model.layers.%lld.self_attn.v_proj.bias", 1, kv, 0, 1},
            {"model.layers.%lld.mlp.gate_proj.weight", 2, I, H, 0},
            {"model.layers.%lld.mlp.up_proj.weight", 2, I, H, 0},
            {"model.layers.%lld.mlp.down_proj.weight", 2, H, I, 0},
            {"model.layers.%lld.input_layernorm.weight", 1, H, 0, 0},
            {"model.layers.%lld.post_attention_layernorm.weight", 1, H, 0, 0},
        };
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
            if (L[k].bias_only && !c->attention_bias)
                continue;
            snprintf(n, sizeof n, L[k].fmt, (long long)i);
            expect(&x, n, L[k].rank, L[k].d0, L[k].d1);
        }
    }
    expect(&x, "model.norm.weight", 1, H, 0);
    if (!c->tie_word_embeddings || fp_st_find(st, "lm_head.weight"))
        expect(&x, "lm_head.weight", 2, V, H);
    for (size_t i = 0; i < fp_st_count(st) && !x.rc; i++) {
        const char *name = fp_st_at(st, i)->name;
        if (!fp_strmap_get(&x.names, name, strlen(name), NULL) && !ends_with(name, "rotary_emb.inv_freq"))
            x.rc = fp_seterr(FP_EFORMAT, "checkpoint has tensor '%s', which a %s config with these "
                                         "settings does not use",
                             name, fp_arch_name(c->arch));
    }
    fp_strmap_free(&x.names);
    return x.rc;
}
