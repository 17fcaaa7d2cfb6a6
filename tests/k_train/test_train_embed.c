/* Embedding gather and its deterministic scatter-add backward against the C
 * reference (repeated ids, out-of-range ids, odd widths), bit-identical reruns,
 * and a finite-difference check of the reference backward. */
#include "train_common.h"

static void fd_embed(void)
{
    const int64_t N = 6, C = 3, V = 4;
    int32_t ids[6] = {1, 3, 1, -1, 0, 1};
    float *tab = tc_rand(V * C, -1, 1), *R = tc_rand(N * C, -1, 1), dt[12] = {0}, out[18];
    fp_ref_embedding_bwd(dt, R, ids, N, C, V);
    double fd[12], h = 1e-3;
    for (int k = 0; k < V * C; k++) {
        float o = tab[k];
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            tab[k] = (float)(o + (sgn ? -h : h));
            fp_ref_embedding_fwd(out, tab, ids, N, C, V);
            double l = 0;
            for (int i = 0; i < N * C; i++)
                l += (double)out[i] * R[i];
            L[sgn] = l;
        }
        tab[k] = o;
        fd[k] = (L[0] - L[1]) / ((double)(float)(o + h) - (double)(float)(o - h));
    }
    tc_fd("embedding ref dtable", fd, dt, V * C, 1e-4);
    free(tab);
    free(R);
}

static void embed_case(fp_ctx *ctx, fp_stream *s, int64_t N, int64_t C, int64_t V)
{
    float *tab = tc_rand(V * C, -1, 1), *dout = tc_rand(N * C, -1, 1), *dt0 = tc_rand(V * C, -1, 1);
    int32_t *ids = malloc(N * 4);
    for (int64_t i = 0; i < N; i++)
        ids[i] = (int32_t)(fp_test_u32() % (V < 5 ? V : 5)); /* many repeats */
    if (N > 3) {
        ids[1] = -1;
        ids[N - 1] = (int32_t)V; /* out of range: zero row, no gradient */
        ids[2] = (int32_t)(V - 1);
    }
    float *out = malloc(N * C * 4), *dt = malloc(V * C * 4);
    fp_ref_embedding_fwd(out, tab, ids, N, C, V);
    memcpy(dt, dt0, V * C * 4);
    fp_ref_embedding_bwd(dt, dout, ids, N, C, V);
    fp_tensor *ttab = tc_f32(ctx, V, C, tab), *tids = tc_i32(ctx, N, ids), *tout = tc_f32(ctx, N, C, NULL);
    fp_tensor *tdout = tc_f32(ctx, N, C, dout), *tdt = tc_f32(ctx, V, C, dt0);
    fp_tensor *work = tc_new(ctx, FP_U32, 1, &N, NULL);
    CHECK_OK(fp_embedding_fwd(s, tout, ttab, tids));
    CHECK_OK(fp_embedding_bwd(s, tdt, tdout, tids, work));
    CHECK_OK(fp_stream_run(s));
    printf("  embedding N=%lld C=%lld V=%lld [%s]\n", (long long)N, (long long)C, (long long)V,
           fp_train_last_pipeline());
    float *go = tc_down(tout), *gdt = tc_down(tdt);
    tc_cmp("embedding out", go, out, N * C, 0);
    tc_cmp("embedding dtable (accumulated)", gdt, dt, V * C, 1e-7);
    /* deterministic: a second run from the same start is bit-identical */
    CHECK_OK(fp_tensor_upload(tdt, dt0, V * C * 4));
    CHECK_OK(fp_embedding_bwd(s, tdt, tdout, tids, work));
    CHECK_OK(fp_stream_run(s));
    float *g2 = tc_down(tdt);
    CHECK(memcmp(g2, gdt, V * C * 4) == 0);
    if (N == 7) {
        fp_tensor *bad = tc_f32(ctx, N, C + 1, NULL);
        CHECK_ERR(fp_embedding_fwd(s, bad, ttab, tids), FP_ESHAPE);
        CHECK_ERR(fp_embedding_fwd(s, tout, ttab, tdout), FP_ESHAPE);
        CHECK_ERR(fp_embedding_bwd(s, tdt, bad, tids, work), FP_ESHAPE);
        CHECK_ERR(fp_embedding_bwd(s, tdt, tdout, tids, tdout), FP_ESHAPE);
        fp_tensor_free(bad);
    }
    fp_tensor *ts[] = {ttab, tids, tout, tdout, tdt, work};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    float *hs[] = {tab, dout, dt0, out, dt, go, gdt, g2};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        free(hs[i]);
    free(ids);
}

int main(void)
{
    fp_test_seed(5);
    fd_embed();
    for (int pi = 0; tc_profile(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(tc_profile(pi));
        fp_stream *s;
        CHECK_OK(fp_stream_new(&s, ctx));
        embed_case(ctx, s, 1, 1, 1);
        embed_case(ctx, s, 7, 33, 11);
        embed_case(ctx, s, 257, 65, 1001);
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_train_embed");
}
