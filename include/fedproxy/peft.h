/* fedproxy: PEFT LoRA adapter directories (adapter_config.json +
 * adapter_model.safetensors), readable by Hugging Face peft and written by it.
 *
 * An adapter is a list of (layer, module, A, B): for the base weight W [out, in]
 * of model.layers.{layer}.{self_attn|mlp}.{module}, PEFT computes
 * W x + (alpha / rank) B A x with A [rank, in] and B [out, rank]. Tensor names
 * are PEFT's: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight,
 * ...lora_B.weight (k/v/o_proj under self_attn, gate/up/down_proj under mlp).
 * Ranks and alphas may differ per entry; those that differ from the adapter's
 * r / lora_alpha are written to rank_pattern / alpha_pattern, keyed by the
 * module path (model.layers.3.self_attn.q_proj), which is how peft reads them.
 *
 * Loading accepts what peft writes for a plain LoRA: peft_type LORA, bias
 * "none", no DoRA, no rsLoRA, fan_in_fan_out false. Other settings are
 * FP_EUNSUPPORTED naming the field; bad names or shapes are FP_EFORMAT.
 *
 * Ownership: the adapter owns its pairs and their A/B arrays (malloc'd);
 * fp_lora_adapter_free releases them. Threading: no shared state.
 */
#ifndef FEDPROXY_PEFT_H
#define FEDPROXY_PEFT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fp_lora_module {
    FP_LORA_MOD_Q = 0,
    FP_LORA_MOD_K,
    FP_LORA_MOD_V,
    FP_LORA_MOD_O,
    FP_LORA_MOD_GATE,
    FP_LORA_MOD_UP,
    FP_LORA_MOD_DOWN,
    FP_LORA_NMODULES
};

/* "q_proj", ..., "down_proj"; NULL if out of range. fp_lora_module_parse: the
 * enum for a name, -1 if unknown. */
const char *fp_lora_module_name(int module);
int fp_lora_module_parse(const char *name);

typedef struct fp_lora_pair {
    int layer;
    int module;  /* enum fp_lora_module */
    int rank;
    int in, out; /* the base weight is [out, in] */
    float alpha; /* scaling is alpha / rank */
    float *A;    /* [rank, in], row-major */
    float *B;    /* [out, rank], row-major */
} fp_lora_pair;

typedef struct fp_lora_adapter {
    int r;                  /* default rank (adapter_config "r") */
    float lora_alpha;       /* default alpha */
    float lora_dropout;     /* training-time only; recorded for peft */
    char base_model[512];   /* base_model_name_or_path; may be "" */
    size_t n;
    fp_lora_pair *pairs;    /* n entries, owned */
} fp_lora_adapter;

/* An empty adapter with defaults r and alpha. */
void fp_lora_adapter_init(fp_lora_adapter *a, int r, float lora_alpha, float lora_dropout,
                          const char *base_model);

/* Appends a copy of A [rank, in] and B [out, rank]; a (layer, module) already
 * present is FP_EINVAL. */
int fp_lora_adapter_add(fp_lora_adapter *a, int layer, int module, int rank, int in, int out,
                        float alpha, const float *A, const float *B);

/* The pair for (layer, module), or NULL. */
fp_lora_pair *fp_lora_adapter_find(const fp_lora_adapter *a, int layer, int module);

void fp_lora_adapter_free(fp_lora_adapter *a);

/* Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (F32),
 * each atomically; DIR is created if missing. */
int fp_lora_adapter_save(const fp_lora_adapter *a, const char *dir);

/* Reads both files from DIR into *a (initialised here; free with
 * fp_lora_adapter_free). Pairs are sorted by layer, then module. */
int fp_lora_adapter_load(fp_lora_adapter *a, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
