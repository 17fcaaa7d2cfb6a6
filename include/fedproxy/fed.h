/* fedproxy: federation rounds — the server and client state machines over the
 * network (transport.h, chunk.h, msg.h, secagg.h), the pluggable trainer and
 * aggregator interfaces, the in-process simulator and the federation benchmark.
 *
 * Protocol (every message is a signed fp_msg envelope; envelopes larger than
 * FP_FED_DIRECT_MAX bytes travel as chunked transfers, chunk.h):
 *   JOIN   (round 0)  C->S HELLO   {"name","samples","device":{...}}
 *                     S->C WELCOME {"session","name","id","rank","batch","seq","why",
 *                                   "dim","proxy_bytes","proxy_sig"}
 *                     S->C MODEL   BYTES: the proxy file, once per client and session
 *                                  (its Ed25519 signature by the server is proxy_sig;
 *                                  the client verifies before using it)
 *   CONFIG (round r)  S->C ROUND_START {"round","index","steps","lr","rank","batch","seq",
 *                                   "aggregator","agg_seed","ties_keep","dare_p",
 *                                   "secagg", and with secagg: "members":[{"id","key",
 *                                   "weight"}],"threshold","degree","graph_seed","clip",
 *                                   "scale_bits","vec_len"}
 *                     S->C MODEL   TENSOR f32 [dim]: the global adapter vector
 *   TRAIN  (plain)    C->S UPDATE  JSON {"samples","loss","steps"}, then UPDATE TENSOR f32 [dim]
 *   ADVERTISE..UNMASK (secure)  C->S UPDATE JSON (stage ADVERTISE), SA_ADVERTISE,
 *                     SA_SHARE_KEYS, SA_MASKED, SA_UNMASK (BYTES: secagg.h messages);
 *                     S->C SA_BROADCAST (stage = the stage it opens: KEYS, RELAY,
 *                     UNMASK_REQ)
 *   PASS (secure, aggregators of several secure sums, e.g. ties): under a new wire
 *                     round, S->C ROUND_START with "pass": p >= 1 (members: the earlier
 *                     passes' survivors) and MODEL TENSOR f32 [dim]: what the aggregator
 *                     reveals of the earlier sums (fp_agg_broadcast; ties: the elected
 *                     signs); then ADVERTISE..UNMASK again (no UPDATE meta, no training)
 *   DONE              S->C ROUND_END {"round","index","status","included","loss"}
 *   end of session    S->C BYE
 * Wire round numbers ("round") increase with every attempt and are never reused,
 * also across a resumed server; "index" counts completed rounds (a retried round
 * keeps its index). The client answers a silent server with HELLO every
 * idle_hello_ms, which is how a restarted server learns its clients again; it
 * keeps its transfers in flight meanwhile (a pause is not a restart) and drops
 * what it was sending only after give_up_ms / 4 of silence.
 *
 * FedAvg weights: each client's weight is the sample count it declared at
 * registration. With secure aggregation, client k sends the ring vector
 * [w_k * clip(u_k), w_k * clip] (w_k = samples_k / max samples among the
 * selected, so |entries| <= clip) and the server divides the secure sum's
 * first dim entries by its last one / clip.
 *
 * Ownership: each create has its destroy; strings returned in *out are
 * malloc'd (caller frees). Threading: one server or client object per thread;
 * fp_fed_server_stop may be called from any thread. Reports are delivered on
 * the server's thread. Inside, the server starts short-lived worker threads of
 * its own (FP_AGG_THREADS caps them): for the aggregators, and to check the
 * signatures of the envelopes received in one batch; every message is still
 * handled on the server's thread, each client's in the order it sent them.
 */
#ifndef FEDPROXY_FED_H
#define FEDPROXY_FED_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/aggregator.h"
#include "fedproxy/dp.h"
#include "fedproxy/identity.h"
#include "fedproxy/model.h"
#include "fedproxy/recommend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_FED_PATH_MAX 512u
#define FP_FED_NAME_MAX 64u
#define FP_FED_DIRECT_MAX ((size_t)1 << 20) /* larger envelopes go chunked */
#define FP_FED_MAX_DIM ((uint64_t)1 << 28)
#define FP_FED_MAX_OVERRIDES 64u

