/* config.json parsing for the Llama family. The rule: every field either is
 * understood, or is known not to change the forward/backward math, or makes
 * the load fail. A checkpoint that runs with silently different math would
 * train "fine" and produce garbage, which is far worse than refusing it. */
#include "fedproxy/model_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"

static const struct {
    int arch;
    const char *model_type, *architecture;
} archs[] = {
    {FP_ARCH_LLAMA, "llama", "LlamaForCausalLM"},
    {FP_ARCH_QWEN2, "qwen2", "Qwen2ForCausalLM"},
    {FP_ARCH_MISTRAL, "mistral", "MistralForCausalLM"},
};

const char *fp_arch_name(int arch)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (archs[i].arch == arch)
            return archs[i].model_type;
    return NULL;
}

const char *fp_arch_class(int arch)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (archs[i].arch == arch)
            return archs[i].architecture;
    return NULL;
}

/* Fields we read ourselves (below) or know to be irrelevant to the math:
 * bookkeeping, generation defaults, and HF runtime switches. */
static const char *const known_fields[] = {
    /* read */
    "architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "max_position_embeddings",
    "rms_norm_eps", "rope_theta", "rope_parameters", "tie_word_embeddings", "attention_bias",
    "bos_token_id", "eos_token_id", "hidden_act", "rope_scaling", "mlp_bias", "sliding_window",
    "use_sliding_window", "attention_dropout",
    /* harmless */
    "torch_dtype", "dtype", "transformers_version", "initializer_range", "use_cache", "pad_token_id",
    "_name_or_path", "pretraining_tp", "max_window_layers", "output_attentions",
    "output_hidden_states", "return_dict", "is_decoder", "tokenizer_class", "_attn_implementation",
    "_attn_implementation_autoset", "torchscript", "use_bfloat16", "chunk_size_feed_forward",
    "id2label", "label2id", "problem_type", "bad_words_ids", "decoder_start_token_id",
    "task_specific_params", "prefix", "finetuning_task", "cache_implementation",
};

/* Fields that change the math when present with anything but an inert value
 * (null, false, 0, or the value noted). Rejected, naming the field. */
static const char *const math_fields[] = {
    "num_local_experts", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
    "shared_expert_intermediate_size", "n_routed_experts", "n_shared_experts", "decoder_sparse_step",
    "router_aux_loss_coef", "output_router_logits", "router_jitter_noise", "quantization_config",
    "attn_logit_softcapping", "final_logit_softcapping", "logits_scaling", "logit_scale",
    "embedding_multiplier", "residual_multiplier", "attention_multiplier", "use_qk_norm",
    "qk_layernorm", "no_rope_layers", "rope_interleaved", "mlp_only_layers",
};

static int is_inert(const cJSON *v)
{
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == 0) ||
           (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0) ||
           (cJSON_IsObject(v) && cJSON_GetArraySize(v) == 0);
}

static const cJSON *field(const cJSON *root, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(root, name);
}

/* Integer field: absent -> def (or an error when required), otherwise an
 * integral JSON number. */
