/* fedproxy: training-shape recommendation for a client — LoRA rank, batch and
 * sequence length — derived from the device's memory heaps and its measured
 * throughput (fp-probe), never from a per-vendor table. The server uses it to
 * assign work at registration; fp-probe prints it. Pure function; thread-safe. */
#ifndef FEDPROXY_RECOMMEND_H
#define FEDPROXY_RECOMMEND_H

#include <stdint.h>

#include "fedproxy/measured.h"
#include "fedproxy/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The model being fine-tuned (a Llama-family decoder). */
typedef struct fp_model_shape {
    int layers, hidden, heads, kv_heads, intermediate, vocab;
    int weight_bytes; /* bytes per frozen base weight: 4 f32, 2 f16/bf16 */
} fp_model_shape;

/* The benchmark model of the project (8 layers, hidden 512, 8 heads, 2 KV heads,
 * intermediate 1408, vocab 8192, f32 weights). */
fp_model_shape fp_model_shape_bench(void);

typedef struct fp_train_plan {
    int rank, batch, seq;
    uint64_t bytes;         /* planned device bytes: weights, LoRA state, activations */
    uint64_t budget;        /* the budget it was planned against */
    double step_seconds;    /* estimated time of one optimiser step */
    double tokens_per_s;    /* estimated */
    char why[256];          /* one line: what limited the choice */
} fp_train_plan;

/* Plans LoRA fine-tuning of model on a device.
 * budget_bytes: 0 = derive from the heaps (UMA devices share RAM with the OS:
 * half the heap; discrete: 80%). target_step_s: the wall time a round's step
 * should take (0 = 2 s); slower devices get smaller batches so every client
 * finishes a round in about the same time. Without measurements (m NULL or not
 * valid) a conservative 5 GFLOP/s is assumed and said so in why.
 * FP_EDEVMEM if even rank 4, batch 1, sequence 32 does not fit. */
int fp_recommend_train(fp_train_plan *out, const fp_profile *p, const fp_measured *m, const fp_model_shape *model,
                       uint64_t budget_bytes, double target_step_s);

/* Bytes a plan needs (exposed for the engine's own planner and for tests). */
uint64_t fp_recommend_bytes(const fp_model_shape *model, int rank, int batch, int seq);

/* FLOPs of one LoRA training step (forward + backward, no base-weight grads). */
double fp_recommend_step_flops(const fp_model_shape *model, int rank, int batch, int seq);

#ifdef __cplusplus
}
#endif
#endif
