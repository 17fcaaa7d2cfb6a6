/* fp bench train (train.h): training-step throughput of a small Llama for LoRA
 * and full fine-tuning, the achieved model GFLOP/s against the same run's plain
 * matmul rate on the model's main shape (through the engine's own matmul entry
 * point, llm_matmul), and peak device memory against the plan. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error_internal.h"
#include "fedproxy/train.h"
#include "model/llama_internal.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Model FLOPs of one training step (B x T tokens). */
typedef struct flop_count {
    double dense_fwd, attn_fwd, lora_fwd, total;
} flop_count;

static flop_count count_flops(const fp_llama_config *c, const fp_lora_config *lc, int64_t B, int64_t T)
{
    double N = (double)(B * T), C = (double)c->hidden, qd = (double)(c->heads * c->head_dim);
    double kd = (double)(c->kv_heads * c->head_dim), I = (double)c->intermediate, V = (double)c->vocab;
    double L = (double)c->layers;
    double p_mm = L * (C * qd * 2 + C * kd * 2 + 3 * C * I) + V * C; /* every weight in a matmul (+ LM head) */
    flop_count f = {0};
    f.dense_fwd = 2.0 * p_mm * N;
    /* causal: QK^T and PV over T(T+1)/2 (query, key) pairs per sequence, 2 FLOPs per MAC */
    f.attn_fwd = L * 4.0 * qd * (double)B * (double)T * (double)(T + 1) / 2.0;
    if (lc) {
        double in[7] = {C, C, C, qd, C, C, I}, out[7] = {qd, kd, kd, C, I, I, C}, per = 0;
        for (int t = 0; t < 7; t++)
            if (lc->targets & (1u << t))
                per += (double)lc->rank * (in[t] + out[t]);
        f.lora_fwd = 2.0 * L * per * N;
        /* forward + backward (dense: dx only; attention 2x; LoRA: 2x, dA/dB and the dx term) */
        f.total = (f.dense_fwd + f.attn_fwd + f.lora_fwd) + (f.dense_fwd + 2 * f.attn_fwd + 2 * f.lora_fwd);
    } else {
        f.total = 3.0 * (f.dense_fwd + f.attn_fwd);
    }
    return f;
}

/* Best-of-reps GFLOP/s of C[M,N] = A[M,K] B[N,K]^T through llm_matmul (the
 * model's x W^T), `per` dispatches per submit. */
