/* fedproxy: the Llama-family transformer on the Vulkan kernels (Llama, Qwen2,
 * Mistral, SmolLM shapes): forward to logits and mean cross-entropy, backward
 * for every parameter (full fine-tuning) or for LoRA adapters only (the base
 * frozen).
 *
 * Memory is planned up front, llm.c style: the parameters are one device
 * allocation with a view per tensor; gradients (of whatever is trained) are one
 * more with the same layout; activations for a (batch B, sequence T) are a
 * third, sized by fp_model_plan_bytes before anything is allocated. Every view
 * starts on a 256-byte boundary.
 *
 * Parameter order (the "packed" host layout used by the upload/download
 * functions: tensors back to back, no padding, row-major, nn.Linear's
 * [out, in] layout), with Hugging Face names:
 *   model.embed_tokens.weight [V, C]
 *   per layer l (model.layers.l.):
 *     input_layernorm.weight [C]
 *     self_attn.q_proj.weight [Hq*D, C]   (+ .bias [Hq*D] when attn_bias)
 *     self_attn.k_proj.weight [Hkv*D, C]  (+ .bias)
 *     self_attn.v_proj.weight [Hkv*D, C]  (+ .bias)
 *     self_attn.o_proj.weight [C, Hq*D]
 *     post_attention_layernorm.weight [C]
 *     mlp.gate_proj.weight [I, C], mlp.up_proj.weight [I, C], mlp.down_proj.weight [C, I]
 *   model.norm.weight [C]
 *   lm_head.weight [V, C]                 (only when not tied)
 * LoRA tensors (PEFT names, base_model.model. prefix left to the PEFT writer):
 * per layer, per enabled target in the order q,k,v,o,gate,up,down:
 *   <module>.lora_A.weight [r, in], <module>.lora_B.weight [out, r];
 *   y = x W^T + b + (alpha/r) (x A^T) B^T.
 *
 * Token layout: ids and targets are i32 [B, T] (token n = b*T + t); targets of
 * FP_IGNORE_INDEX (-100) are skipped by the loss. The loss is the mean over the
 * valid targets of the micro-batch.
 *
 * Ownership: the model owns its tensors; free it before its context.
 * Threading: one thread at a time per model (it records into streams).
 */
#ifndef FEDPROXY_MODEL_H
#define FEDPROXY_MODEL_H

#include <stdint.h>

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_llama_config {
    int64_t hidden;       /* C */
    int64_t layers;       /* L */
    int64_t heads;        /* Hq */
    int64_t kv_heads;     /* Hkv, divides Hq */
    int64_t head_dim;     /* D, even */
    int64_t intermediate; /* I */
    int64_t vocab;        /* V */
    float rms_eps;
    float rope_theta;
    int tied;      /* lm_head shares embed_tokens */
    int attn_bias; /* q/k/v projections have biases (Qwen2) */
    /* Device storage of the linear weights (q,k,v,o,gate,up,down and an untied
     * lm_head): FP_F32 (0, the default), or FP_F16 / FP_BF16 for a frozen base
     * (inference and LoRA training; half the memory). Embeddings, norms and
     * biases stay f32; LoRA tensors, gradients and optimizer state are f32, and
     * every product accumulates in f32. Host copies (upload/download, files)
     * stay f32: uploads round to nearest even. Full fine-tuning needs FP_F32. */
    fp_dtype base_dtype;
} fp_llama_config;

/* FP_EINVAL with a message naming the bad field, else 0. */
int fp_llama_config_check(const fp_llama_config *c);

/* Parameter count (elements) of the model. */
int64_t fp_llama_param_count(const fp_llama_config *c);

/* LoRA targets. */
enum {
    FP_LORA_Q = 1u << 0,
    FP_LORA_K = 1u << 1,
    FP_LORA_V = 1u << 2,
    FP_LORA_O = 1u << 3,
    FP_LORA_GATE = 1u << 4,
    FP_LORA_UP = 1u << 5,
    FP_LORA_DOWN = 1u << 6,
    FP_LORA_ALL = 0x7f
};

typedef struct fp_lora_config {
    int rank;         /* r >= 1 */
    float alpha;      /* scale = alpha / r */
    unsigned targets; /* FP_LORA_* bits, nonzero */
    uint64_t layers;  /* bit l: layer l gets adapters (models of up to 64 layers);
                       * 0 = every layer. Layers without adapters are skipped by
                       * the packed layout (Offsite-Tuning trains only some). */
} fp_lora_config;

