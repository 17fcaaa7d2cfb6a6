/* The federation client's state (client.c). */
#ifndef FP_CLIENT_INTERNAL_H
#define FP_CLIENT_INTERNAL_H

#include "dp_internal.h"
#include "fed_internal.h"
#include "fedproxy/secagg.h"
#include "fedproxy/transport.h"

typedef struct fed_cl {
    const fp_fed_client_config *cfg;
    fp_client *net;
    fed_link link;
    uint64_t seq, last_join_seq;
    int64_t last_hello_ms;
    uint64_t hello_ord; /* link.queued right after the last HELLO was queued */
    int have_session, welcomed;
    uint8_t session[16];
    fp_msg_guard *guard; /* FOLLOW policy, the server's key only */
    /* proxy */
    uint64_t proxy_bytes;
    uint8_t proxy_sig[64];
    int have_proxy_sig, got_proxy;
    /* the round in progress */
    uint32_t round, index;
    int have_start, skip, secure;
    fp_fed_task task;
    int steps_taken; /* local steps the trainer took this round (UPDATE meta "steps") */
    size_t dim;
    const fp_aggregator *agg;
    float *update;
    float last_loss;
    fp_secagg_params sp;
    fp_secagg_member *members;
    uint32_t my_id;
    double weight;
    fp_secagg_client *sa;
    /* aggregation context (aggregator.h) rebuilt from ROUND_START; global:
     * the round's global vector (secure rounds: flexlora needs it) */
    fp_agg_opts agg_opts;
    fp_agg_ctx actx;
    /* Engine federations without a caller-given layout: the global vector's
     * LoRA layout, built from the received proxy's config.json and
     * ROUND_START's "lora" (hetlora/flexlora's client side needs the slots). */
    fp_lora_vec_layout own_lay;
    fp_lora_config own_lc;
    int have_own_lay;
    float *global;
    unsigned pass;  /* secure pass of the round in progress (0: the first, with training) */
    float *prev;    /* pass >= 1: what the server revealed of the earlier sums (dim) */
    dp_cl dp; /* this round's differential privacy (dp_client.c) */
    /* the garbage fault replays this */
    uint8_t *last_env;
    size_t last_env_len;
} fed_cl;

#endif
