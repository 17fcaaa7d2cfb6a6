/* Differential privacy in the federation rounds: the glue between dp.h and
 * the server (dp_server.c) and client (dp_client.c) state machines. The
 * protocol part: ROUND_START carries "dp": {"mode", "clip", "sigma"} where
 * sigma is the standard deviation of the noise THIS client adds, in the float
 * domain: in plain mode to its clipped update before the server's weighting,
 * in secure mode to its weighted vector (the client turns it into discrete
 * Gaussian noise of variance (sigma * 2^scale_bits)^2 in the ring). sigma is 0
 * in central mode (the server adds the noise). See dp.h for the guarantee. */
#ifndef FP_DP_INTERNAL_H
#define FP_DP_INTERNAL_H

#include "fed_internal.h"
#include "fedproxy/dp.h"
#include "fedproxy/ring.h"
#include "fedproxy/secagg.h"

struct fp_fed_server;
struct fed_cl;

/* server_config.c: the "dp" object of server.json into c->dp, checked against
 * the aggregator. */
int fed_dp_config_parse(fp_fed_server_config *c, const cJSON *dp);

/* ---- server ---- */
/* Creates the accountant; with resume, continues from state_dir/dp_accountant.json. */
int dp_srv_open(struct fp_fed_server *s, int resume);
void dp_srv_close(struct fp_fed_server *s);
/* After selection: plans this round's noise (maxs: the largest selected sample count). */
int dp_srv_plan(struct fp_fed_server *s, double maxs);
/* Secure rounds: lowers p->ring.scale_bits until the noisy sum cannot wrap,
 * and refuses a ring scale at which the distributed discrete Gaussian is not
 * close to a discrete Gaussian (Kairouz et al.'s tau > 1e-12). */
int dp_srv_ring(struct fp_fed_server *s, fp_secagg_params *p);
/* Adds the "dp" object to a ROUND_START. */
void dp_srv_start_json(const struct fp_fed_server *s, cJSON *o);
/* Plain central mode: the server clips every update itself (rows are the
 * server's own copies of the received updates). */
int dp_srv_plain_rows(struct fp_fed_server *s, float *const *rows, size_t K);
/* After the aggregate: central noise, accounting (the noise multiplier this
 * round achieved given who was included), the state file. */
int dp_srv_finish(struct fp_fed_server *s, float *delta, const fp_secagg_params *sp);
/* Fills the report's dp fields (ok: the round completed). */
void dp_srv_report(const struct fp_fed_server *s, fp_fed_round_report *rep, int ok);

/* ---- client ---- */
typedef struct dp_cl {
    int on;
    fp_dp_mode mode;
    double clip, sigma;
} dp_cl;

/* ROUND_START's "dp" (NULL: off). */
int dp_cl_parse(dp_cl *d, const cJSON *o);
/* The client's floor (fp_fed_client_config.dp_min_noise; <= 0: none) against
 * the round's parsed "dp": FP_EPOLICY naming what falls short. */
int dp_cl_policy(const dp_cl *d, double min_noise);
/* After local training: clip the update; plain distributed mode adds the noise. */
int dp_cl_update(const dp_cl *d, float *update, size_t dim, int secure);
/* Secure mode's masked input: quantise x[0..len), add discrete Gaussian noise
 * to the first dim elements (the update; the weight column stays exact), mask. */
int dp_cl_masked(const dp_cl *d, fp_secagg_client *sa, uint8_t **out, size_t *out_len, const uint8_t *relay,
                 size_t relay_len, const float *x, size_t len, size_t dim, const fp_ring_params *ring);

#endif
