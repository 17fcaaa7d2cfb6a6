/* fedproxy: FedProxy's server-side stages around the federation — compress the
 * LLM into a signed proxy (layer scoring, selection, distillation) and fuse the
 * federated proxy adapter back into the LLM, training-free.
 *
 * A proxy directory is a Hugging Face model directory (config.json,
 * model.safetensors, tokenizer.json copied from the LLM) plus proxy.json:
 *   {"version": 1,
 *    "llm": {"fingerprint": HEX64, "layers": L, "hidden": C, "vocab": V},
 *    "select": "influence" | "uniform",
 *    "scores": [L numbers: block influence per LLM layer, or [] for uniform],
 *    "layers": [{"proxy": i, "llm": j, "span": [first, last]}, ...],
 *    "distill": {"steps": N, "kd_weight": X, "temperature": T, "hidden_weight": Y, "final_loss": F},
 *    "proxy_fingerprint": HEX64,
 *    "files": {"config.json": HEX64, "tokenizer.json": HEX64 or ""},
 *    "server_key": HEX64 (Ed25519 public key),
 *    "signature": HEX128}
 * layers[i].llm is the LLM layer proxy layer i was copied from; span is the
 * inclusive range of LLM layers it stands for (itself plus the dropped layers
 * after it, up to the next kept layer). The spans partition 0..L-1.
 * The signature is Ed25519 over the canonical bytes of everything except
 * "signature" (fp_proxy_signed_bytes), and fingerprints are BLAKE2b-256 over
 * the tensors (name, dtype, shape, bytes, in sorted name order), so both
 * survive re-serialisation of JSON and cover the proxy's weights.
 *
 * Ownership: outputs are caller-owned structs; nothing here keeps state.
 * Threading: functions that take an fp_ctx use it from the calling thread only.
 */
#ifndef FEDPROXY_PROXY_H
#define FEDPROXY_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/identity.h"
#include "fedproxy/model.h"
#include "fedproxy/runtime.h"
#include "fedproxy/safetensors.h" /* FP_ST_* for fp_fuse_opts.merge_dtype */

