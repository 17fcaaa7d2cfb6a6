/* config.json writer: what transformers needs to rebuild the same model, with
 * every math-relevant switch written out explicitly (rope_scaling null, no
 * window) so that no library default can change its meaning later. */
#include "fedproxy/model_config.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"

int fp_model_config_to_json(char **json, const fp_model_config *c)
{
    if (!json || !c)
        return fp_seterr(FP_EINVAL, "fp_model_config_to_json: NULL argument");
    *json = NULL;
    int rc = fp_model_config_validate(c, "model config");
    if (rc)
        return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON *ar = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(ar, cJSON_CreateString(fp_arch_class(c->arch)));
    cJSON_AddStringToObject(o, "model_type", fp_arch_name(c->arch));
    cJSON_AddNumberToObject(o, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)c->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", (double)c->num_key_value_heads);
    cJSON_AddNumberToObject(o, "head_dim", (double)c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->max_position_embeddings);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    if (c->arch != FP_ARCH_QWEN2) /* Qwen2's bias is implied by the architecture */
        cJSON_AddBoolToObject(o, "attention_bias", c->attention_bias);
    if (c->arch == FP_ARCH_LLAMA)
        cJSON_AddFalseToObject(o, "mlp_bias");
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    if (c->arch == FP_ARCH_QWEN2)
        cJSON_AddFalseToObject(o, "use_sliding_window");
    if (c->arch != FP_ARCH_LLAMA)
        cJSON_AddNullToObject(o, "sliding_window");
    if (c->bos_token_id >= 0)
        cJSON_AddNumberToObject(o, "bos_token_id", (double)c->bos_token_id);
    else
        cJSON_AddNullToObject(o, "bos_token_id");
    if (c->n_eos == 0) {
        cJSON_AddNullToObject(o, "eos_token_id");
    } else if (c->n_eos == 1) {
        cJSON_AddNumberToObject(o, "eos_token_id", (double)c->eos_token_ids[0]);
    } else {
        cJSON *eos = cJSON_AddArrayToObject(o, "eos_token_id");
        for (int i = 0; i < c->n_eos; i++)
            cJSON_AddItemToArray(eos, cJSON_CreateNumber((double)c->eos_token_ids[i]));
    }
    cJSON_AddBoolToObject(o, "use_cache", 1);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s)
        return fp_seterr(FP_ENOMEM, "out of memory writing config.json");
    *json = s;
    return 0;
}

int fp_model_config_save(const char *path, const fp_model_config *c)
{
    char *s;
    int rc = fp_model_config_to_json(&s, c);
    if (rc)
        return rc;
    size_t n = 0;
    while (s[n])
        n++;
    s[n] = '\n'; /* replaces the NUL: a text file ends with a newline */
    rc = fp_write_file_atomic(path, s, n + 1, 0644);
    free(s);
    return rc;
}
