/* LoRA forward and backward (include/fedproxy/ops_lora.h), composed from one
 * strided tiled matmul (shaders/lora/mm.comp) whose B operand may be f32, f16 or
 * bf16. Each product is one dispatch; the runtime inserts the barriers. */
#include <stdio.h>
#include <string.h>

#include "fedproxy/ops_lora.h"
#include "error_internal.h"

static _Thread_local char g_last[64];

const char *fp_lora_last_pipeline(void) { return g_last; }

#define TILE 32

struct mm_push {
    uint32_t M, N, K, sam, sak, sbk, sbn, ldc;
    float alpha, beta;
};

/* C[M,N] = alpha * A(m,k) B(k,n) + beta * C with the strides in push. */
static int mm(fp_stream *s, fp_tensor *c, const fp_tensor *a, const fp_tensor *b, struct mm_push push)
{
    const char *name = b->dtype == FP_F16 ? "lora_mm_f16" : b->dtype == FP_BF16 ? "lora_mm_bf16" : "lora_mm_f32";
    uint32_t spec[3] = {8, 8, 1};
    fp_pipeline *p;
    int rc = fp_pipeline_get(&p, fp_stream_ctx(s), name, spec, 3);
    if (rc)
        return rc;
    if (b->dtype != FP_F32 || !g_last[0]) /* name the W variant */
        snprintf(g_last, sizeof g_last, "%s", fp_pipeline_name(p));
    uint32_t gx = (push.N + TILE - 1) / TILE, gy = (push.M + TILE - 1) / TILE;
    const fp_profile *pr = fp_ctx_profile(fp_stream_ctx(s));
    if (gx > pr->max_wg_count[0] || gy > pr->max_wg_count[1])
        return fp_seterr(FP_EUNSUPPORTED, "lora: a %ux%u product needs %ux%u workgroups, more than the device's %ux%u",
                         push.M, push.N, gx, gy, pr->max_wg_count[0], pr->max_wg_count[1]);
    fp_binding bd[3] = {FP_R(a), FP_R(b), FP_W(c)};
    return fp_stream_dispatch(s, p, bd, 3, &push, sizeof push, gx ? gx : 1, gy ? gy : 1, 1);
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
    /* u = x A^T */
    struct mm_push p1 = {(uint32_t)N, (uint32_t)r, (uint32_t)in, (uint32_t)in, 1, 1, (uint32_t)in, (uint32_t)r, 1, 0};
    /* y = x W^T */
    struct mm_push p2 = {(uint32_t)N, (uint32_t)out, (uint32_t)in, (uint32_t)in, 1, 1, (uint32_t)in, (uint32_t)out,
                         1, 0};
    /* y += s u B^T */
    struct mm_push p3 = {(uint32_t)N, (uint32_t)out, (uint32_t)r, (uint32_t)r, 1, 1, (uint32_t)r, (uint32_t)out,
                         sc, 1};
    if ((rc = mm(s, u, x, A, p1)) || (rc = mm(s, y, x, W, p2)) || (rc = mm(s, y, u, B, p3)))
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
    /* g = dy B: M=N, N=r, K=out */
    struct mm_push pg = {(uint32_t)N, (uint32_t)r, (uint32_t)out, (uint32_t)out, 1, (uint32_t)r, 1, (uint32_t)r, 1, 0};
    /* dB = s dy^T u: M=out, N=r, K=N */
    struct mm_push pb = {(uint32_t)out, (uint32_t)r, (uint32_t)N, 1, (uint32_t)out, (uint32_t)r, 1, (uint32_t)r,
                         sc, beta};
    /* dA = s g^T x: M=r, N=in, K=N */
    struct mm_push pa = {(uint32_t)r, (uint32_t)in, (uint32_t)N, 1, (uint32_t)r, (uint32_t)in, 1, (uint32_t)in,
                         sc, beta};
    if ((rc = mm(s, g, dy, B, pg)) || (rc = mm(s, dB, dy, u, pb)) || (rc = mm(s, dA, g, x, pa)))
        return rc;
    if (dx) {
        /* dx = dy W: M=N, N=in, K=out */
        struct mm_push pd = {(uint32_t)N, (uint32_t)in, (uint32_t)out, (uint32_t)out, 1, (uint32_t)in, 1,
                             (uint32_t)in, 1, 0};
        /* dx += s g A: M=N, N=in, K=r */
        struct mm_push pe = {(uint32_t)N, (uint32_t)in, (uint32_t)r, (uint32_t)r, 1, (uint32_t)in, 1, (uint32_t)in,
                             sc, 1};
        if ((rc = mm(s, dx, dy, W, pd)) || (rc = mm(s, dx, g, A, pe)))
            return rc;
    }
    return 0;
}