/* ---- trainer interface ---------------------------------------------------- */

typedef struct fp_fed_task {
    uint32_t round; /* wire round */
    uint32_t index; /* completed-round index: seeds anything that must not change on a retry */
    int steps;      /* local steps E */
    float lr;
    int rank, batch, seq; /* assignment from registration */
    /* Engine federations (the server has a "lora" layout): the global vector's
     * layout, lora.rank = R, the server's rank (0: a plain vector, stand-in);
     * rank above is this client's r <= R. prox_mu: FedProx mu (0: off). */
    fp_lora_config lora;
    float prox_mu;
} fp_fed_task;

/* A local trainer. train: given the global vector global[0..dim), writes the
 * update (new local weights minus global) into update[0..dim), the number of
 * samples it used and the loss of the global weights on its data (before
 * training: that is the federated evaluation). Returns 0 or FP_E*.
 * last_steps (may be NULL: every round takes task->steps): the local steps the
 * last successful train call actually took, 1..task->steps. A client whose
 * device budget ends its round early takes fewer; the UPDATE meta "steps"
 * carries it, and fednova normalises by it (fedavg would let the clients that
 * took more steps dominate). */
typedef struct fp_fed_trainer {
    void *ctx;
    int (*train)(void *ctx, float *update, uint64_t *samples, float *loss, const float *global,
                 size_t dim, const fp_fed_task *task);
    void (*destroy)(void *ctx); /* may be NULL */
    int (*last_steps)(void *ctx);
} fp_fed_trainer;

/* The stand-in trainer. Its data file (`fp join --data FILE`) is JSON:
 *   {"samples": 120, "target": [0.5, -1.0, ...]}                  explicit target, or
 *   {"samples": 120, "dim": 1000000, "target_seed": 7, "target_scale": 0.5}
 * plus optional "noise" (standard deviation added per step, default 0) and
 * "seed" (noise seed, default 1), and "max_steps" (the most local steps this
 * client's budget allows per round, default 0: no cap; a round takes
 * min(steps, max_steps), reported through last_steps). Each step moves the local weights w toward
 * the client's private target: w += lr * (target - w) + noise; the update is
 * w - global and the loss 0.5 * mean((global - target)^2). With noise 0,
 * FedAvg converges to the sample-weighted mean of the targets (with lr = 1 and
 * E = 1 it reaches it after one round), which tests assert. */
typedef struct fp_standin_data {
    uint64_t samples;
    size_t dim;
    float *target; /* dim floats, malloc'd */
    float noise;
    uint64_t seed;
    int max_steps; /* 0: no cap */
} fp_standin_data;

int fp_standin_data_load(fp_standin_data *out, const char *path);
int fp_standin_data_parse(fp_standin_data *out, const char *json, size_t len, const char *what);
/* The target a generated data file describes (deterministic in seed). */
int fp_standin_target_gen(float *out, size_t dim, uint64_t target_seed, float target_scale);
void fp_standin_data_free(fp_standin_data *d);
/* A trainer owning a copy of d (d stays the caller's). */
int fp_standin_trainer(fp_fed_trainer *out, const fp_standin_data *d);
/* One client's update as the stand-in computes it (for tests' direct computation). */
void fp_standin_update(float *update, const float *global, const float *target, size_t dim, int steps,
                       float lr, float noise, uint64_t seed, uint32_t index);

