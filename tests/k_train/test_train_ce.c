/* Fused softmax cross-entropy: forward (per-row loss, lse, mean over valid rows,
 * ignore_index rows excluded) and backward (separate and in place) against the
 * C reference on odd vocabularies, under every profile; finite differences of
 * the reference backward against a double-precision forward; large logits for
 * stability. */
#include "train_common.h"

static double ce_loss_d(const double *l, const int32_t *t, int64_t rows, int64_t V)
{
    double sum = 0;
    int64_t nv = 0;
    for (int64_t i = 0; i < rows; i++) {
        if (t[i] < 0 || t[i] >= V)
            continue;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < V; j++)
            m = fmax(m, l[i * V + j]);
        for (int64_t j = 0; j < V; j++)
            s += exp(l[i * V + j] - m);
        sum += m + log(s) - l[i * V + t[i]];
        nv++;
    }
    return nv ? sum / nv : 0;
}

static void fd_ce(void)
{
    const int64_t rows = 4, V = 9;
    float *l = tc_rand(rows * V, -3, 3);
    int32_t t[4] = {2, FP_IGNORE_INDEX, 8, 0};
    float losses[4], lse[4], dl[36];
    int64_t nv;
    float mean = fp_ref_softmax_ce_fwd(losses, lse, &nv, l, t, rows, V);
    CHECK(nv == 3);
    double ld[36], fd[36], h = 1e-5;
    for (int i = 0; i < rows * V; i++)
        ld[i] = l[i];
    CHECKF(fabs(ce_loss_d(ld, t, rows, V) - mean) < 1e-6, "ref mean %g", mean);
    fp_ref_softmax_ce_bwd(dl, l, t, lse, rows, V, 1.0f, nv);
    for (int i = 0; i < rows * V; i++) {
        double o = ld[i];
        ld[i] = o + h;
        double p = ce_loss_d(ld, t, rows, V);
        ld[i] = o - h;
        double m = ce_loss_d(ld, t, rows, V);
        ld[i] = o;
        fd[i] = (p - m) / (2 * h);
    }
    tc_fd("softmax_ce ref dlogits", fd, dl, rows * V, 1e-5);
    free(l);
}

static void ce_case(fp_ctx *ctx, fp_stream *s, int64_t rows, int64_t V, float spread, int inplace)
{
    float *l = tc_rand(rows * V, -spread, spread);
    int32_t *t = malloc(rows * 4);
    for (int64_t i = 0; i < rows; i++)
        t[i] = (i % 3 == 1) ? FP_IGNORE_INDEX : (int32_t)(fp_test_u32() % V);
    if (rows > 4)
        t[rows - 1] = (int32_t)V; /* out of range: ignored as well */
    float *loss = malloc(rows * 4), *lse = malloc(rows * 4), *dl = malloc(rows * V * 4);
    int64_t nv;
    float mean = fp_ref_softmax_ce_fwd(loss, lse, &nv, l, t, rows, V);
    fp_ref_softmax_ce_bwd(dl, l, t, lse, rows, V, 0.75f, nv);
    fp_tensor *tl = tc_f32(ctx, rows, V, l), *tt = tc_i32(ctx, rows, t), *tloss = tc_f32_1d(ctx, rows, NULL);
    fp_tensor *tlse = tc_f32_1d(ctx, rows, NULL), *tst = tc_f32_1d(ctx, 2, NULL);
    fp_tensor *tdl = inplace ? tl : tc_f32(ctx, rows, V, NULL);
    CHECK_OK(fp_softmax_ce_fwd(s, tloss, tlse, tst, tl, tt));
    char vf[64];
    snprintf(vf, sizeof vf, "%s", fp_train_last_pipeline());
    CHECK_OK(fp_softmax_ce_bwd(s, tdl, tl, tt, tlse, tst, 0.75f));
    CHECK_OK(fp_stream_run(s));
    printf("  softmax_ce %lldx%lld spread %g%s [%s, %s]\n", (long long)rows, (long long)V, spread,
           inplace ? " in place" : "", vf, fp_train_last_pipeline());
    float *gl = tc_down(tloss), *glse = tc_down(tlse), *gst = tc_down(tst), *gdl = tc_down(tdl);
    tc_cmp("ce losses", gl, loss, rows, 1e-7);
    tc_cmp("ce lse", glse, lse, rows, 1e-7);
    CHECKF(gst[1] == (float)nv, "n_valid %g vs %lld", gst[1], (long long)nv);
    CHECKF(fabs(gst[0] - mean) <= 1e-5 * fmax(1, fabs(mean)), "mean %g vs %g", gst[0], mean);
    tc_cmp("ce dlogits", gdl, dl, rows * V, 1e-7);
    fp_tensor_free(tl);
    if (!inplace)
        fp_tensor_free(tdl);
    fp_tensor_free(tt);
    fp_tensor_free(tloss);
    fp_tensor_free(tlse);
    fp_tensor_free(tst);
    float *hs[] = {l, loss, lse, dl, gl, glse, gst, gdl};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        free(hs[i]);
    free(t);
}

