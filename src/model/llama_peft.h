/* A bridge between the device transformer and the PEFT adapter files
 * (include/fedproxy/peft.h), so that llama_io.c needs only model.h and
 * llama_peft.c only peft.h. Module t is 0..6 = q, k, v, o, gate, up, down in
 * both (model.h's target bit FP_LORA_x is 1 << peft.h's FP_LORA_MOD_x). */
#ifndef FP_LLAMA_PEFT_H
#define FP_LLAMA_PEFT_H

#include <stddef.h>

typedef struct llm_peft_pair {
    int layer, module, rank, in, out;
    float alpha;
    float *A; /* [rank, in] */
    float *B; /* [out, rank] */
} llm_peft_pair;

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors through
 * fp_lora_adapter_save (A and B are copied). */
int llm_peft_save(const char *dir, int r, float alpha, float dropout, const llm_peft_pair *pairs, size_t n);

/* Reads an adapter through fp_lora_adapter_load: *r and *alpha are the
 * adapter's defaults; *pairs (malloc'd, with malloc'd A/B; free with
 * llm_peft_free) sorted by layer, then module. */
int llm_peft_load(const char *dir, int *r, float *alpha, float *dropout, llm_peft_pair **pairs, size_t *n);
void llm_peft_free(llm_peft_pair *pairs, size_t n);

#endif