#ifdef __cplusplus
extern "C" {
#endif

#define FP_PROXY_MAX_LAYERS 256
#define FP_PROXY_FINGERPRINTBYTES 32u

typedef struct fp_proxy_layer {
    int32_t llm;                    /* LLM layer copied into this proxy layer */
    int32_t span_first, span_last;  /* LLM layers it stands for (inclusive) */
} fp_proxy_layer;

/* What distillation did (all zero when it was skipped). */
typedef struct fp_proxy_distill_info {
    int32_t steps;
    float kd_weight, temperature, hidden_weight;
    double final_loss; /* total objective of the last step */
} fp_proxy_distill_info;

typedef struct fp_proxy_map {
    int32_t llm_layers, proxy_layers;
    int64_t llm_hidden, llm_vocab;       /* the LLM's hidden size and vocabulary (proxy.json "llm") */
    fp_proxy_layer layers[FP_PROXY_MAX_LAYERS];
    double scores[FP_PROXY_MAX_LAYERS];  /* per LLM layer; 0 for uniform */
    int has_scores;                      /* scores hold block influences (influence selection) */
    char select[16];                     /* "influence" or "uniform" */
    fp_proxy_distill_info distill;
    unsigned char llm_fingerprint[FP_PROXY_FINGERPRINTBYTES];
    unsigned char proxy_fingerprint[FP_PROXY_FINGERPRINTBYTES];
    /* BLAKE2b-256 of the proxy's config.json and tokenizer.json bytes (the
     * fingerprint covers only the weights; these make the whole directory
     * signed). has_tokenizer = 0: the directory has no tokenizer.json. */
    unsigned char config_hash[FP_PROXY_FINGERPRINTBYTES];
    unsigned char tokenizer_hash[FP_PROXY_FINGERPRINTBYTES];
    int has_tokenizer;
    unsigned char server_key[FP_IDENTITY_PUBLICKEYBYTES];
} fp_proxy_map;

/* BLAKE2b-256 fingerprint of a model directory's weights (see above): for
 * each tensor of model.safetensors (or a sharded set) in byte-wise sorted
 * name order, its name, dtype name, shape and raw bytes, each length-prefixed. */
int fp_model_fingerprint(unsigned char out[FP_PROXY_FINGERPRINTBYTES], const char *model_dir);

/* Which LLM layers to keep: the first keep_first, the last keep_last and
 * `middle` of the others — the `middle` highest-scoring ("influence", scores
 * [L] required; ties to the lower layer) or an even stride ("uniform",
 * Offsite-Tuning's uniform_choose_layers: middle layer round(i * (n-1)/(m-1))
 * for i < m, n = L - keep_first - keep_last, Python's round-half-even; m = 1
 * keeps the first middle layer) — in layer order, with spans filled in (proxy
 * layer 0's span starts at LLM layer 0, so the spans partition 0..L-1).
 * FP_EINVAL names a bad argument (a middle larger than the layers between the
 * kept ends, an unknown method, no layer kept, L above FP_PROXY_MAX_LAYERS).
 * Sets out->llm_layers, proxy_layers, layers, select, scores/has_scores. */
int fp_proxy_select(fp_proxy_map *out, const double *scores, int32_t L, int keep_first, int keep_last, int middle,
                    const char *method);

/* Block influence (ShortGPT's BI) of every layer of m on tokens: for layer l,
 * 1 - the mean over tokens of cos(h_l, h_{l+1}) between the residual entering
 * the layer and the one leaving it (fp_model_hidden), from device forwards on
 * non-overlapping windows of seq tokens (the last partial window dropped; at
 * least one full window needed: FP_EINVAL), batch windows per forward.
 * scores gets m's layer count of values. Replans m (FP_PLAN_ACTIVATIONS). */
int fp_proxy_block_influence(double *scores, fp_model *m, const int32_t *tokens, int64_t n, int64_t seq,
                             int64_t batch);

/* The proxy model for map, made from the LLM on the LLM's context: the
 * embeddings, the kept layers (proxy layer i = LLM layer map->layers[i].llm),
 * the final norm and the head copied exactly. */
int fp_proxy_build(fp_model **out, const fp_model *llm, const fp_proxy_map *map);

/* Distillation losses on host arrays (the models here are small; the logits
 * and residuals come from the device):
 * KD: T^2 * mean over the n rows of KL(softmax(teacher/T) || softmax(student/T)),
 * its gradient with respect to the student logits [n, V] into dstudent (may be
 * NULL), scaled by `scale` (the loss weight). Rows are computed in double. */
double fp_proxy_kd_loss(float *dstudent, const float *student, const float *teacher, int64_t n, int64_t V, float T,
                        float scale);
/* Normalised hidden-state MSE: sum ||s - t||^2 / sum ||t||^2 over n elements
 * (t all zero: the plain sum), gradient into ds (may be NULL) times scale. */
double fp_proxy_hidden_loss(float *ds, const float *s, const float *t, int64_t n, float scale);

typedef struct fp_compress_opts fp_compress_opts;

/* Distils student (the proxy, full fine-tuning with AdamW on a training plan)
 * from teacher (the LLM, forward only) on random windows of tokens (seeded):
 * loss = LM + kd_weight * KD_T + hidden_weight * (1/P) sum_i NMSE(proxy layer
 * i's output, the LLM's residual after layer map->layers[i].span_last).
 * Progress (step, losses, tokens/s, ETA) on stderr unless o->quiet; info
 * gets what was done. Replans both models. */
int fp_proxy_distill(fp_proxy_distill_info *info, fp_model *student, fp_model *teacher, const fp_proxy_map *map,
                     const int32_t *tokens, int64_t n, const fp_compress_opts *o);

/* The canonical bytes the signature covers (malloc'd, *len bytes, NUL-terminated):
 * "fedproxy-proxy-v1\n" then one "key=value\n" line per field of proxy.json
 * except "signature", in a fixed order, numbers printed with %.17g. */
int fp_proxy_signed_bytes(char **out, size_t *len, const fp_proxy_map *m);

/* Writes proxy_dir/proxy.json (atomically) for map, signed by server (map's
 * server_key is set from it). */
int fp_proxy_write(const char *proxy_dir, fp_proxy_map *map, const fp_identity *server);

struct fp_compress_opts {
    int keep_first, keep_last, middle; /* defaults 2, 2 and, when middle < 0, L/2 - keep_first - keep_last
                                        * (half the layers in the proxy), clamped to 0..the middle's size */
    const char *select;                /* "influence" (default) or "uniform" */
    const char *calib;                 /* calibration text (tokenised with the LLM's tokenizer.json), scored in
                                        * windows of min(seq, tokens), batch at a time; not read for uniform */
    int64_t calib_tokens;              /* at most this many (default 16384) */
    const char *distill_data;          /* public text for distillation (NULL: no distillation) */
    int distill_steps;                 /* 0: no distillation */
    float kd_weight;                   /* λ on KL(teacher ‖ proxy) (default 1) */
    float hidden_weight;               /* weight of the normalised hidden-state MSE (default 1) */
    float temperature;                 /* T (default 2) */
    float lr;                          /* distillation learning rate (default 1e-4; constant, AdamW betas
                                        * 0.9/0.999, no weight decay, gradient norm clipped to 1) */
    int64_t batch, seq;                /* distillation shape (defaults 4, 128) */
    uint64_t seed;                     /* distillation windows (random starts) */
    int json;                          /* progress as JSON lines on stderr instead of text */
    int quiet;                         /* no progress at all */
};
void fp_compress_opts_default(fp_compress_opts *o);

/* Stage 1: scores the LLM's layers on o->calib (block influence on the device),
 * selects, copies the kept layers (+ embeddings, final norm, head) into a
 * proxy, distils it when asked (fp_proxy_distill), and writes out_dir: an old
 * proxy.json is removed first, then model.safetensors (F32), config.json (the
 * LLM's with the proxy's layer count) and tokenizer.json, each atomically,
 * and last proxy.json signed by the server identity `server` — so an
 * interrupted run never leaves a directory that verifies. */
int fp_proxy_compress(fp_ctx *ctx, const char *llm_dir, const char *out_dir, const fp_compress_opts *o,
                      const fp_identity *server);

/* Reads and verifies proxy_dir/proxy.json: the key inside it must be
 * server_pk and the signature must verify (server_pk NULL: trust the key
 * inside the file — only for inspection), and the directory's weights,
 * config.json and tokenizer.json must be the signed ones. FP_ECRYPTO names
 * what does not match (key, signature, model.safetensors, config.json,
 * tokenizer.json); FP_EFORMAT a malformed file, a missing or unknown key, or
 * a layer map whose spans do not partition the LLM's layers. */
int fp_proxy_read(fp_proxy_map *out, const char *proxy_dir, const unsigned char *server_pk);

typedef struct fp_fuse_opts {
    const char *span;   /* "none" (default) or "spread" */
    float spread_scale; /* spread: each other layer of the span gets this times the delta (default 1/len(span)) */
    /* dtype of the merged LLM (merge_dir only): 0 (default) keeps every
     * tensor's dtype (a BF16 LLM stays BF16, as PEFT's merge_and_unload +
     * save_pretrained gives); FP_ST_F32, FP_ST_BF16 or FP_ST_F16 (safetensors.h)
     * writes every floating tensor, merged or not, in that dtype. */
    int merge_dtype;
} fp_fuse_opts;

/* Stage 4: checks the proxy (fp_proxy_read with server_pk) and that it was
 * made from this LLM (its fingerprint; FP_ECRYPTO "made from another LLM"),
 * reads the proxy adapter (PEFT dir; a pair for a layer the proxy lacks is
 * FP_EFORMAT) and maps its layer-i pairs onto LLM layer map(i) unchanged
 * (rank, alpha, A, B bit for bit); "spread" also puts each pair on every
 * other layer of its span with B times spread_scale. Writes either a PEFT
 * adapter for the LLM (peft_dir, each file atomically) or the merged LLM
 * (merge_dir). Exactly one of the two.
 *
 * The merged LLM: each adapted weight becomes W + sum over its pairs of
 * (alpha/r) B A, every element computed in double (sum over r in order) and
 * rounded once, to nearest even, to the output dtype (o->merge_dtype; by
 * default the weight's own); every other tensor is copied byte for byte
 * unless a forced dtype converts it. A sharded LLM (model.safetensors.index.json)
 * gives the same shard files holding the same tensors, and an index that is
 * the LLM's with metadata.total_size set to the bytes written; otherwise one
 * model.safetensors. config.json (torch_dtype set when a dtype is forced),
 * tokenizer and generation files are copied, and fedproxy_merge.json marks
 * the directory as a merge output.
 * Rounding: a BF16 weight keeps 8 significant bits, so a delta smaller than
 * about 2^-9 |W| rounds away entirely (as it does in PEFT's bf16 merges).
 * Small learning rates, low alpha/r or spread's scaled copies can lose much
 * of the adapter that way: merge with merge_dtype FP_ST_F32 (--merge-dtype
 * f32) when the fused LLM's quality matters more than its size, and compare
 * against the PEFT adapter (peft_dir) applied at runtime.
 * Atomicity: everything is written into a fresh sibling "<merge_dir>.tmp.*"
 * directory, fsynced, and renamed into place only when complete, so a
 * failure leaves no merge_dir (or the previous one intact) and no temp
 * directory. An existing merge_dir is replaced whole when it is empty or a
 * previous merge output (has fedproxy_merge.json); any other existing path,
 * and the LLM directory itself, is refused (FP_EINVAL).
 * Memory: beyond the read-only mapping of the LLM's files, the host holds at
 * most the changed (merged or converted) tensors of one output shard in
 * their output dtype, plus two rows of doubles; with an unsharded LLM that is
 * every adapted weight. */
int fp_proxy_fuse(const char *llm_dir, const char *proxy_dir, const char *adapter_dir,
                  const unsigned char server_pk[FP_IDENTITY_PUBLICKEYBYTES], const fp_fuse_opts *o,
                  const char *merge_dir, const char *peft_dir);

#ifdef __cplusplus
}
#endif
#endif
