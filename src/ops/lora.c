/* LoRA forward and backward (include/fedproxy/ops_lora.h), composed from the
 * matmul family's fp_matmul (include/fedproxy/ops_matmul.h): every product,
 * the frozen W's in f32, f16 or bf16 included, runs the variant the device's
 * profile and tuning pick for its shape. Why: the op used to have its own
 * 32x32 tiled kernel, which measured 1.55 GFLOP/s for a fused forward and
 * backward at N=1024, in=out=512, r=16 on lavapipe, where fp_matmul's tuned
 * variants run the same W products about ten times faster (fp bench kernels
 * --only train_ops, "lora_fwd_bwd"); and it ran no GPU-specific variant.
 * Each product is one fp_matmul; the runtime inserts the barriers. */
#include <stdio.h>
#include <string.h>

#include "fedproxy/ops_lora.h"
#include "fedproxy/ops_matmul.h"
#include "error_internal.h"

static _Thread_local char g_last[64];

const char *fp_lora_last_pipeline(void) { return g_last; }

/* C [M, N] (leading dimension N) = alpha * op(A) op(B) + beta * C, with op(A)
 * [M, K] and op(B) [K, N]; A is stored [M, K] (ta: [K, M]) and B [K, N] (tb:
 * [N, K]), rows packed. The op's name is the variant of its first product,
 * replaced by that of a product with name_it (the one with W). */
static int mm(fp_stream *s, fp_tensor *c, const fp_tensor *a, int ta, const fp_tensor *b, int tb, int64_t M,
              int64_t N, int64_t K, float alpha, float beta, int name_it)
{
    fp_matmul_desc d = fp_matmul_desc_packed(M, N, K, ta, tb, alpha, beta);
    int rc = fp_matmul(s, c, a, b, &d);
    if (!rc && (name_it || !g_last[0]))
        snprintf(g_last, sizeof g_last, "%s", d.chosen ? d.chosen : "");
    return rc ? fp_adderr(rc, "lora: the %lldx%lldx%lld product", (long long)M, (long long)N, (long long)K) : 0;
}

static int64_t last(const fp_tensor *t) { return t->shape[t->ndim - 1]; }
static int64_t rows(const fp_tensor *t) { return last(t) ? fp_tensor_numel(t) / last(t) : 0; }

static int need(const char *op, const char *what, const fp_tensor *t, int64_t r, int64_t c, int any_w)
{
    if (!t)
        return fp_seterr(FP_EINVAL, "%s: %s is NULL", op, what);
    if (any_w ? (t->dtype != FP_F32 && t->dtype != FP_F16 && t->dtype != FP_BF16) : t->dtype != FP_F32)
        return fp_seterr(FP_ESHAPE, "%s: %s must be %s, not %s", op, what, any_w ? "f32, f16 or bf16" : "f32",
                         fp_dtype_name(t->dtype));
    if (last(t) != c || rows(t) != r)
        return fp_seterr(FP_ESHAPE, "%s: %s must be [%lld, %lld], is %lld rows of %lld", op, what, (long long)r,
                         (long long)c, (long long)rows(t), (long long)last(t));
    if (fp_tensor_numel(t) > (int64_t)UINT32_MAX / 2)
        return fp_seterr(FP_EUNSUPPORTED, "%s: %s has more than 2^31 elements", op, what);
    return 0;
}