/* The engine trainer (trainer_engine.c): LoRA fine-tuning of the proxy on the
 * device. The proxy directory is loaded at the first round (it arrives, signed,
 * after registration), on its own fp_ctx (device, profile overlay). The global
 * vector is the engine's packed LoRA vector at the server's rank R
 * (lora_vec.h); a client of rank r < R trains a rank-r adapter (its alpha is
 * alpha * r / R, so the scale is alpha / R for everyone) made of the first r
 * components, and its update is zero beyond r (HetLoRA zero padding). Each
 * round: the loss of the global adapter on the eval data (or the training data)
 * is the federated evaluation; then task->steps AdamW steps (fresh optimizer
 * state, data RNG and starting position derived from task->index, so a retried
 * round repeats exactly), batch and seq from the assignment (the batch capped
 * so that one step reads the data at most once), with the FedProx
 * term mu/2 |theta - theta_global|^2 when task->prox_mu > 0. Samples = target
 * tokens trained this round. max_steps > 0 is the client's budget: a round
 * takes min(task->steps, max_steps) steps (last_steps reports it).
 * Data files: text (tokenised with the proxy's tokenizer.json), or token ids
 * (a file of decimal integers separated by whitespace). The federated
 * evaluation uses at most FP_ENGINE_EVAL_MAX tokens (the file's first). */
#define FP_ENGINE_EVAL_MAX 16384
typedef struct fp_engine_trainer_opts {
    const char *proxy_dir; /* where the client unpacks the proxy (fp_fed_client_config.proxy_out) */
    const char *data;      /* training data file */
    const char *eval;      /* held-out data for the federated evaluation (NULL: data) */
    const char *device;    /* fp_ctx device (NULL: $FP_DEVICE or the best) */
    const char *profile;   /* overlay (NULL: $FP_PROFILE; "" none) */
    int verbose;           /* per-round line on stderr */
    int max_steps;         /* local steps this device's budget allows per round (0: the server's) */
} fp_engine_trainer_opts;
int fp_engine_trainer(fp_fed_trainer *out, const fp_engine_trainer_opts *o);
/* The size a client declares at registration (its FedAvg weight), before the
 * proxy's tokenizer is known: a token-id file's token count, or a text
 * file's byte count. */
int fp_engine_data_samples(uint64_t *samples, const char *path);

/* Proxy bundle: the proxy directory as one signed payload.
 *   "FPBUNDL1" | u32 n (1..260) | n x { u16 name_len (1..64) | name |
 *   u64 size | BLAKE2b-256(content) } | the n contents back to back
 * (little-endian). Names are plain file names ([A-Za-z0-9_-][A-Za-z0-9._-]*,
 * no '/', none twice); the total length must be exact. pack takes config.json,
 * the weights — model.safetensors, or for a sharded proxy
 * model.safetensors.index.json and every shard its weight_map names (at most
 * 256, each a plain file name as above, else FP_EFORMAT; a missing one is
 * FP_ENOTFOUND) — and, when present, tokenizer.json and proxy.json, all
 * verbatim. unpack checks everything (names, sizes, hashes, and that an index
 * names only safe shard names the bundle carries) before writing any file,
 * then writes each one atomically into dir (created); a bundle without an
 * index removes a stale one from dir, which would shadow model.safetensors. */
int fp_fed_bundle_pack(uint8_t **out, size_t *len, const char *dir);
int fp_fed_bundle_is(const uint8_t *data, size_t len);
int fp_fed_bundle_unpack(const uint8_t *data, size_t len, const char *dir);

/* ---- aggregators: fedproxy/aggregator.h (fp_aggregator, fp_agg_*) ---- */

/* FedProxy's default aggregator: a server.json with "lora" (an engine
 * federation of the proxy) and no "aggregator" uses it. Chosen on the valid
 * split of the non-IID benchmark (scripts/aggregators.py --size tiny, 3
 * rounds, clients of mixed ranks and step budgets): ties had the lowest mean
 * valid perplexity of the secure-capable aggregators, 0.19% below fedavg and
 * lower on 3 of 4 clients. ties cannot run under DP (two secure passes), so
 * with "dp" the default is fedavg. A plain vector (no "lora") keeps fedavg. */
#define FP_FED_FEDPROXY_AGGREGATOR "ties"

/* ---- server -------------------------------------------------------------- */

