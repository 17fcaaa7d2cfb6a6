/* Command streams: 1,000 dependent dispatches in one command buffer give the
 * right result; independent dispatches share no barrier; copies and 2-D grids. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_basic.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

static void chain(fp_ctx *ctx)
{
    const int64_t n = 1001;
    float *h = malloc(n * sizeof *h), *out = malloc(n * sizeof *out);
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)i;
    fp_tensor *a, *b;
    CHECK_OK(fp_tensor_new(&a, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_new(&b, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_upload(a, h, n * sizeof *h));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    /* a -> b -> a ... each step adds 1: every dispatch depends on the one before */
    for (int k = 0; k < 1000; k++)
        CHECK_OK(fp_op_axpb(s, k % 2 ? a : b, k % 2 ? b : a, 1.0f, 1.0f));
    CHECK_OK(fp_stream_run(s));
    fp_stream_stats st;
    fp_stream_stats_get(s, &st);
    CHECK(st.dispatches == 1000);
    CHECK(st.barriers == 999);
    CHECK_OK(fp_tensor_download(out, n * sizeof *out, a));
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        ok &= out[i] == (float)i + 1000.0f;
    CHECKF(ok, "chain result wrong: out[5] = %g", out[5]);

    /* independent dispatches on distinct tensors need no barrier between them */
    fp_tensor *c;
    CHECK_OK(fp_tensor_new(&c, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_op_axpb(s, b, a, 2.0f, 0.0f));
    CHECK_OK(fp_op_axpb(s, c, a, 3.0f, 0.0f));
    CHECK_OK(fp_stream_run(s));
    fp_stream_stats_get(s, &st);
    CHECK(st.dispatches == 2 && st.barriers == 0);
    CHECK_OK(fp_tensor_download(out, n * sizeof *out, c));
    CHECK(out[10] == 3.0f * 1010.0f);

    /* copy of an odd number of floats: vec4 body + scalar tail */
    CHECK_OK(fp_op_copy(s, b, c));
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(out, n * sizeof *out, b));
    CHECK(out[n - 1] == 3.0f * (float)(n - 1 + 1000) && out[0] == 3000.0f);

    /* shape errors are errors */
    fp_tensor *small;
    int64_t m = 5;
    CHECK_OK(fp_tensor_new(&small, ctx, FP_F32, 1, &m));
    CHECK_ERR(fp_op_axpb(s, small, a, 1, 1), FP_ESHAPE);
    CHECK_ERR(fp_op_copy(s, small, a), FP_ESHAPE);
    fp_tensor_free(small);

    fp_stream_free(s);
    fp_tensor_free(a);
    fp_tensor_free(b);
    fp_tensor_free(c);
    free(h);
    free(out);
}

static void big_grid(fp_ctx *ctx)
{
    /* more than 65535 workgroups of 64: needs the 2-D grid */
    const int64_t n = 65535 * 64 + 777;
    float *h = malloc(n * sizeof *h);
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)(i % 1000);
    fp_tensor *x, *y;
    CHECK_OK(fp_tensor_new(&x, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_new(&y, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_upload(x, h, n * sizeof *h));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_op_axpb(s, y, x, -1.0f, 0.5f));
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(h, n * sizeof *h, y));
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        ok &= h[i] == 0.5f - (float)(i % 1000);
    CHECK(ok);
    fp_stream_free(s);
    fp_tensor_free(x);
    fp_tensor_free(y);
    free(h);
}

/* Scratch: usable inside the recording, gone (memory back) once the run has
 * completed, and released by fp_stream_free when never run. */
