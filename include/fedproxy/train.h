/* fedproxy: the training loop over the device transformer (model.h):
 * AdamW or SGD, gradient accumulation, global-norm clipping, a cosine
 * learning-rate schedule with linear warmup, batches cut from a token-id
 * array, and checkpoints with exact resume.
 *
 * Data: with seq >= n_tokens - 1 (or seq <= 0) the whole array is one
 * sequence (inputs ids 0..n-2, targets 1..n-1, batch 1). Otherwise each batch
 * row is a window of seq+1 consecutive tokens starting at the data position,
 * which then advances by seq; a window that would run past the end wraps to
 * the start of the next epoch at a random offset in [0, seq) drawn from the
 * trainer's RNG (so the position and the RNG are both part of a checkpoint).
 *
 * Loss: each micro-batch's loss is the mean over its targets; an optimizer
 * step's loss is the mean of its micro-batches' losses, and the gradient is
 * that mean's gradient. SGD is plain: p -= lr * g (no momentum, no decay).
 *
 * Checkpoint: one file DIR/checkpoint.fpck written atomically (temp file,
 * fsync, rename): a JSON header (step, data position, RNG state, configs)
 * then the trained parameters, and AdamW's m and v. Resuming restores all of
 * it, so the continued run's losses equal the uninterrupted run's.
 *
 * Ownership: the trainer borrows the model (free the trainer first).
 * Threading: one thread per trainer.
 */
#ifndef FEDPROXY_TRAIN_H
#define FEDPROXY_TRAIN_H

#include <stdint.h>

#include "fedproxy/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fp_optimizer { FP_OPT_ADAMW = 0, FP_OPT_SGD = 1 } fp_optimizer;

typedef struct fp_train_config {
    fp_optimizer optimizer;
    float lr;            /* peak learning rate */
    float beta1, beta2, eps, weight_decay; /* AdamW only */
    int64_t steps;       /* total optimizer steps (for the schedule) */
    int64_t warmup;      /* linear warmup steps (0: none) */
    float min_lr_ratio;  /* cosine decays to lr * min_lr_ratio; < 0: constant lr */
    int64_t batch, seq;  /* per micro-batch */
    int accum;           /* micro-batches per optimizer step (>= 1) */
    float clip;          /* global gradient-norm clip (<= 0: off) */
    uint64_t seed;       /* data RNG */
} fp_train_config;

/* Sensible defaults: AdamW lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0,
 * 100 steps, no warmup, constant lr (min_lr_ratio -1), batch 1, seq 0 (whole
 * array), accum 1, clip 1.0, seed 0. */
void fp_train_config_default(fp_train_config *c);

/* The learning rate at 0-based step (warmup then cosine to min_lr_ratio * lr). */
float fp_train_lr_at(const fp_train_config *c, int64_t step);

typedef struct fp_trainer fp_trainer;

typedef struct fp_train_stats {
    int64_t step;       /* 1-based index of the step just taken */
    float loss;         /* mean loss of this step's micro-batches, before the update */
    float grad_norm;    /* global gradient norm before clipping */
    float lr;
    int64_t tokens;     /* target tokens this step */
    double seconds;     /* wall time of this step */
} fp_train_stats;

/* Plans the model for (batch, seq) — or for the whole-array rule's length —
 * and allocates the optimizer state. tokens (n ids, all in [0, vocab)) is
 * borrowed for the trainer's life. */
int fp_trainer_create(fp_trainer **out, fp_model *m, const fp_train_config *c, const int32_t *tokens, int64_t n);
void fp_trainer_free(fp_trainer *t);

/* One optimizer step (accum micro-batches, clip, update). */
int fp_trainer_step(fp_trainer *t, fp_train_stats *st);

/* FedProx: from the next step on, mu * (theta - anchor) is added to the
 * gradient before clipping and the optimizer step (the gradient of
 * mu/2 |theta - anchor|^2). anchor (borrowed for the trainer's life) is shaped
 * like fp_model_train_params (a copy of it taken at the round start); mu 0
 * turns it off. */