typedef struct fp_fed_override {
    char name[FP_FED_NAME_MAX]; /* client name from clients.json, or its key in hex */
    int rank, batch, seq;       /* 0 = keep the recommendation */
} fp_fed_override;

/* The server's optimizer over the rounds' aggregates (server.json
 * "server_optimizer"), FedOpt of Reddi et al. 2021, "Adaptive Federated
 * Optimization". Delta is the round's aggregate (the aggregator's output, after
 * secure aggregation and DP noise, so every aggregator and DP mode works with
 * every optimizer; all of them are post-processing: DP guarantees are unchanged).
 *   SGD  (default): global += server_lr * Delta (FedAvg at server_lr 1), or
 *        FedAvgM with "server_momentum".
 *   ADAM: m = b1 m + (1 - b1) Delta;  v = b2 v + (1 - b2) Delta^2;
 *        global += server_lr * m / (sqrt(v) + tau), per coordinate.
 *   YOGI: as ADAM but v = v - (1 - b2) Delta^2 sign(v - Delta^2) (v grows
 *        additively, so one large round does not inflate it the way Adam's
 *        average does, and it shrinks slower).
 * No bias correction, as in Reddi et al. (Algorithm 2), so their tuned
 * server_lr, beta and tau apply as they are, and the state is m and v alone
 * (no round count to keep beside them). m and v start at zero (the paper
 * allows v >= tau^2; tau > 0 keeps the denominator positive either way). With
 * the default betas the first round's step is about server_lr * sign(Delta)
 * per coordinate where |Delta| >> tau ((1 - b1) / sqrt(1 - b2) = 1, the same
 * as a corrected step); for a steady Delta the uncorrected step then grows to
 * about 2x by round 8..20 and returns to 1x over a few hundred rounds: a mild
 * warm-up, not a blow-up. server_lr is thus a per-coordinate step size and
 * wants values near one round's per-coordinate change (the paper's best are
 * about 10^-2..10^-0.5), not FedAvg's 1. Coordinates whose sqrt(v) is well
 * below tau step like SGD with momentum, at a rate of about server_lr / tau.
 * m and v are kept in the round checkpoint and continue after --resume; a
 * checkpoint written under another optimizer (or before format 3) starts them
 * at zero, with a message. */
enum fp_fed_server_opt { FP_FED_SERVER_SGD = 0, FP_FED_SERVER_ADAM = 1, FP_FED_SERVER_YOGI = 2 };

