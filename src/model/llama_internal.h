/* Internal state of the device transformer (include/fedproxy/model.h). */
#ifndef FP_LLAMA_INTERNAL_H
#define FP_LLAMA_INTERNAL_H

#include "fedproxy/model.h"
#include "fedproxy/ops_attention.h"
#include "fedproxy/ops_basic.h"
#include "fedproxy/ops_lora.h"
#include "fedproxy/ops_train.h"

#define LLM_ALIGN 256 /* bytes: the largest minStorageBufferOffsetAlignment Vulkan allows */
#define LLM_NT 7      /* LoRA targets q,k,v,o,gate,up,down */

typedef struct llm_param {
    fp_param_info info;
    int64_t arena_off; /* element offset in the padded device arena (the 16-bit one when half) */
    int half;          /* stored as cfg.base_dtype (16-bit) in half_arena */
    fp_tensor *view;   /* parameter view ([rows, cols] or [rows]) */
    fp_tensor *gview;  /* gradient view (trained set only, after planning) */
} llm_param;

typedef struct llm_layer_ix {
    int attn_norm, wq, bq, wk, bk, wv, bv, wo, mlp_norm, wg, wu, wd; /* -1: absent */
} llm_layer_ix;

typedef struct llm_layer_act {
    fp_tensor *resid, *a, *rstd1, *q, *k, *v, *q4, *k4, *v4, *o, *o4, *lse, *mid, *m, *rstd2, *gate, *up, *h;
    fp_tensor *u[LLM_NT]; /* LoRA x A^T [N, r] (NULL when the target has no adapter) */
} llm_layer_act;

typedef struct llm_plan {
    int64_t B, T, N;
    int training, opt_states;
    fp_tensor *arena;
    fp_tensor **views;
    int nviews, cap;
    llm_layer_act *la;
    fp_tensor *resid_final, *f, *rstdf, *logits, *losses, *lse_ce, *stats, *ones, *tmp;
    /* training scratch */
    fp_tensor *dres, *dtmp, *dm, *dh, *dgate, *dup, *dO, *dq, *dk, *dv, *dO4, *dq4, *dk4, *dv4, *emb_work;
    fp_tensor *lg;                   /* LoRA g [N, r] */
    fp_tensor *xd_C, *xd_qd, *xd_I;  /* LoRA dropout scratch seen as [N, C], [N, Hq*D], [N, I] */
    uint64_t drop_ctr;               /* the dropout counter of the last forward */
    int drop;                        /* the last forward used dropout */
    const fp_tensor *ids, *targets;  /* of the last forward */
    int have_forward;
    int acts_valid;                  /* a forward was recorded on this plan (its residuals are readable) */
} llm_plan;

struct fp_model {
    fp_ctx *ctx;
    fp_llama_config cfg;
    int np;
    llm_param *p;
    fp_tensor *arena;
    int64_t arena_elems;
    fp_tensor *half_arena; /* 16-bit linear weights (cfg.base_dtype != FP_F32), else NULL */
    int64_t half_elems;
    llm_layer_ix *L;
    int embed, final_norm, head;
    /* LoRA */
    int lora_on;
    fp_lora_config lc;
    int nl;
    llm_param *lp;
    fp_tensor *lora_arena;
    int64_t lora_arena_elems;
    int (*lix)[LLM_NT]; /* index of A in lp (B = A + 1), -1 if none */
    struct llm_kv *kv; /* KV-cache inference state (llama_gen.c), NULL when none */
    float drop_p;       /* LoRA dropout (llama_drop.c) */
    uint64_t drop_seed, drop_ctr;
    /* gradients of the trained set */
    fp_tensor *grad_arena;
    llm_plan plan;
};

/* C[M,N] = alpha op(A) op(B) + beta C, f32 row-major; ta: A is stored [K, M]
 * (else [M, K]); tb: B is stored [N, K] (else [K, N]). beta = 0 never reads C. */
int llm_matmul(fp_stream *s, fp_tensor *C, const fp_tensor *A, int ta, const fp_tensor *B, int tb, int64_t M,
               int64_t N, int64_t K, float alpha, float beta);

/* The fp_matmul variant the last llm_matmul on this thread recorded ("" if none). */
const char *llm_matmul_last_variant(void);

/* y [N, out] = x W^T (+ bias via the ones [N] vector) (+ LoRA, u [N, r] receiving x A^T)
 * for layer l's target t (weight index wi, bias index bi or -1). */
int llm_lin_fwd(fp_model *m, fp_stream *s, fp_tensor *y, const fp_tensor *x, int64_t N, const fp_tensor *ones,
                int64_t l, int t, int wi, int bi, fp_tensor *u, int drop);

/* Bytes of the base parameter arenas: f32 and 16-bit (0 when base_dtype is f32). */
void llm_base_arena_bytes(const fp_llama_config *c, uint64_t *f32_bytes, uint64_t *half_bytes);

/* y = dropout(x) with the mask of forward ctr and salt (model's p and seed); y may be x. */
int llm_dropout(fp_model *m, fp_stream *s, fp_tensor *y, const fp_tensor *x, uint64_t ctr, uint32_t salt);

/* Layer l has adapters under lc (layers mask; 0 = every layer). */
static inline int llm_lora_has_layer(const fp_lora_config *lc, int64_t l)
{
    return !lc->layers || (l < 64 && ((lc->layers >> l) & 1u));
}

void llm_plan_free(fp_model *m);
void llm_kv_free(fp_model *m);
int64_t llm_align_elems(int64_t n);

#endif
