/* The federation server's state, shared by server.c (network, dispatch,
 * registration) and server_round.c (the round driver). */
#ifndef FP_SERVER_INTERNAL_H
#define FP_SERVER_INTERNAL_H

#include <stdatomic.h>

#include "fed_internal.h"
#include "fedproxy/lora_vec.h"
#include "fedproxy/secagg.h"
#include "fedproxy/transport.h"

typedef struct srv_client {
    uint8_t key[32];
    char name[FP_FED_NAME_MAX + 1];
    uint32_t id; /* allow-list index: also the SecAgg id */
    int registered, active, proxy_sent;
    uint64_t proxy_ord; /* link.queued right after the proxy was queued (fed_link's counters) */
    int said_bye; /* the client sent BYE (at the end: acknowledged ours) */
    uint64_t samples;
    fp_fed_device dev;
    int rank, batch, seq;
    fed_link link;
    /* this round */
    int selected, got_meta, got_update, in_sum;
    uint8_t *upd_buf; /* envelope holding the update (owned) */
    const float *update;
    double loss;
    uint64_t rsamples;
    int rsteps; /* local steps it reported (0: not said) */
    size_t npend; /* its items in the server's pending queue (server.c) */
} srv_client;

struct fp_fed_server {
    fp_fed_server_config cfg;
    fp_identity id;
    fp_allowlist *allow;
    fp_server *net;
    srv_client *cl;
    size_t ncl;
    fp_msg_guard *join_guard, *guard;
    uint8_t session[16];
    uint32_t completed, next_round;
    uint32_t round;
    uint8_t stage;
    uint8_t rng_key[32];
    float *global;
    float *velocity; /* server_momentum > 0: FedAvgM's v, dim floats (else NULL) */
    float *opt_m, *opt_v; /* server_optimizer adam/yogi: their m and v, dim floats each (else NULL) */
    uint64_t seq;
    uint64_t max_payload;
    const fp_aggregator *agg;
    uint8_t *proxy;
    size_t proxy_len;
    uint8_t proxy_sig[FP_IDENTITY_SIGBYTES];
    fp_fed_server_stats st;
    atomic_int stop;
    fp_fed_report_fn report;
    void *report_ctx;
    fp_secagg_server *sa; /* this round's, when secure */
    uint64_t round_rejected;
    fp_lora_vec_layout lay; /* engine federations (cfg.lora.rank > 0) */
    /* aggregation: the LoRA layout of the vector (NULL: a plain vector, e.g.
     * the stand-in's; owned by whoever sets it up), and the updates refused
     * this round ("name: why", ';'-separated) */
    const fp_lora_vec_layout *agg_layout;
    char round_refused[1024];
    struct dp_srv *dp; /* differential privacy (dp_server.c); NULL when off */
    /* what srv_pump received and has not handled yet: items [pend_head,
     * npend) in arrival order, each owning its buffer; pend_cl[i] is the
     * client's index, pend_frame[i] says whether it is a chunk frame still to
     * be taken in (one that came after an envelope of its client's still
     * queued, so that each client's frames and envelopes keep their order),
     * else a whole envelope. Envelopes before pend_decoded are decoded
     * (fed_decode_batch: signatures checked on worker threads). */
    fed_decode_item *pend;
    size_t *pend_cl;
    uint8_t *pend_frame;
    size_t npend, cap_pend, pend_head, pend_decoded;
    uint64_t pend_bytes;
};

/* server.c */
int srv_queue(fp_fed_server *s, srv_client *c, uint8_t *buf, size_t len);
int srv_send_json(fp_fed_server *s, srv_client *c, uint32_t round, uint8_t stage, uint16_t type,
                  const cJSON *obj);
/* Processes network input and output until deadline_ms or done(s) != 0. */
void srv_pump(fp_fed_server *s, int64_t deadline_ms, int (*done)(fp_fed_server *s));
size_t srv_count_active(const fp_fed_server *s);
int srv_write_checkpoint(fp_fed_server *s);
int srv_write_attempt(fp_fed_server *s, uint32_t round);

/* server_engine.c: the LoRA layout, the proxy bundle, the initial adapter,
 * rank caps, ROUND_START fields and the adapter written after every round. */
int srv_engine_init(fp_fed_server *s);     /* after cfg is copied: layout, dim, proxy bundle (signed) */
int srv_engine_init_global(fp_fed_server *s); /* fresh sessions: the initial adapter */
void srv_engine_cap_rank(const fp_fed_server *s, int *rank);
void srv_engine_start_fields(const fp_fed_server *s, cJSON *o);
void srv_engine_round_done(fp_fed_server *s); /* writes adapter_out (warns on failure) */
/* Appends "name: why" to this round's refused-update list. */
void srv_refused(fp_fed_server *s, const char *name, const char *why);

/* server_round.c */
int srv_run_round(fp_fed_server *s, fp_fed_round_report *rep);

#endif