typedef struct fp_fed_server_config {
    char endpoint[FP_FED_PATH_MAX];  /* "tcp://127.0.0.1:0": any free port */
    char keys_dir[FP_FED_PATH_MAX];  /* server identity (fp keygen) */
    char clients[FP_FED_PATH_MAX];   /* clients.json allow-list */
    char state_dir[FP_FED_PATH_MAX]; /* checkpoint.bin lives here */
    char proxy[FP_FED_PATH_MAX];     /* file sent once, signed ("" = none) */
    char proxy_dir[FP_FED_PATH_MAX]; /* proxy directory, sent once as a signed bundle ("" = none) */
    char adapter_out[FP_FED_PATH_MAX]; /* global adapter as a PEFT dir after every round ("" = none) */
    fp_lora_config lora;             /* layout of the global vector (rank 0: plain vector of dim) */
    float prox_mu;                   /* FedProx mu for the clients (0: off) */
    float server_lr;                 /* global += server_lr * aggregate: the server's SGD step of FedOpt
                                      * (1: FedAvg; > 1 extrapolates the clients' mean step, which speeds
                                      * up rounds whose updates are small and agree; post-processing, so
                                      * DP guarantees are unchanged) */
    float server_momentum;           /* FedAvgM (Hsu et al. 2019): v = m * v + aggregate, global +=
                                      * server_lr * v; 0 (default): none, v = aggregate. v is kept in
                                      * the round checkpoint, so a resumed server continues it. Also
                                      * post-processing of the aggregate: DP is unchanged */
    int server_optimizer;            /* enum fp_fed_server_opt: the server's step on the aggregate */
    float server_beta1, server_beta2; /* FedAdam/FedYogi decay rates of m and v (0.9, 0.99) */
    float server_tau;                /* FedAdam/FedYogi adaptivity epsilon tau (1e-3) */
    char aggregator[32];             /* "fedavg"; FedProxy federations ("lora"): see below */
    fp_agg_opts agg_opts;            /* "aggregator_options" (aggregator.h) */
    uint32_t rounds;                 /* completed rounds to run */
    uint32_t min_clients;            /* to start a round; and selection minimum */
    double fraction;                 /* of available clients selected per round */
    uint32_t quorum;                 /* updates needed for a round to count */
    uint32_t max_attempts;           /* rounds tried in all (retries included) */
    int stage_timeout_ms;            /* straggler deadline per stage */
    int register_timeout_ms;         /* waiting for min_clients before a round */
    int steps;                       /* local steps E */
    float lr;
    uint64_t dim;                    /* global vector length */
    uint64_t init_seed;              /* 0: zeros; else uniform(-init_scale, init_scale) */
    float init_scale;
    uint64_t seed;                   /* selection RNG (0: random, recorded in the checkpoint) */
    int secagg;                      /* secure aggregation on */
    uint32_t threshold;              /* SecAgg t (0: auto, (k+1)/2 + 1) */
    uint32_t degree;                 /* SecAgg k (0: auto: full up to 16 clients, else 2*ceil(log2 n)) */
    float clip;                      /* SecAgg ring clip */
    unsigned scale_bits;             /* 0: the largest that cannot overflow */
    fp_model_shape model;            /* for fp_recommend_train ("bench" by default; with "lora": the proxy's) */
    fp_dp_config dp;                 /* differential privacy (dp.h); mode FP_DP_OFF: none */
    uint32_t n_overrides;
    fp_fed_override overrides[FP_FED_MAX_OVERRIDES];
} fp_fed_server_config;

/* Defaults: endpoint tcp://127.0.0.1:0, fedavg, 3 rounds, min_clients 2,
 * fraction 1, quorum 2, max_attempts 3*rounds, 10 s stages, 30 s registration,
 * 1 step, lr 1, server_lr 1, server optimizer sgd (beta1 0.9, beta2 0.99,
 * tau 1e-3 for adam/yogi), dim 16, clip 1, model bench. */
void fp_fed_server_config_default(fp_fed_server_config *c);

/* server.json: an object with the fields above by name (all optional but
 * "keys" and "clients"): "endpoint","keys","clients","state_dir","proxy",
 * "aggregator","rounds","min_clients","fraction","quorum","max_attempts",
 * "stage_timeout_ms","register_timeout_ms","steps","lr","dim","init_seed",
 * "init_scale","seed","secagg","threshold","degree","clip","scale_bits",
 * "overrides":{"<name or key hex>":{"rank":8,"batch":2,"seq":128}},
 * "proxy_dir", "adapter_out", "prox_mu", "server_lr" (in (0, 100]), "server_momentum" (in [0, 1)),
 * "server_optimizer" ("sgd" (default), "adam", "yogi"; fp_fed_server_opt),
 * "server_beta1" (in [0, 1), default 0.9), "server_beta2" (in [0, 1), default
 * 0.99), "server_tau" (finite, > 0, default 1e-3); the last three only with
 * adam or yogi, and "server_momentum" > 0 only with sgd, "lora":{"rank":R,"alpha":A,
 * "targets":"all"|"q,v,...","layers":"0,1,6,7"} (layers optional: all).
 * With "lora", "proxy_dir" is required and dim is the layout's (a "dim" that
 * disagrees is FP_EFORMAT); the initial global vector is fp_lora_vec_init
 * (init_seed, 1 when 0); each client's rank is min(recommended or
 * overridden rank, R).
 * "dp":{"clip":C,"noise_multiplier":z,"delta":1e-5,"mode":"distributed"|"central"}
 * (dp.h; needs a one-pass sum aggregator such as fedavg),
 * "aggregator_options":{...} (fp_agg_opts_parse).
 * Relative paths are relative to the file's directory. Strict: unknown keys
 * are FP_EFORMAT. */