static int matmul_rate(fp_ctx *ctx, int64_t M, int64_t N, int64_t K, int reps, int per, double *gflops,
                       double *best_ms, const char **variant)
{
    fp_tensor *A = NULL, *B = NULL, *C = NULL;
    fp_stream *s = NULL;
    int64_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
    int rc = fp_tensor_new(&A, ctx, FP_F32, 2, sa);
    if (!rc)
        rc = fp_tensor_new(&B, ctx, FP_F32, 2, sb);
    if (!rc)
        rc = fp_tensor_new(&C, ctx, FP_F32, 2, sc);
    float *h = malloc((size_t)(M > N ? M : N) * (size_t)K * sizeof(float));
    if (!rc && !h)
        rc = fp_seterr(FP_ENOMEM, "bench train: out of host memory");
    for (int64_t i = 0; !rc && i < (M > N ? M : N) * K; i++)
        h[i] = (float)((i * 7919 % 2003) - 1001) / 1001.0f;
    if (!rc)
        rc = fp_tensor_upload(A, h, (size_t)(M * K) * 4);
    if (!rc)
        rc = fp_tensor_upload(B, h, (size_t)(N * K) * 4);
    if (!rc)
        rc = fp_stream_new(&s, ctx);
    double best = 1e30;
    for (int r = 0; !rc && r <= reps; r++) { /* r = 0: warm-up (pipeline creation) */
        for (int i = 0; !rc && i < per; i++)
            rc = llm_matmul(s, C, A, 0, B, 1, M, N, K, 1.0f, 0.0f);
        *variant = llm_matmul_last_variant();
        double t0 = wall();
        if (!rc)
            rc = fp_stream_run(s);
        double dt = wall() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    if (!rc) {
        *gflops = 2.0 * (double)M * (double)N * (double)K * per / best / 1e9;
        *best_ms = best * 1e3 / per;
    }
    free(h);
    fp_stream_free(s);
    fp_tensor_free(A);
    fp_tensor_free(B);
    fp_tensor_free(C);
    return rc;
}

static int cmp_gpu_desc(const void *a, const void *b)
{
    double x = ((const fp_train_prof_entry *)a)->gpu_us, y = ((const fp_train_prof_entry *)b)->gpu_us;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* "profile": where the timed steps' time went, per step: host (recording,
 * uploads, readbacks) against submit-to-completion, dispatches, barriers; on a
 * profiling context also GPU time, and the pipelines that took most of it. */
static int add_profile(const fp_trainer *tr, cJSON *out)
{
    fp_train_profile p;
    uint32_t n = 0;
    int rc = fp_trainer_profile(tr, &p, NULL, 0, &n);
    fp_train_prof_entry *e = n ? malloc(n * sizeof *e) : NULL;
    if (!rc && n && !e)
        rc = fp_seterr(FP_ENOMEM, "bench train: out of host memory");
    if (!rc && n)
        rc = fp_trainer_profile(tr, &p, e, n, &n);
    if (rc || p.steps < 1) {
        free(e);
        return rc;
    }
    double k = 1.0 / (double)p.steps;
    cJSON *pj = cJSON_AddObjectToObject(out, "profile");
    cJSON_AddNumberToObject(pj, "steps", (double)p.steps);
    cJSON_AddNumberToObject(pj, "wall_ms", p.wall_s * k * 1e3);
    cJSON_AddNumberToObject(pj, "host_ms", p.record_s * k * 1e3);
    cJSON_AddNumberToObject(pj, "run_ms", p.run_s * k * 1e3);
    cJSON_AddNumberToObject(pj, "stream_runs", p.runs * k);
    cJSON_AddNumberToObject(pj, "dispatches", p.dispatches * k);
    cJSON_AddNumberToObject(pj, "barriers", p.barriers * k);
    if (n) {
        cJSON_AddNumberToObject(pj, "gpu_ms", p.gpu_us * k * 1e-3);
        cJSON_AddNumberToObject(pj, "gpu_share_of_wall", p.wall_s > 0 ? p.gpu_us * 1e-6 / p.wall_s : 0);
        qsort(e, n, sizeof *e, cmp_gpu_desc);
        cJSON *top = cJSON_AddArrayToObject(pj, "top");
        for (uint32_t i = 0; i < n && i < 16; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "pipeline", e[i].pipeline);
            cJSON_AddNumberToObject(o, "gpu_ms", e[i].gpu_us * k * 1e-3);
            cJSON_AddNumberToObject(o, "dispatches", e[i].dispatches * k);
            cJSON_AddNumberToObject(o, "share", p.gpu_us > 0 ? e[i].gpu_us / p.gpu_us : 0);
            cJSON_AddItemToArray(top, o);
        }
    }
    free(e);
    return 0;
}

