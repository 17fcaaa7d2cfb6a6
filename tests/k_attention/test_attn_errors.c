/* Shape and argument errors of the attention ops: each fails with its code
 * and a message, never a crash; nothing is recorded. */
#include "attn_common.h"

int main(void)
{
    fp_ctx *ctx = fp_test_ctx("minimal");
    printf("profile 'minimal': variant %s\n", fp_attention_variant(ctx));
    int64_t sq[4] = {1, 5, 4, 8}, sk[4] = {1, 5, 2, 8}, sk3[4] = {1, 5, 3, 8}, sbad[4] = {1, 6, 2, 8},
            sl[3] = {1, 4, 5}, sodd[4] = {1, 5, 4, 7};
    fp_tensor *q = dev(ctx, 4, sq, NULL), *k = dev(ctx, 4, sk, NULL), *v = dev(ctx, 4, sk, NULL);
    fp_tensor *o = dev(ctx, 4, sq, NULL), *l = dev(ctx, 3, sl, NULL), *k3 = dev(ctx, 4, sk3, NULL);
    fp_tensor *kb = dev(ctx, 4, sbad, NULL), *xo = dev(ctx, 4, sodd, NULL);
    fp_tensor *dq = dev(ctx, 4, sq, NULL), *dk = dev(ctx, 4, sk, NULL), *dv = dev(ctx, 4, sk, NULL);
    fp_tensor *li = NULL;
    int64_t n1 = 20;
    CHECK_OK(fp_tensor_new(&li, ctx, FP_I32, 1, &n1));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    fp_attn_desc d = {0.0f, 1};
    CHECK_ERR(fp_attention_forward(s, o, l, q, k3, k3, &d), FP_ESHAPE); /* 4 % 3 heads */
    CHECK_ERR(fp_attention_forward(s, o, l, q, k, kb, &d), FP_ESHAPE);  /* k, v differ */
    CHECK_ERR(fp_attention_forward(s, o, l, q, kb, kb, &d), FP_ESHAPE); /* T differs */
    CHECK_ERR(fp_attention_forward(s, k, l, q, k, v, &d), FP_ESHAPE);   /* o shape */
    CHECK_ERR(fp_attention_forward(s, o, li, q, k, v, &d), FP_ESHAPE);  /* lse dtype */
    CHECK_ERR(fp_attention_forward(s, o, l, q, k, NULL, &d), FP_EINVAL);
    CHECK_ERR(fp_attention_forward(s, q, l, q, k, v, &d), FP_EINVAL); /* o aliases q */
    CHECK_ERR(fp_attention_backward(s, dq, dk, dv, o, q, k, v, o, NULL, &d), FP_EINVAL);
    CHECK_ERR(fp_attention_backward(s, dq, dv, dv, o, q, k, v, o, l, &d), FP_EINVAL);
    CHECK_ERR(fp_attention_backward(s, dk, dq, dv, o, q, k, v, o, l, &d), FP_ESHAPE);
    CHECK_ERR(fp_attention_decode(s, o, q, k, v, 1, &d, NULL), FP_ESHAPE); /* 1 + 5 rows > 5 */
    CHECK_ERR(fp_attention_decode(s, o, q, k, v, -1, &d, NULL), FP_ESHAPE);
    fp_rope_desc rd = {10000.0f, 0};
    CHECK_ERR(fp_rope(s, xo, xo, &rd), FP_ESHAPE); /* odd head dim */
    CHECK_ERR(fp_rope(s, k, q, &rd), FP_ESHAPE);
    fp_rope_desc bad = {0.5f, 0};
    CHECK_ERR(fp_rope(s, q, q, &bad), FP_EINVAL);
    fp_rope_desc badpos = {10000.0f, -3};
    CHECK_ERR(fp_rope_backward(s, q, q, &badpos), FP_EINVAL);
    fp_stream_stats st;
    CHECK_OK(fp_stream_run(s));
    fp_stream_stats_get(s, &st);
    CHECK(st.dispatches == 0);
    fp_stream_free(s);
    fp_tensor *all[12] = {q, k, v, o, l, k3, kb, xo, dq, dk, dv, li};
    for (int i = 0; i < 12; i++)
        fp_tensor_free(all[i]);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_attn_errors");
}