int fp_fed_server_config_load(fp_fed_server_config *out, const char *path);
int fp_fed_server_config_parse(fp_fed_server_config *out, const char *json, size_t len, const char *base_dir);

/* What happened in one round attempt. */
typedef struct fp_fed_round_report {
    uint32_t round, index;
    int status;                 /* 0 ok, FP_EABORT: too few survivors (retried) */
    uint32_t selected, included;
    char joined[1024];          /* names, comma-separated */
    char dropped[1024];
    uint64_t bytes_sent, bytes_recv; /* this attempt, all clients */
    double stage_ms[8];         /* per enum fp_msg_stage */
    double total_ms;
    double loss;                /* sample-weighted loss reported by included clients (NaN if none) */
    uint64_t rejected;          /* messages refused this attempt */
    char refused[1024];         /* updates refused (bad shape, non-finite, norm outlier): "name: why",
                                   ';'-separated */
    /* differential privacy (dp_on = 0: off): the sampling rate and noise
     * multiplier this round achieved, epsilon of this round alone and of all
     * completed rounds so far, at dp_delta */
    int dp_on;
    double dp_q, dp_z, dp_round_epsilon, dp_epsilon, dp_delta;
} fp_fed_round_report;

/* One JSON object (no newline), malloc'd. */
int fp_fed_round_report_json(char **out, const fp_fed_round_report *r);

typedef void (*fp_fed_report_fn)(void *ctx, const fp_fed_round_report *r);

typedef struct fp_fed_server_stats {
    uint64_t registered;    /* HELLOs accepted */
    uint64_t rejected;      /* envelopes refused, any reason */
    uint64_t rej_forged, rej_unknown, rej_session, rej_round, rej_stage, rej_replay, rej_malformed;
    uint64_t rounds_ok, rounds_failed;
    uint64_t zap_refused;
} fp_fed_server_stats;

typedef struct fp_fed_server fp_fed_server;

/* Binds, loads the allow-list and (with resume) the checkpoint in
 * state_dir: the session id, global vector, round counters and RNG state
 * continue; FP_ENOTFOUND if resume is set and there is none. id is copied. */
int fp_fed_server_create(fp_fed_server **out, const fp_fed_server_config *cfg, const fp_identity *id,
                         int resume);
void fp_fed_server_destroy(fp_fed_server *s);
int fp_fed_server_endpoint(const fp_fed_server *s, char *out, size_t cap);
void fp_fed_server_set_report(fp_fed_server *s, fp_fed_report_fn fn, void *ctx);
/* Runs rounds until cfg.rounds are complete (0), max_attempts are spent
 * (FP_EABORT), or stop was requested (FP_EABORT). Says BYE to the clients at the end. */
int fp_fed_server_run(fp_fed_server *s);
void fp_fed_server_stop(fp_fed_server *s); /* any thread */
/* The current global vector (dim floats) and completed rounds. */
int fp_fed_server_global(const fp_fed_server *s, float *out, size_t dim, uint32_t *completed);
void fp_fed_server_get_stats(const fp_fed_server *s, fp_fed_server_stats *out);
/* The global vector's length (with "lora": the layout's, derived at create). */
size_t fp_fed_server_dim(const fp_fed_server *s);

/* The checkpoint file (state_dir/checkpoint.bin), read back: for tests/tools. */
int fp_fed_checkpoint_read(float **global, size_t *dim, uint32_t *completed, uint32_t *next_round,
                           const char *state_dir);

/* ---- client -------------------------------------------------------------- */

