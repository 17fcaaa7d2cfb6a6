/* fedproxy: Hugging Face config.json for the Llama family (Llama, Qwen2,
 * Mistral; SmolLM is a Llama), and the check that a checkpoint's tensors match it.
 *
 * Parsing is strict about anything that changes the math: a field the engine does
 * not implement (rope_scaling of any kind, an active sliding window, mixture of
 * experts, an activation other than SiLU, MLP biases, quantization, attention
 * dropout, logit soft-capping...) is FP_EUNSUPPORTED with a message naming the
 * field, never silently ignored. Fields known not to affect the forward pass
 * (torch_dtype, transformers_version, initializer_range, use_cache, ...) are
 * ignored; a field in neither list is ignored with a warning on stderr.
 *
 * Defaults follow transformers' config classes: num_key_value_heads = heads,
 * head_dim = hidden_size / heads, rope_theta = 10000, rms_norm_eps = 1e-6,
 * tie_word_embeddings = false, attention_bias = false for Llama/Mistral and
 * always true (q/k/v only) for Qwen2. The five size fields (hidden_size,
 * num_hidden_layers, num_attention_heads, intermediate_size, vocab_size) are
 * required: transformers has defaults for them, but a real checkpoint always
 * states them and a config without them is more likely broken than meant.
 *
 * Ownership: plain struct, no pointers. Threading: safe (no shared state).
 */
#ifndef FEDPROXY_MODEL_CONFIG_H
#define FEDPROXY_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fp_st_file;

enum fp_arch { FP_ARCH_LLAMA = 1, FP_ARCH_QWEN2 = 2, FP_ARCH_MISTRAL = 3 };

#define FP_MAX_EOS 8

typedef struct fp_model_config {
    int arch;                        /* enum fp_arch */
    int64_t hidden_size;
    int64_t num_hidden_layers;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;     /* divides num_attention_heads */
    int64_t head_dim;
    int64_t intermediate_size;
    int64_t vocab_size;
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    int tie_word_embeddings;         /* lm_head shares model.embed_tokens.weight */
    int attention_bias;              /* q/k/v projections have a bias (o_proj never) */
    int64_t bos_token_id;            /* -1: none */
    int n_eos;                       /* eos_token_id may be one id or a list */
    int64_t eos_token_ids[FP_MAX_EOS];
} fp_model_config;

/* "llama", "qwen2", "mistral" (HF model_type), NULL if unknown. */
const char *fp_arch_name(int arch);
/* "LlamaForCausalLM", ... (HF architectures entry), NULL if unknown. */
const char *fp_arch_class(int arch);

/* Parses json[0..len); what names the document in messages (e.g. its path). */
int fp_model_config_parse(fp_model_config *out, const char *json, size_t len, const char *what);

/* Reads and parses a config.json file. */
int fp_model_config_load(fp_model_config *out, const char *path);

/* Checks internal consistency (positive sizes, heads divide, ...); parse calls
 * it, and so does the writer before emitting anything. */
int fp_model_config_validate(const fp_model_config *cfg, const char *what);

/* A config.json text transformers loads back to the same model: architectures,
 * model_type, every field above, hidden_act "silu", rope_scaling null. *json is
 * malloc'd and NUL-terminated; the caller frees it. */
int fp_model_config_to_json(char **json, const fp_model_config *cfg);

/* fp_model_config_to_json written atomically to path. */
int fp_model_config_save(const char *path, const fp_model_config *cfg);

/* Checks that st holds every tensor cfg implies, with HF's names and the right
 * shape and a float dtype (F32, F16, BF16), and nothing else that would change
 * the math (an unexpected tensor, e.g. a bias the config does not declare, is an
 * error; rotary_emb.inv_freq buffers are tolerated). With tied embeddings an
 * lm_head.weight of the right shape is tolerated. FP_EFORMAT names the tensor. */
int fp_model_config_check_tensors(const fp_model_config *cfg, const struct fp_st_file *st);

#ifdef __cplusplus
}
#endif
#endif