static void scratch(fp_ctx *ctx)
{
    const int64_t n = 1001;
    float *h = malloc(n * sizeof *h), *out = malloc(n * sizeof *out);
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)i;
    fp_tensor *x, *y, *t1, *t2;
    CHECK_OK(fp_tensor_new(&x, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_new(&y, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_upload(x, h, n * sizeof *h));
    fp_mem_stats m0, m1, m2;
    fp_ctx_mem_stats(ctx, &m0);
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_stream_scratch(s, &t1, FP_F32, n));
    CHECK_OK(fp_stream_scratch(s, &t2, FP_F32, n));
    CHECK(t1 && t2 && t1 != t2 && fp_tensor_numel(t1) == n);
    CHECK_OK(fp_op_axpb(s, t1, x, 2.0f, 0.0f));  /* t1 = 2x */
    CHECK_OK(fp_op_axpb(s, t2, t1, 1.0f, 1.0f)); /* t2 = 2x + 1 */
    CHECK_OK(fp_op_axpb(s, y, t2, 3.0f, 0.0f));  /* y = 6x + 3 */
    fp_ctx_mem_stats(ctx, &m1);
    CHECKF(m1.in_use >= m0.in_use + 2 * (uint64_t)n * 4, "scratch not allocated: in use %llu -> %llu",
           (unsigned long long)m0.in_use, (unsigned long long)m1.in_use);
    CHECK_OK(fp_stream_run(s));
    fp_ctx_mem_stats(ctx, &m2);
    CHECKF(m2.in_use == m0.in_use, "scratch not released by the run: in use %llu, before %llu",
           (unsigned long long)m2.in_use, (unsigned long long)m0.in_use);
    CHECK_OK(fp_tensor_download(out, n * sizeof *out, y));
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        ok &= out[i] == 6.0f * (float)i + 3.0f;
    CHECKF(ok, "scratch chain wrong: y[7] = %g", out[7]);
    /* released scratch is reused (same memory, no new allocation), and the
     * stream orders the reuse: y = 2x + 1 is computed from the first use
     * before the second one overwrites it with 10x */
    fp_tensor *y2, *t3, *xv;
    int64_t n5 = n - 5;
    CHECK_OK(fp_tensor_new(&y2, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_view(&xv, x, 0, FP_F32, 1, &n5));
    fp_mem_stats base;
    fp_ctx_mem_stats(ctx, &base);
    CHECK_OK(fp_stream_scratch(s, &t1, FP_F32, n));
    CHECK_OK(fp_op_axpb(s, t1, x, 2.0f, 0.0f));
    CHECK_OK(fp_op_axpb(s, y, t1, 1.0f, 1.0f));
    CHECK_OK(fp_stream_scratch(s, &t2, FP_F32, n)); /* t1 still held: distinct */
    CHECK(t2->block != t1->block || t2->offset != t1->offset);
    CHECK_OK(fp_stream_scratch_release(s, t1));
    fp_ctx_mem_stats(ctx, &m1);
    CHECK_OK(fp_stream_scratch(s, &t3, FP_F32, n - 5)); /* smaller: fits the released one */
    fp_ctx_mem_stats(ctx, &m2);
    CHECKF(t3->block == t1->block && t3->offset == t1->offset && m2.in_use == m1.in_use,
           "released scratch not reused (in use %llu -> %llu)", (unsigned long long)m1.in_use,
           (unsigned long long)m2.in_use);
    CHECK_OK(fp_op_axpb(s, t3, xv, 10.0f, 0.0f));
    fp_tensor *y2v;
    CHECK_OK(fp_tensor_view(&y2v, y2, 0, FP_F32, 1, &n5));
    CHECK_OK(fp_op_axpb(s, y2v, t3, 1.0f, 0.0f));
    CHECK(fp_stream_scratch_release(s, x) == FP_EINVAL);
    CHECK_OK(fp_stream_run(s));
    fp_ctx_mem_stats(ctx, &m2);
    CHECK(m2.in_use == base.in_use);
    float *out2 = malloc(n * sizeof *out2);
    CHECK_OK(fp_tensor_download(out, n * sizeof *out, y));
    CHECK_OK(fp_tensor_download(out2, n * sizeof *out2, y2));
    ok = 1;
    for (int64_t i = 0; i < n - 5; i++)
        ok &= out[i] == 2.0f * (float)i + 1.0f && out2[i] == 10.0f * (float)i;
    CHECKF(ok, "scratch reuse misordered: y[7] = %g (want 15), y2[7] = %g (want 70)", out[7], out2[7]);
    fp_tensor_free(y2v);
    fp_tensor_free(xv);
    free(out2);
    /* recorded, never run: fp_stream_free releases it */
    CHECK_OK(fp_stream_scratch(s, &t1, FP_F32, n));
    CHECK_OK(fp_op_axpb(s, t1, x, 1.0f, 0.0f));
    fp_stream_free(s);
    fp_ctx_mem_stats(ctx, &m2);
    CHECK(m2.in_use == base.in_use);
    fp_tensor_free(y2);
    CHECK(fp_stream_scratch(NULL, &t1, FP_F32, n) == FP_EINVAL);
    fp_tensor_free(x);
    fp_tensor_free(y);
    free(h);
    free(out);
}

static void profiling(void)
{
    fp_ctx_opts o = {0};
    o.validate = 1;
    o.profiling = 1;
    fp_ctx *ctx;
    CHECK_OK(fp_ctx_create(&ctx, &o));
    int64_t n = 4096;
    fp_tensor *x;
    CHECK_OK(fp_tensor_new(&x, ctx, FP_F32, 1, &n));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    for (int i = 0; i < 3; i++)
        CHECK_OK(fp_op_axpb(s, x, x, 1.0f, 0.0f));
    CHECK_OK(fp_stream_run(s));
    fp_dispatch_time t[8];
    uint32_t cnt = 0;
    CHECK_OK(fp_stream_timings(s, t, 8, &cnt));
    CHECK(cnt == 3);
    for (uint32_t i = 0; i < cnt && i < 8; i++)
        CHECK(!strcmp(t[i].pipeline, "axpb_f32") && t[i].us >= 0);
    fp_stream_free(s);
    fp_tensor_free(x);
    fp_test_ctx_done(ctx);
}

int main(void)
{
    fp_ctx *ctx = fp_test_ctx("");
    chain(ctx);
    big_grid(ctx);
    scratch(ctx);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("minimal");
    chain(ctx);
    fp_test_ctx_done(ctx);
    profiling();
    return fp_test_report("test_vk_stream");
}
