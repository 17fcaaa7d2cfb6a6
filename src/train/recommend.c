/* LoRA rank / batch / sequence recommendation from the memory heaps and the
 * measured matmul rate (see include/fedproxy/recommend.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fedproxy/recommend.h"
#include "error_internal.h"

fp_model_shape fp_model_shape_bench(void)
{
    fp_model_shape m = {8, 512, 8, 2, 1408, 8192, 4};
    return m;
}

static double base_params(const fp_model_shape *m)
{
    double hd = (double)m->hidden / m->heads;
    double attn = (double)m->hidden * m->hidden * 2 + 2.0 * m->hidden * hd * m->kv_heads;
    double mlp = 3.0 * m->hidden * m->intermediate;
    return m->layers * (attn + mlp + 2.0 * m->hidden) + (double)m->vocab * m->hidden + m->hidden;
}

/* LoRA on q,k,v,o,gate,up,down of every layer: r * (in + out) each */
static double lora_params(const fp_model_shape *m, int rank)
{
    double hd = (double)m->hidden / m->heads, kv = hd * m->kv_heads;
    double per = (m->hidden + m->hidden) * 2.0 + (m->hidden + kv) * 2.0 + (m->hidden + m->intermediate) * 3.0;
    return (double)m->layers * rank * per;
}

uint64_t fp_recommend_bytes(const fp_model_shape *m, int rank, int batch, int seq)
{
    double tokens = (double)batch * seq;
    double weights = base_params(m) * m->weight_bytes;
    double lora = lora_params(m, rank) * 4.0 * 4.0; /* param, grad, Adam m and v */
    /* activations kept for backward per token and layer: norms, q/k/v/o, attention
     * output and softmax stats, the MLP's gate/up/act, residuals (f32) */
    double hd = (double)m->hidden / m->heads;
    double per_layer = 10.0 * m->hidden + 2.0 * hd * m->kv_heads + 4.0 * m->intermediate + 2.0 * m->heads + 8.0 * rank;
    double acts = tokens * (m->layers * per_layer + 2.0 * m->hidden) * 4.0;
    double logits = tokens * m->vocab * 4.0 * 2.0; /* logits and their gradient */
    return (uint64_t)(weights + lora + acts + logits);
}

double fp_recommend_step_flops(const fp_model_shape *m, int rank, int batch, int seq)
{
    double tokens = (double)batch * seq;
    /* forward 2*P per token; backward needs activation grads (2*P) but no base
     * weight grads; LoRA adds 6*r*(in+out) per token; attention 4*T*hidden per layer */
    double dense = 4.0 * base_params(m) + 6.0 * lora_params(m, rank);
    double attn = m->layers * 4.0 * seq * m->hidden * 2.5;
    return tokens * (dense + attn);
}

int fp_recommend_train(fp_train_plan *out, const fp_profile *p, const fp_measured *meas, const fp_model_shape *model,
                       uint64_t budget, double target_step_s)
{
    if (!out || !p || !model || model->layers <= 0 || model->hidden <= 0 || model->heads <= 0 ||
        model->kv_heads <= 0 || model->vocab <= 0 || model->intermediate <= 0 || model->weight_bytes <= 0)
        return fp_seterr(FP_EINVAL, "recommend: bad model shape");
    memset(out, 0, sizeof *out);
    if (!budget) {
        uint64_t heap = p->device_local_bytes;
        budget = p->uma ? heap / 2 : heap / 10 * 8;
    }
    if (target_step_s <= 0)
        target_step_s = 2.0;
    int measured = meas && meas->valid && meas->matmul_gflops > 0;
    /* training kernels reach about half the plain matmul rate */
    double gflops = measured ? meas->matmul_gflops * 0.5 : 5.0 * 0.5;

    /* rank grows with compute: each doubling of throughput over 5 GFLOP/s doubles
     * the rank, from 4 to 64 (more capacity where it costs little time) */
    int rank = 4;
    while (rank < 64 && gflops * 2 >= 5.0 * (rank / 4) * 2)
        rank *= 2;

    static const int seqs[] = {512, 256, 128, 64, 32};
    int best_b = 0, best_s = 0, mem_ok = 0;
    double best_tok = 0;
    for (;;) {
        for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
            for (int b = 1; b <= 64; b *= 2) {
                if (fp_recommend_bytes(model, rank, b, seqs[i]) > budget)
                    break;
                mem_ok = 1;
                if (fp_recommend_step_flops(model, rank, b, seqs[i]) / (gflops * 1e9) > target_step_s)
                    break;
                double tok = (double)b * seqs[i];
                if (tok > best_tok) { /* ties keep the longer sequence: more context per sample */
                    best_tok = tok;
                    best_b = b;
                    best_s = seqs[i];
                }
            }
        }
        if (best_b || rank == 4)
            break;
        rank /= 2; /* nothing fit in memory and time: a smaller adapter first */
    }
    const char *limit = "memory and the step-time target";
    if (!best_b) {
        if (!mem_ok)
            return fp_seterr(FP_EDEVMEM,
                             "the model needs %.1f MiB even at rank 4, batch 1, sequence 32, but %s has a budget "
                             "of %.1f MiB",
                             fp_recommend_bytes(model, 4, 1, 32) / 1048576.0, p->name, budget / 1048576.0);
        /* a slow device: the shortest useful step, and the round deadline absorbs it */
        best_b = 1;
        best_s = 64;
        while (best_s > 32 && fp_recommend_bytes(model, rank, 1, best_s) > budget)
            best_s /= 2;
        limit = "device speed (slower than the step-time target even at batch 1)";
    }
    out->rank = rank;
    out->batch = best_b;
    out->seq = best_s;
    out->budget = budget;
    out->bytes = fp_recommend_bytes(model, rank, best_b, best_s);
    out->step_seconds = fp_recommend_step_flops(model, rank, best_b, best_s) / (gflops * 1e9);
    out->tokens_per_s = (double)best_b * best_s / out->step_seconds;
    snprintf(out->why, sizeof out->why, "%s at %.1f GFLOP/s (%s), %.0f of %.0f MiB budget; limited by %s",
             measured ? "measured" : "assumed", gflops * 2, measured ? "fp-probe matmul" : "no fp-probe run yet",
             out->bytes / 1048576.0, budget / 1048576.0, limit);
    return 0;
}