static int get_int(int64_t *out, const cJSON *root, const char *name, int required, int64_t def,
                   const char *what)
{
    const cJSON *v = field(root, name);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return fp_seterr(FP_EFORMAT, "%s: required field '%s' is missing", what, name);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
        fabs(v->valuedouble) > 9007199254740992.0)
        return fp_seterr(FP_EFORMAT, "%s: field '%s' is not an integer", what, name);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int get_num(double *out, const cJSON *root, const char *name, double def, const char *what)
{
    const cJSON *v = field(root, name);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return fp_seterr(FP_EFORMAT, "%s: field '%s' is not a number", what, name);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(int *out, const cJSON *root, const char *name, int def, const char *what)
{
    const cJSON *v = field(root, name);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return fp_seterr(FP_EFORMAT, "%s: field '%s' is not a boolean", what, name);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int parse_arch(int *arch, const cJSON *root, const char *what)
{
    const cJSON *mt = field(root, "model_type");
    const cJSON *ar = field(root, "architectures");
    int from_mt = 0, from_ar = 0;
    if (mt && !cJSON_IsNull(mt)) {
        if (!cJSON_IsString(mt))
            return fp_seterr(FP_EFORMAT, "%s: field 'model_type' is not a string", what);
        for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
            if (!strcmp(mt->valuestring, archs[i].model_type))
                from_mt = archs[i].arch;
        if (!from_mt)
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: model_type '%s' is not supported (llama, qwen2, mistral)", what,
                             mt->valuestring);
    }
    if (ar && !cJSON_IsNull(ar)) {
        if (!cJSON_IsArray(ar) || cJSON_GetArraySize(ar) != 1 || !cJSON_IsString(ar->child))
            return fp_seterr(FP_EFORMAT, "%s: field 'architectures' is not a list of one class name",
                             what);
        const char *a = ar->child->valuestring;
        for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
            if (!strcmp(a, archs[i].architecture))
                from_ar = archs[i].arch;
        if (!from_ar)
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: architectures '%s' is not supported (LlamaForCausalLM, "
                             "Qwen2ForCausalLM, MistralForCausalLM)",
                             what, a);
    }
    if (!from_mt && !from_ar)
        return fp_seterr(FP_EFORMAT, "%s: neither 'model_type' nor 'architectures' is given", what);
    if (from_mt && from_ar && from_mt != from_ar)
        return fp_seterr(FP_EFORMAT, "%s: architectures '%s' disagrees with model_type '%s'", what,
                         fp_arch_class(from_ar), fp_arch_name(from_mt));
    *arch = from_mt ? from_mt : from_ar;
    return 0;
}

/* Everything that would change the math, in one place. */
static int reject_unsupported(const cJSON *root, int arch, const char *what)
{
    const cJSON *v = field(root, "hidden_act");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "silu")))
        return fp_seterr(FP_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (only \"silu\")", what,
                         cJSON_IsString(v) ? v->valuestring : "(not a string)");
    v = field(root, "rope_scaling");
    if (v && !cJSON_IsNull(v)) {
        const cJSON *t = cJSON_IsObject(v) ? field(v, "rope_type") : NULL;
        if (!t && cJSON_IsObject(v))
            t = field(v, "type");
        return fp_seterr(FP_EUNSUPPORTED,
                         "%s: rope_scaling (%s) is not supported; only plain RoPE (rope_scaling null)",
                         what, t && cJSON_IsString(t) ? t->valuestring : "set");
    }
    v = field(root, "rope_parameters");
    if (v && !cJSON_IsNull(v)) {
        const cJSON *t = cJSON_IsObject(v) ? field(v, "rope_type") : NULL;
        if (t && !(cJSON_IsString(t) && !strcmp(t->valuestring, "default")))
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: rope_parameters.rope_type '%s' is not supported (only \"default\")",
                             what, cJSON_IsString(t) ? t->valuestring : "?");
    }
    v = field(root, "mlp_bias");
    if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v))
        return fp_seterr(FP_EUNSUPPORTED, "%s: mlp_bias true is not supported", what);
    v = field(root, "attention_dropout");
    if (v && !is_inert(v))
        return fp_seterr(FP_EUNSUPPORTED, "%s: attention_dropout %g is not supported (only 0)", what,
                         cJSON_IsNumber(v) ? v->valuedouble : -1.0);
    v = field(root, "partial_rotary_factor");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 1.0))
        return fp_seterr(FP_EUNSUPPORTED, "%s: partial_rotary_factor is not supported (only 1.0)",
                         what);
    const cJSON *sw = field(root, "sliding_window");
    if (arch == FP_ARCH_QWEN2) {
        /* Qwen2 only uses its window when use_sliding_window is true. */
        int use = 0;
        int rc = get_bool(&use, root, "use_sliding_window", 0, what);
        if (rc)
            return rc;
        if (use && sw && !cJSON_IsNull(sw))
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: sliding_window with use_sliding_window true is not supported", what);
    } else if (sw && !cJSON_IsNull(sw)) {
        return fp_seterr(FP_EUNSUPPORTED,
                         "%s: sliding_window %g is not supported (only null: full attention)", what,
                         cJSON_IsNumber(sw) ? sw->valuedouble : -1.0);
    }
    v = field(root, "layer_types"); /* newer transformers: per-layer attention kind */
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v))
            return fp_seterr(FP_EFORMAT, "%s: field 'layer_types' is not a list", what);
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention"))
                return fp_seterr(FP_EUNSUPPORTED,
                                 "%s: layer_types entry '%s' is not supported (only full_attention)",
                                 what, cJSON_IsString(e) ? e->valuestring : "?");
    }
    for (size_t i = 0; i < sizeof math_fields / sizeof math_fields[0]; i++) {
        v = field(root, math_fields[i]);
        if (v && !is_inert(v))
            return fp_seterr(FP_EUNSUPPORTED, "%s: field '%s' (%s) is not supported", what,
                             math_fields[i],
                             strstr(math_fields[i], "expert") || strstr(math_fields[i], "router") ||
                                     strstr(math_fields[i], "sparse")
                                 ? "mixture of experts"
                                 : "changes the model's math");
    }
    return 0;
}

