/* The engine's one matmul entry point: every dense product of the model
 * (forward, backward, LoRA, bias adds as rank-1 products, the LM head, KV-cache
 * inference) goes through llm_matmul, which records the matmul family's
 * fp_matmul (include/fedproxy/ops_matmul.h: variant chosen per device and
 * shape; B in f32, f16 or bf16 for 16-bit frozen weights). */
#include <stdint.h>

#include "error_internal.h"
#include "fedproxy/ops_matmul.h"
#include "llama_internal.h"

static _Thread_local const char *g_last_variant = "";

const char *llm_matmul_last_variant(void) { return g_last_variant ? g_last_variant : ""; }

int llm_matmul(fp_stream *s, fp_tensor *C, const fp_tensor *A, int ta, const fp_tensor *B, int tb, int64_t M,
               int64_t N, int64_t K, float alpha, float beta)
{
    if (!s || !C || !A || !B)
        return fp_seterr(FP_EINVAL, "model matmul: NULL argument");
    if (M <= 0 || N <= 0 || K <= 0)
        return fp_seterr(FP_ESHAPE, "model matmul: bad sizes %lldx%lldx%lld", (long long)M, (long long)N,
                         (long long)K);
    /* explicit leading dimensions: operands may be larger than the product (views of arenas) */
    fp_matmul_desc d = fp_matmul_desc_packed(M, N, K, ta, tb, alpha, beta);
    int rc = fp_matmul(s, C, A, B, &d);
    if (!rc)
        g_last_variant = d.chosen;
    return rc;
}