/* Parses "q,k,v,o,gate,up,down" (or "all") into FP_LORA_* bits. FP_EINVAL names an unknown module. */
int fp_lora_targets_parse(unsigned *out, const char *list);

/* Element count of the LoRA tensors for this model. */
int64_t fp_lora_param_count(const fp_llama_config *c, const fp_lora_config *lc);

typedef struct fp_model fp_model;

/* One tensor of the packed layout: HF/PEFT name, element offset in the packed
 * layout, element count and 2-D shape (cols = 1 for vectors). */
typedef struct fp_param_info {
    char name[96];
    int64_t offset, numel, rows, cols;
} fp_param_info;

/* Creates the model and its parameter arena (zeroed) on ctx. */
int fp_model_create(fp_model **out, fp_ctx *ctx, const fp_llama_config *cfg);
void fp_model_free(fp_model *m);
const fp_llama_config *fp_model_cfg(const fp_model *m);
fp_ctx *fp_model_ctx(const fp_model *m);

/* Tensors of the base model (lora = 0) or of the adapters (lora = 1). */
int fp_model_tensor_count(const fp_model *m, int lora);
int fp_model_tensor_info(const fp_model *m, int lora, int i, fp_param_info *out);
/* Index of a tensor by name, or FP_ENOTFOUND. */
int fp_model_tensor_find(const fp_model *m, int lora, const char *name);

/* Packed host <-> device copies of all parameters (n must be the packed
 * element count: fp_llama_param_count or fp_lora_param_count). */
int fp_model_upload(fp_model *m, int lora, const float *packed, int64_t n);
int fp_model_download(const fp_model *m, int lora, float *packed, int64_t n);
/* One tensor by index (numel elements). */
int fp_model_upload_tensor(fp_model *m, int lora, int i, const float *data, int64_t numel);
/* Gradients of the trained set (lora = 1 when LoRA is enabled, else 0), packed. */
int fp_model_download_grads(const fp_model *m, float *packed, int64_t n);

/* Fills the base with a random init (normal * 0.02, norms 1; deterministic by seed). */
int fp_model_init_random(fp_model *m, uint64_t seed);

/* Adds LoRA adapters (and makes them the trained set; the base is frozen).
 * A gets Kaiming-uniform(a = sqrt 5) like PEFT (bound 1/sqrt(in)), B zeros,
 * from seed. Once per model. lc->layers != 0 puts adapters on those layers
 * only (a mask within the model's layers, models of at most 64 layers:
 * FP_EINVAL otherwise); the other layers have no LoRA tensors, no LoRA
 * activations and run the frozen base, in training and in KV inference. */
int fp_model_lora_enable(fp_model *m, const fp_lora_config *lc, uint64_t seed);
/* 1 and *lc filled when LoRA is enabled, else 0. */
int fp_model_lora_get(const fp_model *m, fp_lora_config *lc);

/* LoRA dropout (PEFT's lora_dropout, default 0): on training plans each
 * adapter sees dropout(x) = x * keep / (1 - p) instead of x (the base product
 * keeps x); evaluation plans and KV-cache inference never drop. The mask is a
 * hash, not stored: element i (= token * in + column) of the input of layer l's
 * target t (salt = 7 l + t, t in q,k,v,o,gate,up,down order) in the forward
 * numbered ctr is kept iff
 *   fmix32((i * 0x9E3779B1) ^ key) >= threshold,
 *   key = fp_lora_dropout_key(seed, ctr, salt), threshold = floor(p * 2^32)
 * (fmix32 is MurmurHash3's finaliser). Every forward on a training plan uses
 * the counter and then advances it; fp_model_lora_dropout_seek sets it (the
 * trainer seeks to step * accum + micro-batch, so resumed runs repeat their
 * masks). Settable any time; p in [0, 1). */
int fp_model_lora_set_dropout(fp_model *m, float p, uint64_t seed);
float fp_model_lora_dropout(const fp_model *m);
void fp_model_lora_dropout_seek(fp_model *m, uint64_t ctr);
uint32_t fp_lora_dropout_key(uint64_t seed, uint64_t ctr, uint32_t salt);
uint32_t fp_lora_dropout_threshold(float p);
int fp_lora_dropout_keep(uint32_t key, uint32_t i, uint32_t threshold);