static void warn_unknown(const cJSON *root, const char *what)
{
    for (const cJSON *c = root->child; c; c = c->next) {
        int known = !strcmp(c->string, "partial_rotary_factor") || !strcmp(c->string, "layer_types");
        for (size_t i = 0; !known && i < sizeof known_fields / sizeof known_fields[0]; i++)
            known = !strcmp(c->string, known_fields[i]);
        for (size_t i = 0; !known && i < sizeof math_fields / sizeof math_fields[0]; i++)
            known = !strcmp(c->string, math_fields[i]);
        if (!known)
            fp_warn("%s: ignoring unknown field '%s'", what, c->string);
    }
}

static int parse_eos(fp_model_config *c, const cJSON *root, const char *what)
{
    const cJSON *v = field(root, "eos_token_id");
    c->n_eos = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    const cJSON *one = cJSON_IsArray(v) ? v->child : v;
    for (; one; one = cJSON_IsArray(v) ? one->next : NULL) {
        /* inf passes the floor test; token ids beyond 2^31 are not ids anyway */
        if (!cJSON_IsNumber(one) || floor(one->valuedouble) != one->valuedouble || one->valuedouble < 0 ||
            one->valuedouble > 2147483647.0)
            return fp_seterr(FP_EFORMAT, "%s: field 'eos_token_id' is not a token id or a list of them",
                             what);
        if (c->n_eos == FP_MAX_EOS)
            return fp_seterr(FP_EFORMAT, "%s: field 'eos_token_id' lists more than %d ids", what,
                             FP_MAX_EOS);
        c->eos_token_ids[c->n_eos++] = (int64_t)one->valuedouble;
    }
    return 0;
}

static int parse_root(fp_model_config *c, const cJSON *root, const char *what)
{
    int rc;
    memset(c, 0, sizeof *c);
    /* cJSON keeps duplicate keys and lookups see the first: refuse ambiguity */
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (!strcmp(a->string, b->string))
                return fp_seterr(FP_EFORMAT, "%s: field '%s' appears twice", what, a->string);
    if ((rc = parse_arch(&c->arch, root, what)) || (rc = reject_unsupported(root, c->arch, what)))
        return rc;
    if ((rc = get_int(&c->hidden_size, root, "hidden_size", 1, 0, what)) ||
        (rc = get_int(&c->num_hidden_layers, root, "num_hidden_layers", 1, 0, what)) ||
        (rc = get_int(&c->num_attention_heads, root, "num_attention_heads", 1, 0, what)) ||
        (rc = get_int(&c->intermediate_size, root, "intermediate_size", 1, 0, what)) ||
        (rc = get_int(&c->vocab_size, root, "vocab_size", 1, 0, what)))
        return rc;
    if (c->num_attention_heads <= 0)
        return fp_seterr(FP_EFORMAT, "%s: num_attention_heads must be positive", what);
    int64_t def_pos = c->arch == FP_ARCH_QWEN2 ? 32768 : c->arch == FP_ARCH_MISTRAL ? 131072 : 2048;
    if ((rc = get_int(&c->num_key_value_heads, root, "num_key_value_heads", 0, c->num_attention_heads,
                      what)) ||
        (rc = get_int(&c->head_dim, root, "head_dim", 0, c->hidden_size / c->num_attention_heads,
                      what)) ||
        (rc = get_int(&c->max_position_embeddings, root, "max_position_embeddings", 0, def_pos,
                      what)) ||
        (rc = get_num(&c->rms_norm_eps, root, "rms_norm_eps", 1e-6, what)) ||
        (rc = get_num(&c->rope_theta, root, "rope_theta", 10000.0, what)) ||
        (rc = get_bool(&c->tie_word_embeddings, root, "tie_word_embeddings", 0, what)) ||
        (rc = get_bool(&c->attention_bias, root, "attention_bias", 0, what)) ||
        (rc = get_int(&c->bos_token_id, root, "bos_token_id", 0, -1, what)) ||
        (rc = parse_eos(c, root, what)))
        return rc;
    const cJSON *rp = field(root, "rope_parameters");
    if (cJSON_IsObject(rp) && field(rp, "rope_theta") &&
        (rc = get_num(&c->rope_theta, rp, "rope_theta", 10000.0, what)))
        return rc;
    if (c->arch == FP_ARCH_QWEN2)
        c->attention_bias = 1; /* Qwen2's q/k/v always carry a bias */
    if ((rc = fp_model_config_validate(c, what)))
        return rc;
    warn_unknown(root, what);
    return 0;
}