/* Injected faults (fp sim, tests). Stages are enum fp_msg_stage values. */
typedef struct fp_fed_fault {
    int drop_stage; /* 0 none; FP_STAGE_CONFIG..FP_STAGE_UNMASK: stop answering there */
    int drop_index; /* completed-round index it applies to; -1 every round */
    int crash;      /* 1: at the drop point leave for good (no BYE) instead of skipping a round */
    int slow_ms;    /* sleep before every upload */
    int garbage;    /* each round: random frames, a truncated envelope, a replay, a forged sender */
} fp_fed_fault;

/* A client's device as sent at registration. */
typedef struct fp_fed_device {
    char name[FP_FED_NAME_MAX];
    char type[16];   /* "cpu", "integrated", "discrete", ... */
    char overlay[64];
    int uma;
    uint64_t mem_bytes;
    double gflops;   /* measured f32 matmul (0: unknown) */
} fp_fed_device;

/* From a runtime profile (+ measurements, may be NULL), or the host CPU with an
 * optional overlay name ("" none) capping its memory. */
int fp_fed_device_from_profile(fp_fed_device *out, const fp_profile *p, const fp_measured *m);
int fp_fed_device_cpu(fp_fed_device *out, const char *overlay);

typedef struct fp_fed_client_config {
    char endpoint[FP_FED_PATH_MAX];
    uint8_t server_pk[FP_IDENTITY_PUBLICKEYBYTES];
    const fp_identity *id; /* borrowed */
    char name[FP_FED_NAME_MAX];
    uint64_t samples;      /* declared data size */
    fp_fed_trainer trainer;    /* borrowed */
    fp_fed_device device;
    fp_fed_fault fault;
    int idle_hello_ms;     /* re-HELLO after this much silence (default 1000) */
    int give_up_ms;        /* exit with FP_ETIMEOUT after this much silence (default 60000) */
    char proxy_out[FP_FED_PATH_MAX]; /* where to save the verified proxy ("" keep in memory); a
                                      * bundle (proxy_dir on the server) is unpacked into this directory */
    const volatile int *stop; /* optional: nonzero stops the client */
    const fp_lora_vec_layout *layout; /* the vector's LoRA layout (borrowed; NULL: a plain vector) */
    /* The client's own floor on differential privacy (0: none; it follows the
     * server's "dp", or trains without). With dp_min_noise > 0 the client only
     * trains in rounds with distributed DP (it adds noise itself; central mode's
     * noise is the server's word, which a client cannot check) whose noise
     * multiplier for its own share, sigma / clip from ROUND_START, is at least
     * dp_min_noise: what protects its update even if every other party colludes
     * with the server. (In an unweighted secure round of n members the round's
     * multiplier is sqrt(n) times that.) Otherwise it refuses before training:
     * fp_fed_client_run returns FP_EPOLICY with a message naming both values,
     * and no update of it leaves the machine. */
    double dp_min_noise;
} fp_fed_client_config;

void fp_fed_client_config_default(fp_fed_client_config *c);

typedef struct fp_fed_client_result {
    uint32_t rounds;     /* ROUND_ENDs seen with status ok where we were included */
    uint32_t last_index;
    uint64_t bytes_sent, bytes_recv;
    int got_proxy;       /* proxy received and its signature verified */
    float last_loss;
    int rank, batch, seq; /* assignment */
} fp_fed_client_result;

/* Runs until the server says BYE (0), the fault says crash (FP_EABORT),
 * silence for give_up_ms (FP_ETIMEOUT) or stop. */
int fp_fed_client_run(const fp_fed_client_config *cfg, fp_fed_client_result *res);

/* ---- simulation and benchmark --------------------------------------------- */