/* One mode (LoRA when lc != NULL): warm-up step, then `steps` timed steps. */
static int bench_mode(fp_ctx *ctx, const fp_llama_config *cfg, const fp_lora_config *lc, int64_t T, int steps,
                      double matmul_gflops, cJSON *out)
{
    fp_model *m = NULL;
    fp_trainer *tr = NULL;
    fp_mem_stats m0, m1;
    fp_ctx_mem_stats(ctx, &m0);
    int64_t ntok = (int64_t)(steps + 2) * T + 1;
    int32_t *tok = malloc((size_t)ntok * sizeof(int32_t));
    if (!tok)
        return fp_seterr(FP_ENOMEM, "bench train: out of host memory");
    uint64_t z = 0x243f6a8885a308d3ull;
    for (int64_t i = 0; i < ntok; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((z >> 33) % (uint64_t)cfg->vocab);
    }
    fp_train_config tc;
    fp_train_config_default(&tc);
    tc.lr = 1e-4f;
    tc.steps = steps + 1;
    tc.batch = 1;
    tc.seq = T;
    fp_plan_bytes pb;
    int rc = fp_model_plan_bytes(&pb, cfg, lc, 1, T, 1, 2);
    if (!rc)
        rc = fp_model_create(&m, ctx, cfg);
    if (!rc)
        rc = fp_model_init_random(m, 1234);
    if (!rc && lc)
        rc = fp_model_lora_enable(m, lc, 99);
    if (!rc)
        rc = fp_trainer_create(&tr, m, &tc, tok, ntok);
    uint64_t in_use_max = 0;
    double best = 1e30, sum = 0, first_loss = 0, last_loss = 0;
    int64_t tokens = 0;
    for (int i = 0; !rc && i <= steps; i++) {
        fp_train_stats st;
        rc = fp_trainer_step(tr, &st);
        fp_mem_stats ms;
        fp_ctx_mem_stats(ctx, &ms);
        if (ms.in_use > in_use_max)
            in_use_max = ms.in_use;
        if (rc || i == 0) { /* warm-up: pipeline creation, first-touch of memory */
            first_loss = st.loss;
            fp_trainer_profile_reset(tr);
            continue;
        }
        sum += st.seconds;
        if (st.seconds < best)
            best = st.seconds;
        tokens = st.tokens;
        last_loss = st.loss;
    }
    fp_ctx_mem_stats(ctx, &m1);
    if (!rc) {
        uint64_t base = m0.in_use;
        uint64_t peak = in_use_max - base;
        if (m1.peak_in_use > m0.peak_in_use && m1.peak_in_use - base > peak)
            peak = m1.peak_in_use - base; /* the context-wide peak rose during this mode */
        flop_count f = count_flops(cfg, lc, 1, T);
        double mean = sum / steps;
        double gfl = f.total / mean / 1e9, gfl_best = f.total / best / 1e9;
        cJSON_AddNumberToObject(out, "steps_timed", steps);
        cJSON_AddNumberToObject(out, "tokens_per_step", (double)tokens);
        cJSON_AddNumberToObject(out, "step_ms_mean", mean * 1e3);
        cJSON_AddNumberToObject(out, "step_ms_best", best * 1e3);
        cJSON_AddNumberToObject(out, "tokens_per_s", (double)tokens / mean);
        cJSON_AddNumberToObject(out, "tokens_per_s_best", (double)tokens / best);
        cJSON_AddNumberToObject(out, "gflop_per_step", f.total / 1e9);
        cJSON_AddNumberToObject(out, "gflops", gfl);
        cJSON_AddNumberToObject(out, "gflops_best", gfl_best);
        cJSON_AddNumberToObject(out, "ratio_to_matmul", matmul_gflops > 0 ? gfl / matmul_gflops : 0);
        cJSON_AddNumberToObject(out, "ratio_to_matmul_best", matmul_gflops > 0 ? gfl_best / matmul_gflops : 0);
        cJSON_AddNumberToObject(out, "peak_device_bytes", (double)peak);
        cJSON_AddNumberToObject(out, "planned_bytes", (double)pb.total);
        cJSON *pj = cJSON_AddObjectToObject(out, "planned");
        cJSON_AddNumberToObject(pj, "params", (double)pb.params);
        cJSON_AddNumberToObject(pj, "grads", (double)pb.grads);
        cJSON_AddNumberToObject(pj, "optimizer", (double)pb.optimizer);
        cJSON_AddNumberToObject(pj, "activations", (double)pb.activations);
        cJSON_AddNumberToObject(out, "peak_over_planned", pb.total ? (double)peak / (double)pb.total : 0);
        cJSON_AddNumberToObject(out, "loss_first", first_loss);
        cJSON_AddNumberToObject(out, "loss_last", last_loss);
        cJSON_AddNumberToObject(out, "trained_params",
                                (double)(lc ? fp_lora_param_count(cfg, lc) : fp_llama_param_count(cfg)));
        rc = add_profile(tr, out);
    }
    fp_trainer_free(tr);
    fp_model_free(m);
    free(tok);
    return rc;
}

