/* Hand-run benchmark (label slow): fp_matmul on the LoRA training shapes of the
 * split-K heuristic (src/ops/matmul.c) and a few base shapes, unsplit
 * (FP_MATMUL_SPLITK=1), automatic, and forced S = 2, 4, 8, 16, for reg_4x4 (the
 * tuned H100 choice), tiled_small (the untuned GPU default) and the automatic
 * pick. Per product: GPU time (sum of its dispatches' timestamps, partials and
 * reduction) and wall time per product of a stream of REPS products, best of 3.
 * Prints one line per shape/variant/mode. */
#include "fedproxy/ops_matmul.h"
#include "fp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 20

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
    fp_ctx_opts o = {0};
    o.validate = 0;
    o.profiling = 1;
    fp_ctx *ctx = NULL;
    if (fp_ctx_create(&ctx, &o)) {
        fprintf(stderr, "no context: %s\n", fp_errmsg());
        return 2;
    }
    printf("device %s\n", fp_ctx_profile(ctx)->name);
    static const struct { const char *what; int64_t M, N, K; int ta, tb; } shapes[] = {
        {"u=xA^T", 256, 16, 512, 0, 1},    {"u=xA^T", 256, 16, 1408, 0, 1}, {"du=dyB", 256, 16, 512, 0, 0},
        {"du=dyB", 256, 16, 1408, 0, 0},   {"dB=dy^Tu", 512, 16, 256, 1, 0}, {"dB=dy^Tu", 1408, 16, 256, 1, 0},
        {"dA=du^Tx", 16, 512, 256, 1, 0},  {"dA=du^Tx", 16, 1408, 256, 1, 0}, {"base", 256, 512, 512, 0, 1},
        {"base", 256, 1408, 512, 0, 1},    {"base", 256, 512, 1408, 0, 1},   {"base-dW", 512, 512, 256, 1, 0},
    };
    const char *variants[] = {"reg_4x4", "tiled_small", NULL /* auto */};
    const char *modes[] = {"1", "auto", "2", "4", "8", "16"};
    int64_t big = 1408 * 1408;
    float *h = malloc(sizeof(float) * big);
    for (int64_t i = 0; i < big; i++)
        h[i] = (float)((i * 7919 % 2003) - 1001) / 1001.0f;
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    int rc = fp_tensor_new(&A, ctx, FP_F32, 1, &big);
    if (!rc) rc = fp_tensor_new(&B, ctx, FP_F32, 1, &big);
    if (!rc) rc = fp_tensor_new(&C, ctx, FP_F32, 1, &big);
    if (!rc) rc = fp_tensor_upload(A, h, sizeof(float) * big);
    if (!rc) rc = fp_tensor_upload(B, h, sizeof(float) * big);
    if (!rc) rc = fp_stream_new(&s, ctx);
    fp_dispatch_time *dt = malloc(sizeof *dt * 4 * REPS * 20);
    size_t nsh = sizeof shapes / sizeof shapes[0];
    if (getenv("FP_SKB_SHAPES")) /* fewer shapes (a smoke run on lavapipe) */
        nsh = (size_t)atoi(getenv("FP_SKB_SHAPES"));
    for (size_t si = 0; !rc && si < nsh && si < sizeof shapes / sizeof shapes[0]; si++)
        for (int vi = 0; !rc && vi < 3; vi++) {
            double base_gpu = 0;
            for (int mi = 0; !rc && mi < 6; mi++) {
                setenv("FP_MATMUL_SPLITK", modes[mi], 1);
                double best_gpu = 1e30, best_wall = 1e30;
                const char *chosen = "?";
                for (int r = 0; !rc && r < 4; r++) { /* r = 0: warm-up */
                    double t0 = now();
                    for (int i = 0; !rc && i < REPS; i++) {
                        fp_matmul_desc d = fp_matmul_desc_make(shapes[si].M, shapes[si].N, shapes[si].K);
                        d.trans_a = shapes[si].ta;
                        d.trans_b = shapes[si].tb;
                        d.lda = d.trans_a ? d.M : d.K;
                        d.ldb = d.trans_b ? d.K : d.N;
                        d.ldc = d.N;
                        d.variant = variants[vi];
                        rc = fp_matmul(s, C, A, B, &d);
                        chosen = d.chosen;
                    }
                    if (!rc) rc = fp_stream_run(s);
                    double wall = (now() - t0) * 1e6 / REPS;
                    uint32_t n = 0;
                    if (!rc && fp_stream_timings(s, dt, 4 * REPS * 20, &n) == 0 && r > 0) {
                        double g = 0;
                        for (uint32_t i = 0; i < n && i < 4 * REPS * 20; i++)
                            g += dt[i].us;
                        g /= REPS;
                        if (g < best_gpu) best_gpu = g;
                        if (wall < best_wall) best_wall = wall;
                    }
                }
                if (rc)
                    break;
                if (mi == 0)
                    base_gpu = best_gpu;
                printf("%-9s %5lldx%-5lldx%-5lld %-12s S=%-4s %-22s gpu %8.2f us  wall %8.2f us  speedup %5.2fx  %6.0f GFLOP/s\n",
                       shapes[si].what, (long long)shapes[si].M, (long long)shapes[si].N, (long long)shapes[si].K,
                       variants[vi] ? variants[vi] : "auto", modes[mi], chosen, best_gpu, best_wall,
                       base_gpu / best_gpu,
                       2.0 * shapes[si].M * shapes[si].N * shapes[si].K / best_gpu / 1e3);
            }
        }
    if (rc)
        fprintf(stderr, "failed: %s\n", fp_errmsg());
    unsetenv("FP_MATMUL_SPLITK");
    free(dt);
    free(h);
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
    fp_ctx_destroy(ctx);
    return rc ? 1 : 0;
}
