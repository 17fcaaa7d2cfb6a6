/* Command streams: 1,000 dependent dispatches in one command buffer give the
 * right result; independent dispatches share no barrier; copies and 2-D grids;
 * texel-buffer bindings (bit-exact reads, hazards, every reason one is refused). */
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

/* Texel bindings: copy_tex_vec4 reads a u32 view of arbitrary bits as uvec4
 * texels (bit-exact: NaN payloads, denormals), a write into the source before
 * it is ordered by a barrier, and every unfit tensor is refused with a reason
 * by fp_stream_dispatch and reported unfit by fp_ctx_texel_fits. */
static void texel(fp_ctx *ctx)
{
    const fp_profile *pr = fp_ctx_profile(ctx);
    CHECKF(pr->texel_buffers, "%s: no texel-buffer formats (lavapipe has them)", pr->name);
    CHECK(pr->min_texel_align >= 1 && pr->max_texel_elements >= 65536);
    const int64_t n = 4 * 1001 + 3; /* the last 3 words are no whole texel */
    uint32_t *h = malloc(n * 4), *out = malloc(n * 4);
    for (int64_t i = 0; i < n; i++)
        h[i] = fp_test_u32();
    h[0] = 0x7fc01234u; /* a NaN with a payload */
    h[1] = 0x00000001u; /* the smallest denormal */
    h[2] = 0x80000000u; /* -0 */
    fp_tensor *a, *b;
    CHECK_OK(fp_tensor_new(&a, ctx, FP_U32, 1, &n));
    CHECK_OK(fp_tensor_new(&b, ctx, FP_U32, 1, &n));
    CHECK_OK(fp_tensor_upload(a, h, n * 4));
    CHECK_OK(fp_tensor_zero(b));
    CHECK(fp_ctx_texel_fits(ctx, a, 4) && fp_ctx_texel_fits(ctx, a, 1));
    fp_pipeline *p;
    uint32_t spec[4] = {64, 1, 1, 1};
    CHECK_OK(fp_pipeline_get(&p, ctx, "copy_tex_vec4", spec, 4));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    uint32_t push[3] = {(uint32_t)(n / 4), 0, 0};
    fp_binding bt[2] = {FP_TEX4(a), FP_W(b)};
    CHECK_OK(fp_stream_dispatch(s, p, bt, 2, push, sizeof push, (uint32_t)(n / 4 + 63) / 64, 1, 1));
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(out, n * 4, b));
    int ok = 1;
    for (int64_t i = 0; i < n - 3; i++)
        ok &= out[i] == h[i];
    CHECKF(ok, "texel copy not bit-exact: word 0 %08x (want %08x), word 1 %08x", out[0], h[0], out[1]);
    CHECK(out[n - 1] == 0 && out[n - 3] == 0); /* the partial texel is not visible, nothing wrote there */

    /* a write of a, then a texel read of it: a barrier, and the read sees the write */
    fp_tensor *af, *c;
    int64_t nw = n;
    float *twos = malloc(n * 4);
    for (int64_t i = 0; i < n; i++)
        twos[i] = 2.5f;
    CHECK_OK(fp_tensor_view(&af, a, 0, FP_F32, 1, &nw));
    CHECK_OK(fp_tensor_new(&c, ctx, FP_F32, 1, &nw));
    CHECK_OK(fp_tensor_upload(c, twos, n * 4));
    free(twos);
    CHECK_OK(fp_op_copy(s, af, c));
    CHECK_OK(fp_stream_dispatch(s, p, bt, 2, push, sizeof push, (uint32_t)(n / 4 + 63) / 64, 1, 1));
    CHECK_OK(fp_stream_run(s));
    fp_stream_stats st;
    fp_stream_stats_get(s, &st);
    CHECK(st.dispatches >= 2 && st.barriers >= 1);
    CHECK_OK(fp_tensor_download(out, n * 4, b));
    float f;
    memcpy(&f, &out[4 * 1000 + 3], 4);
    CHECKF(f == 2.5f, "texel read before the write finished: %g", f);

    /* refusals: the reason is in the message, the stream stays usable */
    fp_tensor *mis, *h16, *tiny;
    int64_t m = 64, one = 3;
    CHECK_OK(fp_tensor_view(&mis, a, 1, FP_U32, 1, &m)); /* 4 bytes in: not texel-aligned */
    CHECK_OK(fp_tensor_new(&h16, ctx, FP_F16, 1, &m));
    CHECK_OK(fp_tensor_new(&tiny, ctx, FP_U32, 1, &one)); /* less than one 4-word texel */
    if (pr->min_texel_align > 4) {
        CHECK(!fp_ctx_texel_fits(ctx, mis, 4));
        fp_binding bm[2] = {FP_TEX4(mis), FP_W(b)};
        CHECK_ERR(fp_stream_dispatch(s, p, bm, 2, push, sizeof push, 1, 1, 1), FP_EUNSUPPORTED);
        CHECKF(strstr(fp_errmsg(), "alignment") != NULL, "message: %s", fp_errmsg());
    }
    CHECK(!fp_ctx_texel_fits(ctx, h16, 4) && !fp_ctx_texel_fits(ctx, h16, 1));
    fp_binding bh[2] = {FP_TEX4(h16), FP_W(b)};
    CHECK_ERR(fp_stream_dispatch(s, p, bh, 2, push, sizeof push, 1, 1, 1), FP_EUNSUPPORTED);
    CHECKF(strstr(fp_errmsg(), "texel format") != NULL, "message: %s", fp_errmsg());
    CHECK(!fp_ctx_texel_fits(ctx, tiny, 4) && fp_ctx_texel_fits(ctx, tiny, 1));
    CHECK(!fp_ctx_texel_fits(ctx, a, 2) && !fp_ctx_texel_fits(NULL, a, 4));
    /* more texels than the device allows ('minimal' caps them at 65536) */
    int64_t big = 4 * (int64_t)pr->max_texel_elements + 4;
    if (big <= 64 << 20) {
        fp_tensor *bt2;
        CHECK_OK(fp_tensor_new(&bt2, ctx, FP_U32, 1, &big));
        CHECK(!fp_ctx_texel_fits(ctx, bt2, 4) && !fp_ctx_texel_fits(ctx, bt2, 1));
        fp_binding bb[2] = {FP_TEX4(bt2), FP_W(b)};
        CHECK_ERR(fp_stream_dispatch(s, p, bb, 2, push, sizeof push, 1, 1, 1), FP_EUNSUPPORTED);
        CHECKF(strstr(fp_errmsg(), "maxTexelBufferElements") != NULL, "message: %s", fp_errmsg());
        int64_t fit = 4 * (int64_t)pr->max_texel_elements;
        fp_tensor *fv;
        CHECK_OK(fp_tensor_view(&fv, bt2, 0, FP_U32, 1, &fit));
        CHECK(fp_ctx_texel_fits(ctx, fv, 4));
        fp_tensor_free(fv);
        fp_tensor_free(bt2);
    }
    CHECK_OK(fp_stream_run(s)); /* nothing recorded by the refused dispatches */
    fp_tensor_free(mis);
    fp_tensor_free(h16);
    fp_tensor_free(tiny);
    fp_tensor_free(af);
    fp_tensor_free(c);
    fp_stream_free(s);
    fp_tensor_free(a);
    fp_tensor_free(b);
    free(h);
    free(out);
}