static void all_ignored(fp_ctx *ctx, fp_stream *s)
{
    const int64_t rows = 3, V = 5;
    float *l = tc_rand(rows * V, -1, 1);
    int32_t t[3] = {FP_IGNORE_INDEX, FP_IGNORE_INDEX, FP_IGNORE_INDEX};
    fp_tensor *tl = tc_f32(ctx, rows, V, l), *tt = tc_i32(ctx, rows, t), *tloss = tc_f32_1d(ctx, rows, NULL);
    fp_tensor *tlse = tc_f32_1d(ctx, rows, NULL), *tst = tc_f32_1d(ctx, 2, NULL);
    CHECK_OK(fp_softmax_ce_fwd(s, tloss, tlse, tst, tl, tt));
    CHECK_OK(fp_softmax_ce_bwd(s, tl, tl, tt, tlse, tst, 1.0f));
    CHECK_OK(fp_stream_run(s));
    float *st = tc_down(tst), *d = tc_down(tl);
    CHECK(st[0] == 0.0f && st[1] == 0.0f);
    int zero = 1;
    for (int i = 0; i < rows * V; i++)
        zero &= d[i] == 0.0f;
    CHECK(zero);
    /* errors */
    fp_tensor *t2 = tc_i32(ctx, 2, t), *tf = tc_f32_1d(ctx, 3, NULL);
    CHECK_ERR(fp_softmax_ce_fwd(s, tloss, tlse, tst, tl, t2), FP_ESHAPE);
    CHECK_ERR(fp_softmax_ce_fwd(s, tloss, tlse, tst, tl, tf), FP_ESHAPE);
    CHECK_ERR(fp_softmax_ce_fwd(s, tloss, tlse, tloss, tl, tt), FP_ESHAPE);
    CHECK_ERR(fp_softmax_ce_bwd(s, tloss, tl, tt, tlse, tst, 1.0f), FP_ESHAPE);
    fp_tensor *ts[] = {tl, tt, tloss, tlse, tst, t2, tf};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    free(l);
    free(st);
    free(d);
}

/* Logits larger than the storage range are bound in chunks of rows: an overlay
 * with a 64 KiB range (16380 floats per binding) makes 40 x 1001 logits three
 * chunks whose rows start at unaligned offsets; a single row past the range is
 * refused with a message naming the sizes. */
static void chunked(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-range.json", fp_test_tmpdir("train_ce_chunked"));
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"name\": \"tiny-range\", \"base\": \"minimal\", \"storage_range\": 65536}\n", f);
    fclose(f);
    fp_ctx *ctx = fp_test_ctx(path);
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    printf(" chunked rows, storage range %llu bytes\n", (unsigned long long)fp_ctx_profile(ctx)->storage_range);
    static const char *modes[] = {NULL, "sh", "rs"};
    for (int m = 0; m < 3; m++) {
        CHECK_OK(fp_train_force_reduce(modes[m]));
        ce_case(ctx, s, 40, 1001, 5, 0);
        ce_case(ctx, s, 40, 1001, 5, 1);
    }
    CHECK_OK(fp_train_force_reduce(NULL));
    ce_case(ctx, s, 17, 4095, 8, 0); /* 4 rows per chunk; a row is 4 bytes short of 16-byte aligned */
    ce_case(ctx, s, 40, 1000, 5, 0); /* 16 rows per chunk, vec4 backward in every chunk */
    ce_case(ctx, s, 40, 1000, 5, 1);
    /* one row of 20000 logits (80000 bytes) cannot be bound at all */
    int64_t rows = 2, V = 20000;
    fp_tensor *tl = tc_f32(ctx, rows, V, NULL), *tt = tc_i32(ctx, rows, NULL), *tloss = tc_f32_1d(ctx, rows, NULL);
    fp_tensor *tlse = tc_f32_1d(ctx, rows, NULL), *tst = tc_f32_1d(ctx, 2, NULL);
    CHECK_ERR(fp_softmax_ce_fwd(s, tloss, tlse, tst, tl, tt), FP_EUNSUPPORTED);
    printf("  refusal: %s\n", fp_errmsg());
    CHECK(strstr(fp_errmsg(), "20000 logits") != NULL);
    CHECK_ERR(fp_softmax_ce_bwd(s, tl, tl, tt, tlse, tst, 1.0f), FP_EUNSUPPORTED);
    fp_tensor *ts[] = {tl, tt, tloss, tlse, tst};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        fp_tensor_free(ts[i]);
    fp_stream_free(s);
    fp_test_ctx_done(ctx);
}

int main(void)
{
    fp_test_seed(23);
    fd_ce();
    chunked();
    for (int pi = 0; tc_profile(pi); pi++) {
        fp_ctx *ctx = fp_test_ctx(tc_profile(pi));
        fp_stream *s;
        CHECK_OK(fp_stream_new(&s, ctx));
        static const char *modes[] = {NULL, "sg", "sh", "rs"};
        for (int m = 0; m < 4; m++) {
            CHECK_OK(fp_train_force_reduce(modes[m]));
            printf(" reduction variant: %s\n", modes[m] ? modes[m] : "auto");
            ce_case(ctx, s, 1, 1, 3, 0);
            ce_case(ctx, s, 5, 7, 3, 1);
            ce_case(ctx, s, 7, 1001, 5, 0);
            if (m == 0) {
                ce_case(ctx, s, 3, 8192, 60, 1); /* large logits: needs the max shift */
                ce_case(ctx, s, 6, 1000, 5, 0);  /* V % 4 == 0: the vec4 backward, separate output */
            }
        }
        CHECK_OK(fp_train_force_reduce(NULL));
        if (pi == 0) {
            ce_case(ctx, s, 2, 32000, 8, 0);
            all_ignored(ctx, s);
        }
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_train_ce");
}