int fp_bench_train(fp_ctx *ctx, int quick, char **json)
{
    if (!ctx || !json)
        return fp_seterr(FP_EINVAL, "bench train: NULL argument");
    *json = NULL;
    fp_llama_config cfg = {.hidden = 512, .layers = quick ? 2 : 8, .heads = 8, .kv_heads = 2, .head_dim = 64,
                           .intermediate = 1408, .vocab = 8192, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
                           .tied = 0, .attn_bias = 0};
    int64_t T = quick ? 128 : 256;
    int steps = quick ? 2 : 3;
    fp_lora_config lc = {.rank = 16, .alpha = 32.0f, .targets = FP_LORA_ALL};
    double mm_gflops = 0, mm_ms = 0;
    const char *mm_variant = "";
    int rc = matmul_rate(ctx, T, cfg.intermediate, cfg.hidden, quick ? 3 : 5, 4, &mm_gflops, &mm_ms, &mm_variant);
    if (rc)
        return rc;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "bench", "train");
    cJSON_AddStringToObject(j, "device", fp_ctx_profile(ctx)->name);
    cJSON_AddBoolToObject(j, "quick", quick);
    cJSON *mj = cJSON_AddObjectToObject(j, "model");
    cJSON_AddNumberToObject(mj, "layers", (double)cfg.layers);
    cJSON_AddNumberToObject(mj, "hidden", (double)cfg.hidden);
    cJSON_AddNumberToObject(mj, "heads", (double)cfg.heads);
    cJSON_AddNumberToObject(mj, "kv_heads", (double)cfg.kv_heads);
    cJSON_AddNumberToObject(mj, "head_dim", (double)cfg.head_dim);
    cJSON_AddNumberToObject(mj, "intermediate", (double)cfg.intermediate);
    cJSON_AddNumberToObject(mj, "vocab", (double)cfg.vocab);
    cJSON_AddNumberToObject(mj, "seq", (double)T);
    cJSON_AddNumberToObject(mj, "batch", 1);
    cJSON_AddNumberToObject(mj, "params", (double)fp_llama_param_count(&cfg));
    cJSON_AddStringToObject(j, "optimizer", "adamw");
    cJSON_AddStringToObject(
        j, "flops_formula",
        "P = weights used in matmuls (all linear layers + LM head, not the embedding lookup); N = B*T tokens; "
        "dense_fwd = 2*P*N; attn_fwd = L*4*Hq*D*B*T*(T+1)/2 (causal QK^T and PV); "
        "lora_fwd = 2*N*L*r*sum over targets(in+out); "
        "full step = 3*(dense_fwd + attn_fwd); "
        "LoRA step = (dense_fwd + attn_fwd + lora_fwd) + (dense_fwd + 2*attn_fwd + 2*lora_fwd) "
        "(backward: dx through the frozen weights only, attention backward 2x its forward)");
    cJSON *mmj = cJSON_AddObjectToObject(j, "matmul");
    char shape[96];
    snprintf(shape, sizeof shape, "%lldx%lldx%lld (tokens x intermediate x hidden, x W^T)", (long long)T,
             (long long)cfg.intermediate, (long long)cfg.hidden);
    cJSON_AddStringToObject(mmj, "shape", shape);
    cJSON_AddStringToObject(mmj, "kernel", "fp_matmul");
    cJSON_AddStringToObject(mmj, "variant", mm_variant);
    cJSON_AddNumberToObject(mmj, "gflops", mm_gflops);
    cJSON_AddNumberToObject(mmj, "ms", mm_ms);
    cJSON *lj = cJSON_AddObjectToObject(j, "lora");
    cJSON_AddNumberToObject(lj, "rank", lc.rank);
    cJSON_AddStringToObject(lj, "targets", "q,k,v,o,gate,up,down");
    rc = bench_mode(ctx, &cfg, &lc, T, steps, mm_gflops, lj);
    if (!rc) {
        cJSON *fj = cJSON_AddObjectToObject(j, "full");
        rc = bench_mode(ctx, &cfg, NULL, T, steps, mm_gflops, fj);
    }
    if (!rc) {
        *json = cJSON_PrintUnformatted(j);
        if (!*json)
            rc = fp_seterr(FP_ENOMEM, "bench train: out of host memory");
    }
    cJSON_Delete(j);
    return rc;
}