/* Reads in, out, r from x, W, A and checks A, B against them. */
static int dims(const char *op, const fp_tensor *x, const fp_tensor *W, const fp_tensor *A, const fp_tensor *B,
                int64_t *N, int64_t *in, int64_t *out, int64_t *r)
{
    if (!x || !W || !A || !B)
        return fp_seterr(FP_EINVAL, "%s: NULL tensor", op);
    if (W->ndim != 2 || A->ndim != 2 || B->ndim != 2)
        return fp_seterr(FP_ESHAPE, "%s: W, A and B must be 2-D (have %d, %d, %d dims)", op, W->ndim, A->ndim,
                         B->ndim);
    *out = W->shape[0];
    *in = W->shape[1];
    *r = A->shape[0];
    *N = rows(x);
    int rc;
    if (*r < 1 || *in < 1 || *out < 1)
        return fp_seterr(FP_ESHAPE, "%s: empty W [%lld, %lld] or A [%lld, ...]", op, (long long)*out,
                         (long long)*in, (long long)*r);
    if ((rc = need(op, "x", x, *N, *in, 0)) || (rc = need(op, "W", W, *out, *in, 1)) ||
        (rc = need(op, "A (lora_A.weight)", A, *r, *in, 0)) || (rc = need(op, "B (lora_B.weight)", B, *out, *r, 0)))
        return rc;
    return 0;
}

int fp_lora_fwd(fp_stream *s, fp_tensor *y, fp_tensor *u, const fp_tensor *x, const fp_tensor *W,
                const fp_tensor *A, const fp_tensor *B, float alpha)
{
    const char *op = "lora_fwd";
    int64_t N, in, out, r;
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = dims(op, x, W, A, B, &N, &in, &out, &r)) || (rc = need(op, "y", y, N, out, 0)) ||
        (rc = need(op, "u", u, N, r, 0)))
        return rc;
    if (y == x || u == x)
        return fp_seterr(FP_EINVAL, "%s: outputs must not alias x", op);
    float sc = alpha / (float)r;
    g_last[0] = 0;
    /* u = x A^T; y = x W^T (the op's name: its variant); y += s u B^T */
    if ((rc = mm(s, u, x, 0, A, 1, N, r, in, 1.0f, 0.0f, 0)) || (rc = mm(s, y, x, 0, W, 1, N, out, in, 1.0f, 0.0f, 1)) ||
        (rc = mm(s, y, u, 0, B, 1, N, out, r, sc, 1.0f, 0)))
        return rc;
    return 0;
}

int fp_lora_bwd(fp_stream *s, fp_tensor *dx, fp_tensor *dA, fp_tensor *dB, fp_tensor *g, const fp_tensor *dy,
                const fp_tensor *x, const fp_tensor *u, const fp_tensor *W, const fp_tensor *A, const fp_tensor *B,
                float alpha, int accumulate)
{
    const char *op = "lora_bwd";
    int64_t N, in, out, r;
    int rc;
    if (!s)
        return fp_seterr(FP_EINVAL, "%s: NULL stream", op);
    if ((rc = dims(op, x, W, A, B, &N, &in, &out, &r)) || (rc = need(op, "dy", dy, N, out, 0)) ||
        (rc = need(op, "u", u, N, r, 0)) || (rc = need(op, "g (scratch)", g, N, r, 0)) ||
        (rc = need(op, "dA", dA, r, in, 0)) || (rc = need(op, "dB", dB, out, r, 0)) ||
        (dx && (rc = need(op, "dx", dx, N, in, 0))))
        return rc;
    float sc = alpha / (float)r, beta = accumulate ? 1.0f : 0.0f;
    g_last[0] = 0;
    /* g = dy B; dB = s dy^T u; dA = s g^T x */
    if ((rc = mm(s, g, dy, 0, B, 0, N, r, out, 1.0f, 0.0f, 0)) || (rc = mm(s, dB, dy, 1, u, 0, out, r, N, sc, beta, 0)) ||
        (rc = mm(s, dA, g, 1, x, 0, r, in, N, sc, beta, 0)))
        return rc;
    /* dx = dy W (the op's name: its variant); dx += s g A */
    if (dx && ((rc = mm(s, dx, dy, 0, W, 0, N, in, out, 1.0f, 0.0f, 1)) || (rc = mm(s, dx, g, 0, A, 0, N, in, r, sc, 1.0f, 0))))
        return rc;
    return 0;
}