/* sim.json:
 *  { "server": { ...server.json fields, without "keys"/"clients"/"endpoint"... },
 *    "clients": [ { "name": "c0", "samples": 100, "profile": "mali-like",
 *                   "data": "c0.json" | "target_seed": 3, "target_scale": 1.0,
 *                   (engine federations, "lora" in "server": "data": "train.txt",
 *                    "eval": "heldout.txt": text or token ids, fed.h's engine trainer;
 *                    each client thread has its own fp_ctx with its profile overlay
 *                    and unpacks the proxy into state_dir/<name>-proxy)
 *                   "noise": 0.0, "max_steps": 0 (the device's budget: at most this
 *                   many local steps per round, reported to the server; 0 none),
 *                   "fault": { "drop": "masked", "round": 1, "crash": false,
 *                              "slow_ms": 0, "garbage": false } } ... ],
 *    "count": 0,
 *    "fedproxy": { "llm": DIR, "calib": FILE, "out": DIR (default state_dir/fedproxy),
 *                  "keep_first", "keep_last", "middle", "select", "distill_data",
 *                  "distill_steps", "kd_weight", "temperature", "lr", "batch", "seq"
 *                  (fp compress's options), "span": "none"|"spread", "eval_seq": 64 } }
 * With "fedproxy" the whole pipeline runs: the LLM is compressed into
 * out/proxy (signed by the sim's server identity; it becomes the server's
 * proxy_dir), the clients fine-tune it (engine clients: "lora" in "server"),
 * the global adapter (out/adapter) is fused into the LLM (out/fused, merged)
 * and every client's eval (else data) file is evaluated (fp_fed_sim_eval).
 * With "count" N > 0 and a single clients entry, that entry is a template
 * for N clients c0..c{N-1} (target_seed + i). Identities are generated in
 * memory; the server binds tcp://127.0.0.1:0; state goes to "state_dir"
 * (default: a fresh temporary directory). */
typedef struct fp_fed_sim_client {
    char name[FP_FED_NAME_MAX];
    int rc;              /* fp_fed_client_run's */
    fp_fed_client_result res;
} fp_fed_sim_client;

/* FedProxy runs ("fedproxy" in sim.json): held-out evaluation per client of
 * the LLM zero-shot, the proxy before and after federated fine-tuning (its
 * adapter), and the fused LLM. */
enum { FP_SIM_EVAL_LLM = 0, FP_SIM_EVAL_PROXY, FP_SIM_EVAL_PROXY_TUNED, FP_SIM_EVAL_FUSED, FP_SIM_EVAL_N };
typedef struct fp_fed_sim_eval {
    char name[FP_FED_NAME_MAX];
    int64_t tokens;
    double loss[FP_SIM_EVAL_N], ppl[FP_SIM_EVAL_N], acc[FP_SIM_EVAL_N];
} fp_fed_sim_eval;

typedef struct fp_fed_sim_result {
    int server_rc;
    size_t n_evals;          /* FedProx runs: one per client (else 0) */
    fp_fed_sim_eval *evals;  /* malloc'd; caller frees */
    char workdir[FP_FED_PATH_MAX]; /* FedProxy runs: proxy/, adapter/, fused/ live here */
    size_t n_clients;
    fp_fed_sim_client *clients; /* malloc'd; caller frees */
    double wall_s;       /* server start to the last client's end */
    uint32_t completed;
    size_t dim;
    float *global;   /* malloc'd; caller frees */
    float *expected; /* the sample-weighted mean of the clients' targets (malloc'd; NULL
                      * in engine federations) */
    double max_err;  /* max |global - expected| (NaN in engine federations) */
} fp_fed_sim_result;

int fp_fed_sim_run(fp_fed_sim_result *out, const char *config_json, size_t len, const char *base_dir,
                   fp_fed_report_fn report, void *report_ctx);
/* Frees what a run allocated in r (global, expected, clients, evals) and zeroes it. */
void fp_fed_sim_result_free(fp_fed_sim_result *r);

/* `fp bench fed`: see bench_fed.c. *json: malloc'd JSON text (caller frees). */
int fp_bench_fed(int quick, char **json);
/* `fp bench fed --aggregators`: server time and peak memory of every
 * aggregator, plain and secure (bench_aggregators.c); only: one name or NULL. */
int fp_bench_aggregators(int quick, const char *only, char **json);

#ifdef __cplusplus
}
#endif
#endif