int fp_trainer_set_prox(fp_trainer *t, const fp_tensor *anchor, float mu);

/* Where a step's time goes (fp bench train --profile). The trainer always
 * counts, per step: host time spent recording its command streams and
 * transfers (record_s), time from submit to completion (run_s), streams run
 * and dispatches and barriers recorded. On a context created with profiling
 * on (fp_ctx_opts.profiling) it also sums every dispatch's GPU time per
 * pipeline (entries, in first-seen order; `pipeline` points at the
 * pipeline's name, owned by the context). Totals accumulate from trainer
 * creation or the last fp_trainer_profile_reset. Same thread as the steps. */
typedef struct fp_train_prof_entry {
    const char *pipeline;
    double gpu_us;      /* summed over its dispatches */
    uint32_t dispatches;
} fp_train_prof_entry;
typedef struct fp_train_profile {
    int64_t steps;
    double wall_s;      /* fp_trainer_step's wall time */
    double record_s;    /* host: recording streams, uploads and downloads */
    double run_s;       /* submit to completion of the streams */
    double gpu_us;      /* sum of the entries (profiling contexts; else 0) */
    uint32_t runs, dispatches, barriers;
} fp_train_profile;
/* Writes the totals and up to max entries (*count: how many exist). */
int fp_trainer_profile(const fp_trainer *t, fp_train_profile *totals, fp_train_prof_entry *out, uint32_t max,
                       uint32_t *count);
void fp_trainer_profile_reset(fp_trainer *t);

/* Steps taken so far; the (batch, seq) actually planned. */
int64_t fp_trainer_steps_done(const fp_trainer *t);
void fp_trainer_shape(const fp_trainer *t, int64_t *batch, int64_t *seq);

/* Checkpoint to dir/checkpoint.fpck (atomically) and resume from it. The
 * model, configs and token count must match the ones saved (FP_ESTATE names
 * the difference). */
int fp_trainer_save(const fp_trainer *t, const char *dir);
int fp_trainer_load(fp_trainer *t, const char *dir);

/* Evaluation of the model on a token array by the same sequence rule (no
 * training): mean next-token cross-entropy over all targets, perplexity
 * exp(loss), and next-token accuracy (argmax == target). */
typedef struct fp_eval_result {
    double loss, ppl, accuracy;
    int64_t tokens;
} fp_eval_result;
int fp_model_eval_tokens(fp_model *m, const int32_t *tokens, int64_t n, int64_t seq, fp_eval_result *out);

/* Reads whitespace-separated token ids from a file (malloc'd array; free()). */
int fp_tokens_read(int32_t **out, int64_t *n, const char *path);

/* Benchmark (`fp bench train --json`): a Llama of 8 layers, hidden 512, 8 heads
 * (head_dim 64), 2 KV heads, intermediate 1408, vocab 8192, untied, sequence
 * 256, batch 1 (quick: 2 layers, sequence 128), random init and tokens; after
 * one warm-up step, 3 timed AdamW steps (quick: 2) of LoRA (rank 16, all seven
 * modules) and of full fine-tuning. Reports tokens/s, achieved model GFLOP/s
 * (the FLOP formula is in the JSON), the same run's plain matmul rate on the
 * model's main shape (tokens x intermediate x hidden) through the engine's
 * matmul and the ratio achieved / matmul, and peak device memory against
 * fp_model_plan_bytes, and a "profile" per mode (fp_trainer_profile, per
 * step: host and run time, stream runs, dispatches, barriers; with ctx
 * created with profiling on, GPU time and the 16 pipelines that took most of
 * it). *json gets a malloc'd JSON object (free()). */
int fp_bench_train(fp_ctx *ctx, int quick, char **json);


#ifdef __cplusplus
}
#endif
#endif