/* The trained set's parameter and gradient arenas as single tensors (views
 * over every trained tensor, padding included: padding stays zero), for
 * whole-arena optimizer steps and norms. Gradients exist after fp_model_plan
 * with training = 1. */
fp_tensor *fp_model_train_params(fp_model *m);
fp_tensor *fp_model_train_grads(fp_model *m);

/* Device bytes for a (B, T) plan: activations (training: saved for the
 * backward, plus gradient scratch), parameters, gradients and `opt_states`
 * optimizer tensors of the trained set's size (2 for AdamW, 0 for SGD). */
typedef struct fp_plan_bytes {
    uint64_t params, grads, optimizer, activations, total;
} fp_plan_bytes;
int fp_model_plan_bytes(fp_plan_bytes *out, const fp_llama_config *c, const fp_lora_config *lc, int64_t B,
                        int64_t T, int training, int opt_states);

/* training argument of fp_model_plan / fp_model_plan_bytes */
#define FP_PLAN_INFERENCE 0
#define FP_PLAN_TRAINING 1
#define FP_PLAN_ACTIVATIONS 2 /* every layer's activations kept (fp_model_hidden), no gradients, no backward */

/* Allocates the activation plan (and the gradient arena when training = 1)
 * for batches of up to B sequences of up to T tokens. Inference plans
 * (training = 0) keep one layer's activations, shared by every layer;
 * training = 2 keeps every layer's (a teacher whose hidden states are read)
 * without gradients, so 16-bit weights are fine and no gradient memory is
 * spent. Full fine-tuning
 * over 16-bit weights is FP_EUNSUPPORTED. Checks the total against the
 * device's memory first: FP_EDEVMEM with the bytes needed and available and a
 * suggested smaller B or T. Replaces an earlier plan. */
int fp_model_plan(fp_model *m, int64_t B, int64_t T, int training, int opt_states);

/* Records the forward for ids (i32 [B, T] on the device, B and T within the
 * plan) and, when targets is not NULL, the loss. Logits stay on the device
 * (fp_model_logits). */
int fp_model_forward(fp_model *m, fp_stream *s, const fp_tensor *ids, const fp_tensor *targets);
/* Records the backward of the last recorded forward (which had targets), for
 * dloss * the mean loss: gradients are ADDED into the gradient arena (zero it
 * with fp_model_zero_grads first). Full fine-tuning without LoRA, LoRA-only with. */
int fp_model_backward(fp_model *m, fp_stream *s, float dloss);
/* fp_model_backward with extra gradients, for distillation: dlogits_extra
 * (NULL, or f32 [B*T, V] on the device) is added to the gradient of the
 * logits (after dloss * the mean loss's own); dhidden_extra (NULL, or L+1
 * entries, each NULL or f32 [B*T, C]) adds, for l < L, a gradient on the
 * residual stream entering layer l (what fp_model_hidden(m, l) returns) and,
 * for l = L, on the final residual before the final norm. The extra tensors
 * are read when the stream runs. dloss may be 0 (only the extras). */
int fp_model_backward_ex(fp_model *m, fp_stream *s, float dloss, const fp_tensor *dlogits_extra,
                         const fp_tensor *const *dhidden_extra);
/* Zeroes the gradient arena now (not recorded; nothing pending may write it). */
int fp_model_zero_grads(fp_model *m);

/* After the stream ran: the mean loss and the count of valid targets. */
int fp_model_loss(const fp_model *m, float *loss, int64_t *n_valid);
/* The logits of the last forward: f32 [B*T, V] view (valid until the next plan). */
const fp_tensor *fp_model_logits(const fp_model *m);
/* The residual stream of the last forward (after its stream ran), f32
 * [B*T, C] into out (n = B*T*C): for layer l < L the residual entering layer
 * l (layer 0: the embeddings), for l = L the final residual before the final
 * norm. Layers below L need a training plan (an inference plan shares one
 * layer's buffers: FP_ESTATE). Block influence of layer l compares l and l+1. */
int fp_model_hidden(const fp_model *m, int64_t layer, float *out, int64_t n);
/* The same residual as a device view (valid until the next plan; NULL when
 * there is none), for device-side consumers such as distillation losses. */
const fp_tensor *fp_model_hidden_tensor(const fp_model *m, int64_t layer);
/* Per-token losses of the last forward, f32 [B*T] (0 for ignored targets). */
const fp_tensor *fp_model_token_losses(const fp_model *m);

