/* fedproxy: the federation's flat LoRA vector.
 *
 * The federation moves one float vector per client and round: the adapter of
 * the proxy model, laid out exactly as the engine's packed LoRA layout
 * (model.h): per layer with adapters (lora_config.layers; 0 = all), per target
 * in q, k, v, o, gate, up, down order, A [R, in] then B [out, R], back to back,
 * with R the layout's (the server's, largest) rank. A client training a smaller
 * rank r <= R uses the first r rows of every A and the first r columns of every
 * B; the rest of its vector is zero (HetLoRA's zero padding). The scale is
 * alpha / R for every client, so a padded rank-r adapter means the same product
 * in the rank-R layout.
 *
 * This header is host-only (no device): the server builds, initialises and
 * saves adapters with it, aggregators (hetlora, flexlora) walk the slots.
 *
 * Ownership: fp_lora_vec_layout owns its slots (free with
 * fp_lora_vec_layout_free). Threading: no shared state.
 */
#ifndef FEDPROXY_LORA_VEC_H
#define FEDPROXY_LORA_VEC_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_lora_slot {
    int layer;
    int module;         /* 0..6 = q, k, v, o, gate, up, down (peft.h's FP_LORA_MOD_*) */
    int64_t in, out;    /* the base weight is [out, in] */
    size_t a_off;       /* A [R, in] starts here in the vector */
    size_t b_off;       /* B [out, R] starts here */
} fp_lora_slot;

typedef struct fp_lora_vec_layout {
    fp_lora_config lc;  /* rank R, alpha, targets, layers */
    int64_t n_layers;   /* of the model */
    size_t n;           /* slots */
    fp_lora_slot *slots;
    size_t dim;         /* vector length = fp_lora_param_count(cfg, lc) */
} fp_lora_vec_layout;

/* The layout for cfg and lc (checked: rank >= 1, nonzero targets, layers within the model). */
int fp_lora_vec_layout_build(fp_lora_vec_layout *out, const fp_llama_config *cfg, const fp_lora_config *lc);
void fp_lora_vec_layout_free(fp_lora_vec_layout *l);

/* PEFT-style initial adapter: every A Kaiming-uniform (bound 1/sqrt(in)) from
 * a ChaCha20 stream keyed by seed, every B zero. Deterministic in seed. */
int fp_lora_vec_init(float *vec, size_t dim, const fp_lora_vec_layout *l, uint64_t seed);

/* Zeroes the parts of vec beyond rank r (rows r..R-1 of each A, columns r..R-1 of each B). */
int fp_lora_vec_truncate(float *vec, size_t dim, const fp_lora_vec_layout *l, int r);

/* Writes vec as a PEFT adapter directory (adapter_config.json +
 * adapter_model.safetensors, atomically) with rank R, the layout's alpha and
 * dropout p. */
int fp_lora_vec_save_peft(const fp_lora_vec_layout *l, const float *vec, size_t dim, float dropout,
                          const char *base_model, const char *dir);
/* Reads a PEFT adapter directory into vec (zeroed first): each pair must be a
 * slot of the layout with rank <= R (smaller ranks are zero-padded; FP_EFORMAT
 * otherwise); B is rescaled by (alpha_pair/rank) / (alpha/R) so each product
 * is what the file meant. */
int fp_lora_vec_load_peft(float *vec, size_t dim, const fp_lora_vec_layout *l, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
