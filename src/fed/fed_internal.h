/* Internal pieces shared by the federation server, client and simulator. */
#ifndef FP_FED_INTERNAL_H
#define FP_FED_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/chunk.h"
#include "fedproxy/fed.h"
#include "fedproxy/msg.h"

/* ---- link: one peer's outgoing queue and incoming chunk reassembly ----------
 * Outgoing envelopes go out in FIFO order; those above FP_FED_DIRECT_MAX bytes
 * as chunked transfers, one at a time. Sending never blocks: a frame the
 * transport cannot take now is kept and retried by the next pump. */

/* Sends one frame now: 0, FP_ETIMEOUT (queue full: retry later), other = gone. */
typedef int (*fed_send_fn)(void *ctx, const uint8_t peer[32], const void *data, size_t len);

typedef struct fed_out {
    uint8_t *buf; /* encoded envelope, owned */
    size_t len;
    fp_chunk_tx *tx; /* set once a chunked transfer has started */
} fed_out;

typedef struct fed_link {
    uint8_t peer[32];
    fed_out *q;
    size_t qhead, qn, qcap; /* live entries q[qhead .. qhead+qn) */
    uint8_t *frame;         /* scratch for chunk frames */
    size_t frame_cap, pend_len; /* pend_len > 0: frame holds a frame not yet sent */
    fp_chunk_rx *rx;
    uint64_t next_id;
    uint64_t max_total;     /* largest chunked envelope accepted */
    uint64_t bytes_sent, bytes_recv;
    uint64_t queued, popped; /* envelopes ever queued / finished or dropped: the k-th queued
                              * (k = queued after queueing it) is still waiting iff popped < k */
} fed_link;

void fed_link_init(fed_link *l, const uint8_t peer[32], uint64_t max_total);
void fed_link_free(fed_link *l);
/* Drops everything queued and any transfer in progress. */
void fed_link_reset(fed_link *l);
/* Drops everything queued to send, keeps an inbound transfer in progress (it
 * resumes, or gives way to the sender's next BEGIN). */
void fed_link_reset_out(fed_link *l);
/* Takes ownership of buf (malloc'd) in every case. */
int fed_link_queue(fed_link *l, uint8_t *buf, size_t len);
/* Sends what can go now. Returns 0, or the send error when the peer is gone
 * (the queue is then dropped). */
int fed_link_pump(fed_link *l, int64_t now_ms, fed_send_fn send, void *ctx);
/* 1 if nothing is queued. */
int fed_link_idle(const fed_link *l);
/* A chunk frame from the peer. *env (malloc'd) is set when it completed an
 * envelope. Errors are for logging only; the link stays usable. */
int fed_link_chunk_input(fed_link *l, const uint8_t *frame, size_t len, int64_t now_ms, fed_send_fn send,
                         void *ctx, uint8_t **env, size_t *env_len);

/* ---- helpers ------------------------------------------------------------- */
int64_t fed_now_ms(void);
/* Envelopes decoded and verified together (msg_batch.c): fp_msg_decode of
 * each item, the items split over agg_threads threads (FP_AGG_THREADS; by
 * bytes, one thread below 4 MiB in all), since Ed25519 verification hashes
 * the whole envelope and was the server's main cost at 100 clients x 4 MiB.
 * Each item gets exactly what fp_msg_decode(&msg, buf, len, max_payload)
 * would give: rc, msg (pointing into buf) and, when rc != 0, its message in
 * err. Items are independent; buf is only read. Returns 0, or FP_EINVAL for
 * a NULL argument. */
#define FED_DECODE_ERR_MAX 256
typedef struct fed_decode_item {
    const uint8_t *buf;
    size_t len;
    fp_msg msg;
    int rc;
    char err[FED_DECODE_ERR_MAX];
} fed_decode_item;
int fed_decode_batch(fed_decode_item *items, size_t n, uint64_t max_payload);

