/* An independent double-precision reference of the Llama-family transformer
 * (Llama, Qwen2, Mistral shapes), forward and backward, for tests only.
 *
 * It shares no code with the device path (no fedproxy headers, no fp_ref_*
 * kernels): plain loops in double precision, written from the model's
 * definition (Hugging Face LlamaForCausalLM / Qwen2ForCausalLM):
 *   x0  = E[ids]
 *   per layer: a = RMSNorm(x) * w_attn_norm
 *              q = a Wq^T (+ bq), k = a Wk^T (+ bk), v = a Wv^T (+ bv)
 *              q, k = RoPE (rotate-half, inv_freq_i = theta^(-2i/D), pos = t)
 *              o = softmax(q k^T / sqrt(D), causal) v   (query head h uses kv head h / (Hq/Hkv))
 *              x = x + o Wo^T
 *              m = RMSNorm(x) * w_mlp_norm
 *              x = x + (silu(m Wg^T) * (m Wu^T)) Wd^T
 *   logits = RMSNorm(x) * w_final_norm · H^T   (H = E when tied)
 *   loss = mean over targets != -100 of (logsumexp(logits) - logits[target])
 * LoRA on a linear y = x W^T: y += (alpha/r) (x A^T) B^T, A [r, in], B [out, r].
 *
 * Parameter layout (flat double array, this order, each tensor row-major in
 * the nn.Linear [out, in] layout):
 *   embed [V, C]
 *   per layer l: attn_norm [C], wq [Hq*D, C], bq [Hq*D]*, wk [Hkv*D, C], bk [Hkv*D]*,
 *                wv [Hkv*D, C], bv [Hkv*D]*, wo [C, Hq*D], mlp_norm [C],
 *                w_gate [I, C], w_up [I, C], w_down [C, I]       (* only with attn_bias)
 *   final_norm [C]
 *   lm_head [V, C]  (only when untied)
 * LoRA layout: per layer, per enabled target in the order q,k,v,o,gate,up,down:
 *   A [r, in], B [out, r].
 */
#ifndef REF_LLAMA_H
#define REF_LLAMA_H

#include <stdint.h>

typedef struct ref_cfg {
    int hidden, layers, heads, kv_heads, head_dim, inter, vocab;
    double rms_eps, rope_theta;
    int tied, attn_bias;
} ref_cfg;

/* LoRA targets: bit i is target i in q,k,v,o,gate,up,down. */
enum { REF_Q = 0, REF_K, REF_V, REF_O, REF_GATE, REF_UP, REF_DOWN, REF_NTARGET };

typedef struct ref_lora {
    int rank;
    double alpha;
    unsigned targets; /* bitmask of 1u << REF_* */
    /* LoRA dropout (0: none): the adapter of layer l, target t sees
     * x * keep / (1 - dropout), keep(i) for element i = n*in + col as specified
     * in include/fedproxy/model.h (hash of drop_seed, drop_ctr, salt 7l + t),
     * re-implemented here from that text. */
    double dropout;
    uint64_t drop_seed, drop_ctr;
} ref_lora;

#define REF_MAX_TENSORS 4096

typedef struct ref_tensor_info {
    char name[96];   /* HF-style: model.layers.0.self_attn.q_proj.weight */
    int64_t offset;  /* element offset in the flat array */
    int64_t numel;
    int64_t rows, cols; /* cols = 1 for vectors */
} ref_tensor_info;

/* Lists the parameters in layout order; returns the count (<= max) and sets
 * *total to the total element count. */
int ref_param_layout(const ref_cfg *c, ref_tensor_info *out, int max, int64_t *total);
/* The same for the LoRA tensors (names as PEFT's: ...q_proj.lora_A.weight). */
int ref_lora_layout(const ref_cfg *c, const ref_lora *lo, ref_tensor_info *out, int max, int64_t *total);

/* Forward (and backward when dparams or dlora is not NULL) on ids/targets
 * [B, T] (int32, target -100 ignored). logits [B*T, V] may be NULL. Returns
 * the mean loss (0 if no valid target). lora/lparams may be NULL (no LoRA).
 * Gradients are written (not accumulated), for the mean loss. When lora is
 * used, dparams still gets the frozen base's gradients if not NULL. */
double ref_llama_run(const ref_cfg *c, const double *params, const ref_lora *lora, const double *lparams,
                     const int32_t *ids, const int32_t *targets, int B, int T, double *logits, double *dparams,
                     double *dlora);

/* AdamW (decoupled weight decay, bias correction; step is 1-based):
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd p). */
void ref_adamw(double *p, const double *g, double *m, double *v, int64_t n, double lr, double b1, double b2,
               double eps, double wd, int step);

/* Global-norm clipping factor min(1, max_norm / (norm + 1e-6)) (1 if max_norm <= 0). */
double ref_clip_factor(const double *g, int64_t n, double max_norm);

#endif