/* Convenience for tests and tools: uploads ids/targets (host i32 [B*T]), runs
 * forward (+ backward when backward != 0, with zeroed gradients first) in one
 * stream and returns the loss. */
int fp_model_step_host(fp_model *m, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T, int backward,
                       float *loss);

/* ---- inference with a KV cache ------------------------------------------------- */

/* Allocates a KV cache (f32 [max_tokens, Hkv*D] per layer for keys and values)
 * and activations for chunks of up to max_chunk tokens (batch 1), independent
 * of the training plan; replaces an earlier cache. Checked against the
 * device's memory like fp_model_plan (FP_EDEVMEM with the bytes). Enabling
 * LoRA afterwards drops the cache. */
int fp_model_kv_begin(fp_model *m, int64_t max_tokens, int64_t max_chunk);
/* Appends n (1..max_chunk) tokens at the cache position, runs them (RoPE at
 * their positions; each attends to every cached token up to itself through
 * fp_attention_decode) and advances the position by n. logits: NULL, or
 * [V] for the last token (all = 0) or [n, V] for every fed token (all = 1). */
int fp_model_kv_feed(fp_model *m, const int32_t *ids, int64_t n, float *logits, int all);
/* Tokens in the cache (0 without one). */
int64_t fp_model_kv_pos(const fp_model *m);
/* Empties the cache (keeps its memory) / frees it. */
void fp_model_kv_reset(fp_model *m);
void fp_model_kv_free(fp_model *m);

/* Sampling: temperature <= 0 is greedy (argmax, the lowest id on ties);
 * otherwise logits / temperature, then top_k (> 0: keep the k largest), then
 * top_p (in (0, 1): keep the smallest set of most likely tokens whose
 * probability reaches top_p), renormalise and draw from the seeded RNG. */
typedef struct fp_sampler {
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
} fp_sampler;

/* One token from logits [V]; *rng is the RNG state (start it at the seed).
 * Returns the id (>= 0) or a negative FP_E* code (bad arguments). */
int32_t fp_sample(const float *logits, int64_t V, const fp_sampler *sp, uint64_t *rng);

/* Generates up to max_new tokens after prompt[0..n_prompt) (n_prompt >= 1):
 * one prefill chunk through the KV cache, then one token per decode step
 * (fp_model_kv_feed), sampling with sp (NULL: greedy). Stops after a token
 * listed in eos[0..n_eos) (that token is kept). out gets the new tokens (room
 * for max_new), *n_out their count. The cache is left holding the sequence. */
int fp_model_generate(fp_model *m, const int32_t *prompt, int64_t n_prompt, int64_t max_new, const fp_sampler *sp,
                      const int32_t *eos, int n_eos, int32_t *out, int64_t *n_out);

/* How fp_model_generate decodes on this build ("kv-cache: fp_attention_decode"). */
const char *fp_model_generate_mode(void);

/* ---- Hugging Face files ------------------------------------------------------ */

/* Creates a model from a Hugging Face directory: config.json (model_config.h's
 * strict parser) and model.safetensors or a sharded set (F32, F16 or BF16,
 * converted to f32), every tensor checked against the config. */
int fp_model_load_dir(fp_model **out, fp_ctx *ctx, const char *dir);
/* The same with the linear weights stored as base_dtype (FP_F32, FP_F16 or FP_BF16). */
int fp_model_load_dir_as(fp_model **out, fp_ctx *ctx, const char *dir, fp_dtype base_dtype);

/* Writes config.json and model.safetensors (F32) of the base model into dir
 * (created), each atomically. */
int fp_model_save_dir(const fp_model *m, const char *dir);

/* Writes the adapters as adapter_model.safetensors (PEFT tensor names with the
 * base_model.model. prefix, F32) and adapter_config.json (r, lora_alpha,
 * lora_dropout, target_modules, ...) into dir, through peft.h (one
 * implementation of PEFT's layout). */
int fp_model_save_adapter(const fp_model *m, const char *dir);
/* Loads adapters written by fp_model_save_adapter (or PEFT) through peft.h;
 * enables LoRA (rank, alpha, targets from the pairs present) when it is not
 * enabled yet, else the rank and targets must match. One rank and alpha for
 * every pair (FP_EUNSUPPORTED otherwise); (layer, module) pairs the file lacks
 * stay zero (no contribution); shapes are checked against the model
 * (FP_EFORMAT). lora_dropout is taken over for further training. */
int fp_model_load_adapter(fp_model *m, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
