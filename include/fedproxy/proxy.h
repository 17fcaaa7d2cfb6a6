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

typedef struct fp_proxy_map {
    int32_t llm_layers, proxy_layers;
    fp_proxy_layer layers[FP_PROXY_MAX_LAYERS];
    double scores[FP_PROXY_MAX_LAYERS];  /* per LLM layer; 0 for uniform */
    char select[16];                     /* "influence" or "uniform" */
    unsigned char llm_fingerprint[FP_PROXY_FINGERPRINTBYTES];
    unsigned char proxy_fingerprint[FP_PROXY_FINGERPRINTBYTES];
    unsigned char server_key[FP_IDENTITY_PUBLICKEYBYTES];
} fp_proxy_map;

/* BLAKE2b-256 fingerprint of a model directory's weights (see above). */
int fp_model_fingerprint(unsigned char out[FP_PROXY_FINGERPRINTBYTES], const char *model_dir);

/* Which LLM layers to keep: the first keep_first, the last keep_last and
 * `middle` of the others — the `middle` highest-scoring ("influence", scores
 * [L] required) or an even stride ("uniform", Offsite-Tuning's) — in layer
 * order, with spans filled in. */
int fp_proxy_select(fp_proxy_map *out, const double *scores, int32_t L, int keep_first, int keep_last, int middle,
                    const char *method);

typedef struct fp_compress_opts {
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
} fp_compress_opts;
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
