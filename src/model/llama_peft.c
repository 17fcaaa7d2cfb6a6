/* The PEFT side of the bridge (llama_peft.h): model adapters to and from
 * fp_lora_adapter, the one implementation of PEFT's files (peft.h). */
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/peft.h"
#include "llama_peft.h"

int llm_peft_save(const char *dir, int r, float alpha, float dropout, const llm_peft_pair *pairs, size_t n)
{
    fp_lora_adapter a;
    fp_lora_adapter_init(&a, r, alpha, dropout, "");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = fp_lora_adapter_add(&a, pairs[i].layer, pairs[i].module, pairs[i].rank, pairs[i].in, pairs[i].out,
                                 pairs[i].alpha, pairs[i].A, pairs[i].B);
    if (!rc)
        rc = fp_lora_adapter_save(&a, dir);
    fp_lora_adapter_free(&a);
    return rc;
}

void llm_peft_free(llm_peft_pair *pairs, size_t n)
{
    for (size_t i = 0; pairs && i < n; i++) {
        free(pairs[i].A);
        free(pairs[i].B);
    }
    free(pairs);
}

int llm_peft_load(const char *dir, int *r, float *alpha, float *dropout, llm_peft_pair **pairs, size_t *n)
{
    fp_lora_adapter a;
    memset(&a, 0, sizeof a);
    int rc = fp_lora_adapter_load(&a, dir);
    if (rc)
        return rc;
    llm_peft_pair *p = calloc(a.n ? a.n : 1, sizeof *p);
    if (!p) {
        fp_lora_adapter_free(&a);
        return fp_seterr(FP_ENOMEM, "adapter load: out of host memory");
    }
    for (size_t i = 0; i < a.n; i++) { /* take ownership of the arrays */
        const fp_lora_pair *q = &a.pairs[i];
        p[i] = (llm_peft_pair){q->layer, q->module, q->rank, q->in, q->out, q->alpha, q->A, q->B};
        a.pairs[i].A = a.pairs[i].B = NULL;
    }
    *r = a.r;
    *alpha = a.lora_alpha;
    *dropout = a.lora_dropout;
    *pairs = p;
    *n = a.n;
    fp_lora_adapter_free(&a);
    return 0;
}
