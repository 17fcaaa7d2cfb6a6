/* Matmul autotuner and benchmark (device side). */
#include "fedproxy/ops_matmul.h"
#include "error_internal.h"
#include "bench_reps.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float frand(uint32_t *st)
{
    *st = *st * 1664525u + 1013904223u;
    return (float)((*st >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Device buffers for one shape (A MxK, B KxN or NxK, C MxN), filled once. */
struct mm_bufs {
    fp_tensor *A, *B, *C;
};

static void bufs_free(struct mm_bufs *b)
{
    fp_tensor_free(b->A);
    fp_tensor_free(b->B);
    fp_tensor_free(b->C);
    memset(b, 0, sizeof *b);
}

static int bufs_new(struct mm_bufs *b, fp_ctx *ctx, int64_t M, int64_t N, int64_t K)
{
    memset(b, 0, sizeof *b);
    int64_t na = M * K, nb = K * N, nc = M * N;
    int rc = fp_tensor_new(&b->A, ctx, FP_F32, 1, &na);
    if (!rc) rc = fp_tensor_new(&b->B, ctx, FP_F32, 1, &nb);
    if (!rc) rc = fp_tensor_new(&b->C, ctx, FP_F32, 1, &nc);
    int64_t nmax = na > nb ? na : nb;
    float *h = rc ? NULL : malloc(sizeof(float) * (size_t)nmax);
    if (!rc && !h)
        rc = fp_seterr(FP_ENOMEM, "matmul tune: no memory for %lld floats", (long long)nmax);
    uint32_t st = 12345;
    if (!rc) {
        for (int64_t i = 0; i < na; i++) h[i] = frand(&st);
        rc = fp_tensor_upload(b->A, h, sizeof(float) * (size_t)na);
    }
    if (!rc) {
        for (int64_t i = 0; i < nb; i++) h[i] = frand(&st);
        rc = fp_tensor_upload(b->B, h, sizeof(float) * (size_t)nb);
    }
    free(h);
    if (rc)
        bufs_free(b);
    return rc;
}

typedef struct mm_call {
    struct mm_bufs *b;
    fp_matmul_desc d;
} mm_call;

static int mm_call_record(fp_stream *s, void *arg)
{
    mm_call *c = arg;
    return fp_matmul(s, c->b->C, c->b->A, c->b->B, &c->d);
}

/* Best seconds per call for one variant on one shape over `reps` submissions
 * (after an untimed warm-up, which also compiles the pipeline), each of as many
 * back-to-back calls as make it outlast the queue's round trip (bench_reps.h). */
static int time_variant(fp_ctx *ctx, struct mm_bufs *b, int64_t M, int64_t N, int64_t K, int tb,
                        const char *variant, int reps, double *best)
{
    fp_stream *s;
    int rc = fp_stream_new(&s, ctx);
    if (rc)
        return rc;
    mm_call c = {b, fp_matmul_desc_make(M, N, K)};
    c.d.trans_b = tb;
    c.d.variant = variant;
    rc = fp_bench_best(s, mm_call_record, &c, 1, reps, best, NULL);
    fp_stream_free(s);
    return rc;
}

/* Correctness gate: the variant against fp_matmul_ref on a small odd shape in
 * two layouts (scalar path) and an aligned one (vec4 path). */
static int check_variant(fp_ctx *ctx, const char *variant, double *nmse_out)
{
    static const int cases[3][5] = {{37, 29, 19, 1, 1}, {21, 35, 13, 0, 0}, {24, 32, 16, 0, 1}};
    double worst = 0;
    int rc = 0;
    for (int c = 0; c < 3 && !rc; c++) {
        fp_matmul_desc d = fp_matmul_desc_make(cases[c][0], cases[c][1], cases[c][2]);
        d.trans_a = cases[c][3];
        d.trans_b = cases[c][4];
        d.beta = 0.5f;
        d.variant = variant;
        int64_t na = d.M * d.K, nb = d.K * d.N, nc = d.M * d.N;
        float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb), *c0 = malloc(sizeof(float) * nc);
        float *ref = malloc(sizeof(float) * nc);
        fp_tensor *A = NULL, *B = NULL, *C = NULL;
        fp_stream *s = NULL;
        uint32_t st = 777u + (uint32_t)c;
        if (!a || !b || !c0 || !ref) {
            rc = fp_seterr(FP_ENOMEM, "matmul tune: out of memory");
            goto next;
        }
        for (int64_t i = 0; i < na; i++) a[i] = frand(&st);
        for (int64_t i = 0; i < nb; i++) b[i] = frand(&st);
        for (int64_t i = 0; i < nc; i++) ref[i] = c0[i] = frand(&st);
        fp_matmul_ref(ref, a, b, &d);
        rc = fp_tensor_new(&A, ctx, FP_F32, 1, &na);
        if (!rc) rc = fp_tensor_new(&B, ctx, FP_F32, 1, &nb);
        if (!rc) rc = fp_tensor_new(&C, ctx, FP_F32, 1, &nc);
        if (!rc) rc = fp_tensor_upload(A, a, sizeof(float) * na);
        if (!rc) rc = fp_tensor_upload(B, b, sizeof(float) * nb);
        if (!rc) rc = fp_tensor_upload(C, c0, sizeof(float) * nc);
        if (!rc) rc = fp_stream_new(&s, ctx);
        if (!rc) rc = fp_matmul(s, C, A, B, &d);
        if (!rc) rc = fp_stream_run(s);
        if (!rc) rc = fp_tensor_download(c0, sizeof(float) * nc, C);
        if (!rc) {
            double num = 0, den = 0;
            for (int64_t i = 0; i < nc; i++) {
                double e = (double)c0[i] - ref[i];
                num += e * e;
                den += (double)ref[i] * ref[i];
            }
            double e = den > 0 ? num / den : num;
            if (!(e <= worst)) /* NaN counts as worst */
                worst = isnan(e) ? 1e30 : e;
        }
    next:
        fp_stream_free(s);
        fp_tensor_free(A); fp_tensor_free(B); fp_tensor_free(C);
        free(a); free(b); free(c0); free(ref);
    }
    *nmse_out = worst;
    return rc;
}

int fp_matmul_autotune(fp_ctx *ctx, fp_measured *m, int quick)
{
    if (!ctx || !m)
        return fp_seterr(FP_EINVAL, "matmul autotune: NULL argument");
    struct { const char *cls; int64_t M, N, K; int tb; } shapes[] = {
        {"small", 256, 256, 256, 0},
        {"skinny", 32, 2048, 512, 1},
        {"medium", 1024, 512, 512, 1},
        {"large", 1024, 1024, 1024, 0},
    };
    if (quick) {
        shapes[2].M = 512;
        shapes[3].M = shapes[3].N = shapes[3].K = 512;
        shapes[3].cls = "large";
    }
    const char *ok[32];
    int nok = 0;
    for (int i = 0; fp_matmul_variant_names[i] && nok < 32; i++) {
        const char *v = fp_matmul_variant_names[i];
        if (!fp_matmul_variant_ok(ctx, v) || (quick && fp_matmul_variant_heavy(v)))
            continue;
        double e;
        int rc = check_variant(ctx, v, &e);
        if (rc || e > 5e-4) {
            fprintf(stderr, "matmul autotune: variant %s %s (nmse %g): not used\n", v,
                    rc ? fp_errmsg() : "is wrong against the reference", e);
            continue;
        }
        ok[nok++] = v;
    }
    if (!nok)
        return fp_seterr(FP_EPIPELINE, "matmul autotune: no variant passed the reference check");
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        struct mm_bufs b;
        int rc = bufs_new(&b, ctx, shapes[c].M, shapes[c].N, shapes[c].K);
        if (rc)
            return rc;
        /* win: the fastest f32 variant; win16: the fastest of all, f16-input
         * (cooperative-matrix) ones included, used only where reduced precision
         * is allowed (fp_matmul_f16_allowed) */
        double best = 1e30, best16 = 1e30;
        const char *win = NULL, *win16 = NULL;
        for (int i = 0; i < nok; i++) {
            double t;
            rc = time_variant(ctx, &b, shapes[c].M, shapes[c].N, shapes[c].K, shapes[c].tb, ok[i], 2, &t);
            if (rc) {
                fprintf(stderr, "matmul autotune: %s failed on %s: %s\n", ok[i], shapes[c].cls, fp_errmsg());
                continue;
            }
            if (t < best && !fp_matmul_variant_f16(ok[i])) {
                best = t;
                win = ok[i];
            }
            if (t < best16) {
                best16 = t;
                win16 = ok[i];
            }
        }
        bufs_free(&b);
        if (!win)
            return fp_seterr(FP_EPIPELINE, "matmul autotune: no f32 variant ran on class %s", shapes[c].cls);
        char key[FP_TUNE_KEY_MAX];
        snprintf(key, sizeof key, "matmul.f32.%s", shapes[c].cls);
        rc = fp_measured_tune_set(m, key, win);
        if (rc)
            return rc;
        if (win16 && fp_matmul_variant_f16(win16)) {
            snprintf(key, sizeof key, "matmul.f16.%s", shapes[c].cls);
            rc = fp_measured_tune_set(m, key, win16);
            if (rc)
                return rc;
        }
        if (!strcmp(shapes[c].cls, "large"))
            m->matmul_gflops = 2.0 * shapes[c].M * shapes[c].N * shapes[c].K / best / 1e9;
    }
    return 0;
}

/* ---- benchmark ---------------------------------------------------------------- */

int fp_bench_matmul(fp_ctx *ctx, int quick, char **json_out)
{
    if (!ctx || !json_out)
        return fp_seterr(FP_EINVAL, "matmul bench: NULL argument");
    *json_out = NULL;
    struct { const char *name; int64_t M, N, K; int tb; } shapes[] = {
        {"256^3", 256, 256, 256, 0},
        {"512^3", 512, 512, 512, 0},
        {"1024^3", 1024, 1024, 1024, 0},
        {"2048^3", 2048, 2048, 2048, 0},
        {"tokens x 512 x 512 (x W^T)", 1024, 512, 512, 1},
        {"tokens x 512 -> 1408 (x W^T)", 1024, 1408, 512, 1},
        {"tokens x 1408 -> 512 (x W^T)", 1024, 512, 1408, 1},
        {"tokens x 512 -> 8192 (x W^T)", 1024, 8192, 512, 1},
    };
    cJSON *root = cJSON_CreateObject(), *res = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "device", fp_ctx_profile(ctx)->name);
    cJSON_AddBoolToObject(root, "quick", quick != 0);
    cJSON_AddStringToObject(root, "unit", "GFLOP/s = 2*M*N*K / best seconds per call (wall clock, over submissions of back-to-back calls that each last about 2 ms where a call is shorter)");
    cJSON_AddBoolToObject(root, "f16_allowed_in_auto", fp_matmul_f16_allowed(ctx));
    cJSON *prec = cJSON_AddObjectToObject(root, "precision");
    cJSON_AddItemToObject(root, "results", res);
    const char *vars[32];
    int nv = 0;
    for (int i = 0; fp_matmul_variant_names[i] && nv < 32; i++)
        if (fp_matmul_variant_ok(ctx, fp_matmul_variant_names[i]) &&
            !(quick && fp_matmul_variant_heavy(fp_matmul_variant_names[i]))) {
            vars[nv++] = fp_matmul_variant_names[i];
            cJSON_AddStringToObject(prec, fp_matmul_variant_names[i],
                                    fp_matmul_variant_f16(fp_matmul_variant_names[i])
                                        ? "f16 inputs, f32 accumulate"
                                        : "f32");
        }
    double gf512[32] = {0}, best512 = 0;
    int rc = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0] && !rc; c++) {
        int64_t M = shapes[c].M, N = shapes[c].N, K = shapes[c].K;
        int big = M * N * K > 512LL * 512 * 512;
        if (quick && (big || c >= 4))
            continue;
        struct mm_bufs b;
        rc = bufs_new(&b, ctx, M, N, K);
        if (rc)
            break;
        double flops = 2.0 * M * N * K, best = 0, best32 = 0;
        const char *bestv = NULL, *bestv32 = NULL;
        cJSON *sh = cJSON_CreateObject(), *per = cJSON_CreateObject();
        cJSON_AddStringToObject(sh, "shape", shapes[c].name);
        cJSON_AddNumberToObject(sh, "M", (double)M);
        cJSON_AddNumberToObject(sh, "N", (double)N);
        cJSON_AddNumberToObject(sh, "K", (double)K);
        cJSON_AddStringToObject(sh, "layout", shapes[c].tb ? "NT" : "NN");
        for (int i = 0; i < nv; i++) {
            /* big shapes: skip variants under a third of the best at 512^3 */
            if (big && best512 > 0 && gf512[i] < best512 / 3)
                continue;
            double t;
            int reps = big ? 2 : 3;
            if (time_variant(ctx, &b, M, N, K, shapes[c].tb, vars[i], reps, &t)) {
                fprintf(stderr, "matmul bench: %s on %s: %s\n", vars[i], shapes[c].name, fp_errmsg());
                continue;
            }
            double gf = flops / t / 1e9;
            cJSON_AddNumberToObject(per, vars[i], round(gf * 100) / 100);
            if (c == 1)
                gf512[i] = gf;
            if (gf > best) {
                best = gf;
                bestv = vars[i];
            }
            if (gf > best32 && !fp_matmul_variant_f16(vars[i])) {
                best32 = gf;
                bestv32 = vars[i];
            }
        }
        if (c == 1) /* the f32 best: f16-input variants must not crowd the f32 ones out */
            best512 = best32;
        bufs_free(&b);
        cJSON_AddItemToObject(sh, "variants", per);
        cJSON_AddStringToObject(sh, "best_variant", bestv ? bestv : "");
        cJSON_AddNumberToObject(sh, "best_gflops", round(best * 100) / 100);
        cJSON_AddStringToObject(sh, "best_f32_variant", bestv32 ? bestv32 : "");
        cJSON_AddNumberToObject(sh, "best_f32_gflops", round(best32 * 100) / 100);
        cJSON_AddStringToObject(sh, "auto_variant", fp_matmul_pick(ctx, M, N, K));
        double bt;
        if (fp_matmul_host_blas_time(M, N, K, 3, &bt) == 0) {
            double bg = flops / bt / 1e9;
            cJSON_AddNumberToObject(sh, "openblas_gflops", round(bg * 100) / 100);
            cJSON_AddNumberToObject(sh, "ratio_vs_openblas", round(best / bg * 1000) / 1000);
        }
        cJSON_AddItemToArray(res, sh);
    }
    if (!rc) {
        *json_out = cJSON_PrintUnformatted(root);
        if (!*json_out)
            rc = fp_seterr(FP_ENOMEM, "matmul bench: cannot print JSON");
    }
    cJSON_Delete(root);
    return rc;
}