/* FP_NO_TEXEL: the profile says no texel buffers, and nothing fits one. */
static void no_texel(void)
{
    setenv("FP_NO_TEXEL", "1", 1);
    fp_ctx *ctx = fp_test_ctx("");
    unsetenv("FP_NO_TEXEL");
    int64_t n = 64;
    fp_tensor *a;
    CHECK_OK(fp_tensor_new(&a, ctx, FP_F32, 1, &n));
    CHECK(!fp_ctx_profile(ctx)->texel_buffers && !fp_ctx_texel_fits(ctx, a, 4));
    /* copies still work, through storage buffers, even when asked for texels */
    setenv("FP_TEXEL_READS", "1", 1);
    float h[64], out[64];
    for (int i = 0; i < 64; i++)
        h[i] = (float)i - 7.0f;
    fp_tensor *b;
    fp_stream *s;
    CHECK_OK(fp_tensor_new(&b, ctx, FP_F32, 1, &n));
    CHECK_OK(fp_tensor_upload(a, h, sizeof h));
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_op_copy(s, b, a));
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(out, sizeof out, b));
    CHECK(!memcmp(out, h, sizeof h));
    unsetenv("FP_TEXEL_READS");
    fp_stream_free(s);
    fp_tensor_free(a);
    fp_tensor_free(b);
    fp_test_ctx_done(ctx);
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
    texel(ctx);
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("minimal");
    chain(ctx);
    texel(ctx);
    fp_test_ctx_done(ctx);
    no_texel();
    profiling();
    return fp_test_report("test_vk_stream");
}
