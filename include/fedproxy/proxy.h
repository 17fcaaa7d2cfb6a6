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
    int keep_first, keep_last, middle; /* defaults 2, 2, and L/2 - 4 when < 0 */
    const char *select;                /* "influence" (default) or "uniform" */
    const char *calib;                 /* calibration text (tokenised with the LLM's tokenizer.json) */
    int64_t calib_tokens;              /* at most this many (default 16384) */
    const char *distill_data;          /* public text for distillation (NULL: no distillation) */
    int distill_steps;                 /* 0: no distillation */
    float kd_weight;                   /* λ on KL(teacher ‖ proxy) (default 1) */
    float hidden_weight;               /* weight of the normalised hidden-state MSE (default 1) */
    float temperature;                 /* T (default 2) */
    float lr;                          /* distillation learning rate (default 1e-4) */
    int64_t batch, seq;                /* distillation shape (defaults 4, 128) */
    uint64_t seed;
    int json;                          /* progress as JSON lines on stderr instead of text */
    int quiet;
};
void fp_compress_opts_default(fp_compress_opts *o);

/* Stage 1: scores the LLM's layers on o->calib (block influence on the device),
 * selects, copies the kept layers (+ embeddings, final norm, head) into a
 * proxy, distils it when asked, and writes out_dir (atomically per file) with
 * proxy.json signed by the server identity `server`. */
int fp_proxy_compress(fp_ctx *ctx, const char *llm_dir, const char *out_dir, const fp_compress_opts *o,
                      const fp_identity *server);

/* Reads and verifies out_dir/proxy.json: the signature against server_pk
 * (NULL: trust the key inside the file — only for inspection), the proxy
 * weights against proxy_fingerprint. FP_ECRYPTO names what does not match. */
int fp_proxy_read(fp_proxy_map *out, const char *proxy_dir, const unsigned char *server_pk);

typedef struct fp_fuse_opts {
    const char *span;   /* "none" (default) or "spread" */
    float spread_scale; /* spread: each other layer of the span gets this times the delta (default 1/len(span)) */
} fp_fuse_opts;

/* Stage 4: checks the proxy against the LLM (fingerprint and signature by
 * server_pk), maps the proxy adapter's layer i onto LLM layer map(i) (and the
 * span with "spread"), and writes either the merged LLM (merge_dir != NULL:
 * config.json, model.safetensors, tokenizer.json) or a PEFT adapter for the LLM
 * (peft_dir != NULL). Exactly one of the two. */
int fp_proxy_fuse(const char *llm_dir, const char *proxy_dir, const char *adapter_dir,
                  const unsigned char server_pk[FP_IDENTITY_PUBLICKEYBYTES], const fp_fuse_opts *o,
                  const char *merge_dir, const char *peft_dir);

#ifdef __cplusplus
}
#endif
#endif