int fp_model_config_validate(const fp_model_config *c, const char *what)
{
    if (!c)
        return fp_seterr(FP_EINVAL, "fp_model_config_validate: NULL config");
    if (!what)
        what = "model config";
    if (!fp_arch_name(c->arch))
        return fp_seterr(FP_EINVAL, "%s: unknown architecture %d", what, c->arch);
    const struct {
        const char *name;
        int64_t v;
    } pos[] = {
        {"hidden_size", c->hidden_size},
        {"num_hidden_layers", c->num_hidden_layers},
        {"num_attention_heads", c->num_attention_heads},
        {"num_key_value_heads", c->num_key_value_heads},
        {"head_dim", c->head_dim},
        {"intermediate_size", c->intermediate_size},
        {"vocab_size", c->vocab_size},
        {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v > (1ll << 31))
            return fp_seterr(FP_EFORMAT, "%s: %s = %lld is out of range", what, pos[i].name,
                             (long long)pos[i].v);
    if (c->num_attention_heads % c->num_key_value_heads)
        return fp_seterr(FP_EFORMAT,
                         "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                         what, (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    if (c->head_dim % 2)
        return fp_seterr(FP_EFORMAT, "%s: head_dim %lld is odd; RoPE rotates pairs", what,
                         (long long)c->head_dim);
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
        return fp_seterr(FP_EFORMAT, "%s: rms_norm_eps must be positive", what);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return fp_seterr(FP_EFORMAT, "%s: rope_theta must be positive", what);
    if (c->bos_token_id < -1 || c->bos_token_id >= c->vocab_size)
        return fp_seterr(FP_EFORMAT, "%s: bos_token_id %lld is outside the vocabulary (%lld)", what,
                         (long long)c->bos_token_id, (long long)c->vocab_size);
    if (c->n_eos < 0 || c->n_eos > FP_MAX_EOS)
        return fp_seterr(FP_EINVAL, "%s: n_eos %d out of range", what, c->n_eos);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size)
            return fp_seterr(FP_EFORMAT, "%s: eos_token_id %lld is outside the vocabulary (%lld)", what,
                             (long long)c->eos_token_ids[i], (long long)c->vocab_size);
    return 0;
}

int fp_model_config_parse(fp_model_config *out, const char *json, size_t len, const char *what)
{
    if (!out || !json)
        return fp_seterr(FP_EINVAL, "fp_model_config_parse: NULL argument");
    if (!what)
        what = "config.json";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return fp_seterr(FP_EFORMAT, "%s: not valid JSON", what);
    int rc = cJSON_IsObject(root) ? parse_root(out, root, what)
                                  : fp_seterr(FP_EFORMAT, "%s: not a JSON object", what);
    cJSON_Delete(root);
    return rc;
}

int fp_model_config_load(fp_model_config *out, const char *path)
{
    void *text;
    size_t len;
    int rc = fp_read_file(&text, &len, path, 16u << 20);
    if (rc)
        return rc;
    rc = fp_model_config_parse(out, text, len, path);
    free(text);
    return rc;
}