double fed_now_s(void);
void fed_sleep_ms(int ms);
/* Progress lines on stderr, silenced by FP_QUIET. */
void fed_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "ab12cd34" style short name of a key. */
void fed_keyname(char out[20], const uint8_t key[32]);
/* A per-process strictly increasing seq base (microseconds since the epoch). */
uint64_t fed_seq_start(void);
/* Fills a header. */
void fed_header(fp_msg_header *h, const uint8_t session[16], uint32_t round, uint8_t stage, uint16_t type,
                uint8_t kind, const uint8_t sender[32], uint64_t seq);
/* Encodes a JSON / bytes / f32 tensor envelope into a malloc'd buffer. */
int fed_encode_json(uint8_t **out, size_t *out_len, const fp_msg_header *h, const cJSON *obj,
                    const fp_identity *id);
int fed_encode_bytes(uint8_t **out, size_t *out_len, const fp_msg_header *h, const void *p, size_t n,
                     const fp_identity *id);
int fed_encode_f32(uint8_t **out, size_t *out_len, const fp_msg_header *h, const float *v, size_t n,
                   const fp_identity *id);
/* JSON helpers on checked objects. */
double fed_jnum(const cJSON *o, const char *k, double def);
/* server.json's "lora" object (server_config.c); also ROUND_START's. */
int fed_lora_config_parse(fp_lora_config *out, const cJSON *o);
/* ROUND_START's "lora" and "prox_mu" into t (client_engine.c); absent: rank 0. */
int fed_task_engine_fields(fp_fed_task *t, const cJSON *o);
/* DIR/config.json as the engine's model shape (client_engine.c); who names
 * the caller in errors. */
int fed_proxy_llama_config(fp_llama_config *out, const char *dir, const char *who);
const char *fed_jstr(const cJSON *o, const char *k, const char *def);
int fed_jbool(const cJSON *o, const char *k, int def);

/* Stage names accepted in fault specs: "config","train","advertise","share",
 * "masked","unmask" -> enum fp_msg_stage; -1 if unknown. */
int fed_stage_from_name(const char *s);

/* ChaCha20-based deterministic RNG (selection, stand-in noise). */
typedef struct fed_rng {
    uint8_t key[32];
    uint64_t counter;
} fed_rng;
void fed_rng_init(fed_rng *r, const uint8_t key[32]);
void fed_rng_seed(fed_rng *r, uint64_t seed, uint64_t stream);
uint64_t fed_rng_u64(fed_rng *r);
double fed_rng_uniform(fed_rng *r); /* [0,1) */
double fed_rng_normal(fed_rng *r);

/* Checkpoint. */
typedef struct fed_ckpt_client {
    uint8_t key[32];
    uint64_t samples;
    int32_t rank, batch, seq;
} fed_ckpt_client;

typedef struct fed_ckpt {
    uint8_t session[16];
    uint32_t completed, next_round;
    uint8_t rng_key[32];
    uint64_t rng_counter;
    uint64_t dim;
    float *global; /* malloc'd */
    float *velocity; /* malloc'd; NULL: none (a version-1 file, or written without momentum) */
    int adaptive;    /* FP_FED_SERVER_ADAM or _YOGI: m and v below are that optimizer's; 0: none */
    float *m, *v;    /* malloc'd when adaptive (format 3), else NULL */
    uint32_t n_clients;
    fed_ckpt_client *clients; /* malloc'd */
} fed_ckpt;

/* The server's step on the round's aggregate delta (server_opt.c): updates
 * global, and the optimizer's state: velocity (sgd with server_momentum > 0,
 * else NULL), m and v (adam, yogi; else NULL), all of dim floats. */
void fed_server_opt_step(const fp_fed_server_config *cfg, float *global, float *velocity, float *m, float *v,
                         const float *delta, uint64_t dim);
/* "sgd", "adam", "yogi" (fp_fed_server_opt). */
const char *fed_server_opt_name(int opt);

int fed_ckpt_write(const char *state_dir, const fed_ckpt *c);
int fed_ckpt_read(fed_ckpt *out, const char *state_dir);
void fed_ckpt_free(fed_ckpt *c);

#endif
