/* fp bench fed: the server's time per round for 10, 50 and 100 simulated
 * clients with a 4 MiB update (1 M floats), plain FedAvg against SecAgg+.
 *
 * What is timed is the server's own work, in this process, clients excluded:
 *  plain:  for every client, decode + verify the signed UPDATE envelope and
 *          pass the guard (as the server does: the signatures of a batch on
 *          worker threads, fed_decode_batch, FP_AGG_THREADS); then the
 *          sample-weighted FedAvg over all updates.
 *  secure: the same envelope decode + verify of every MASKED message (the
 *          bulk of the bytes), plus every SecAgg+ server call of a whole
 *          round (fp_secagg_sim_round's server time: key relay, share relay,
 *          masked sums, seed reconstruction and mask removal), plus the
 *          fedavg finish (division by the secure sum of weights).
 * The neighbour degree: full graph at n <= 16, else k = 2*ceil(log2 n)
 * (12 at 50, 14 at 100), threshold (k+1)/2 + 1; the round's server uses the
 * same rule. Bytes per client: the envelopes a client uploads (plus, for
 * SecAgg, its share of the key/share/unmask traffic) against the raw f32
 * update size; transport framing (CURVE: 16 bytes per frame) is not counted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/secagg.h"

static uint32_t auto_degree(uint32_t n)
{
    if (n <= 16)
        return 0;
    uint32_t lg = 0;
    while ((1u << lg) < n)
        lg++;
    uint32_t k = 2 * lg;
    return k >= n - 1 ? 0 : k;
}

/* Times decode + guard of n envelopes; returns seconds. */
static int time_decode(double *secs, uint8_t **env, const size_t *len, size_t n, const fp_identity *ids,
                       const uint8_t session[16], uint32_t round, uint8_t stage, uint64_t max_payload)
{
    uint8_t(*keys)[32] = malloc(n * 32);
    if (!keys)
        return fp_seterr(FP_ENOMEM, "bench: out of memory");
    for (size_t i = 0; i < n; i++)
        memcpy(keys[i], ids[i].pk, 32);
    fp_msg_guard *g = NULL;
    int rc = fp_msg_guard_create(&g, session, (const uint8_t(*)[32])keys, n, FP_GUARD_EXACT);
    if (!rc)
        rc = fp_msg_guard_set_stage(g, round, stage);
    fed_decode_item *it = rc ? NULL : calloc(n, sizeof *it);
    if (!rc && !it)
        rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        it[i].buf = env[i], it[i].len = len[i];
    /* as the server does (srv_pump): the batch's signatures on worker
     * threads, then the guard in arrival order */
    double t0 = fed_now_s();
    if (!rc)
        rc = fed_decode_batch(it, n, max_payload);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = it[i].rc ? fp_seterr(it[i].rc, "%s", it[i].err) : 0;
        if (!rc)
            rc = fp_msg_guard_check(g, &it[i].msg, ids[i].pk, NULL);
    }
    *secs = fed_now_s() - t0;
    free(it);
    fp_msg_guard_destroy(g);
    free(keys);
    return rc;
}

static int bench_one(cJSON *arr, uint32_t n, size_t d, double *plain_s, double *secure_s)
{
    int rc = 0;
    fp_identity *ids = calloc(n, sizeof *ids);
    float **upd = calloc(n, sizeof *upd), **vec = calloc(n, sizeof *vec);
    uint8_t **env = calloc(n, sizeof *env);
    size_t *elen = calloc(n, sizeof *elen);
    double *w = calloc(n, sizeof *w);
    fp_secagg_member *mem = calloc(n, sizeof *mem);
    float *delta = malloc((d + 1) * sizeof(float)), *fsum = malloc((d + 1) * sizeof(float));
    if (!ids || !upd || !vec || !env || !elen || !w || !mem || !delta || !fsum) {
        rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
        goto out;
    }
    uint8_t session[16];
    randombytes_buf(session, sizeof session);
    fed_rng r;
    fed_rng_seed(&r, 42, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        fp_identity_keygen(&ids[i]);
        upd[i] = malloc(d * sizeof(float));
        if (!upd[i]) {
            rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
            break;
        }
        for (size_t j = 0; j < d; j++)
            upd[i][j] = (float)(fed_rng_uniform(&r) - 0.5);
        w[i] = 100.0 + 10.0 * (i % 7);
        mem[i].id = i;
        memcpy(mem[i].sign_pk, ids[i].pk, 32);
    }
    if (rc)
        goto out;
    /* ---- plain ---- */
    uint64_t maxp = (uint64_t)(d + 1) * 4 + 4096;
    for (uint32_t i = 0; i < n && !rc; i++) {
        fp_msg_header h;
        fed_header(&h, session, 1, FP_STAGE_TRAIN, FP_MSG_UPDATE, FP_PAYLOAD_TENSOR, ids[i].pk, 1);
        rc = fed_encode_f32(&env[i], &elen[i], &h, upd[i], d, &ids[i]);
    }
    double dec = 0;
    if (!rc)
        rc = time_decode(&dec, env, elen, n, ids, session, 1, FP_STAGE_TRAIN, maxp);
    const fp_aggregator *agg = NULL;
    if (!rc)
        rc = fp_aggregator_find(&agg, "fedavg");
    double t0 = fed_now_s();
    if (!rc)
        rc = agg->aggregate_plain(delta, (const float *const *)upd, w, n, d);
    double aggs = fed_now_s() - t0;
    *plain_s = dec + aggs;
    uint64_t plain_bytes = elen[0] + 200; /* + the small JSON meta envelope */
    for (uint32_t i = 0; i < n; i++) {
        free(env[i]);
        env[i] = NULL;
    }
    if (rc)
        goto out;
    /* ---- secure ---- */
    fp_secagg_params p;
    memset(&p, 0, sizeof p);
    memcpy(p.session_id, session, 16);
    p.round = 2;
    p.members = mem;
    p.n_clients = n;
    p.degree = auto_degree(n);
    uint32_t keff = p.degree ? p.degree : n - 1;
    p.threshold = (keff + 1) / 2 + 1;
    randombytes_buf(p.graph_seed, sizeof p.graph_seed);
    p.vec_len = agg->secure_len(0, d);
    p.ring.clip = 1.0f;
    rc = fp_ring_max_scale_bits(&p.ring.scale_bits, p.ring.clip, n);
    if (p.ring.scale_bits > 24)
        p.ring.scale_bits = 24;
    double wmax = 0;
    for (uint32_t i = 0; i < n; i++)
        wmax = w[i] > wmax ? w[i] : wmax;
    for (uint32_t i = 0; i < n && !rc; i++) {
        vec[i] = malloc(p.vec_len * sizeof(float));
        rc = vec[i] ? agg->client_vector(vec[i], 0, upd[i], d, w[i] / wmax, p.ring.clip, NULL)
                    : fp_seterr(FP_ENOMEM, "bench: out of memory");
        free(upd[i]);
        upd[i] = NULL;
    }
    fp_secagg_sim_stats st;
    memset(&st, 0, sizeof st);
    uint32_t *rsum = rc ? NULL : malloc(p.vec_len * sizeof *rsum);
    if (!rc && !rsum)
        rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
    if (!rc)
        rc = fp_secagg_sim_round(rsum, fsum, &st, &p, ids, (const float *const *)vec, NULL);
    free(rsum);
    if (rc)
        goto out;
    /* The envelopes carrying the masked inputs (same size as the real ones). */
    size_t mlen = (size_t)(st.bytes_up / n); /* average SecAgg bytes up per client */
    size_t masked_len = p.vec_len * 4 + FP_SECAGG_HEADER_BYTES;
    uint8_t *junk = malloc(masked_len);
    if (!junk) {
        rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
        goto out;
    }
    randombytes_buf(junk, masked_len);
    for (uint32_t i = 0; i < n && !rc; i++) {
        fp_msg_header h;
        fed_header(&h, session, 2, FP_STAGE_MASKED, FP_MSG_SA_MASKED, FP_PAYLOAD_BYTES, ids[i].pk, 1);
        rc = fed_encode_bytes(&env[i], &elen[i], &h, junk, masked_len, &ids[i]);
    }
    free(junk);
    double dec2 = 0;
    if (!rc)
        rc = time_decode(&dec2, env, elen, n, ids, session, 2, FP_STAGE_MASKED, maxp + 4096);
    t0 = fed_now_s();
    const float *sums[1] = {fsum};
    if (!rc)
        rc = agg->finish_secure(delta, d, sums, p.ring.clip);
    double fin = fed_now_s() - t0;
    *secure_s = dec2 + st.server_s + fin;
    /* 4 SecAgg messages per client, each in an envelope, + the JSON meta */
    uint64_t secure_bytes = (uint64_t)mlen + 4 * FP_MSG_OVERHEAD + 200;
    double raw = (double)d * 4;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "clients", n);
    cJSON_AddNumberToObject(o, "update_bytes", raw);
    cJSON_AddNumberToObject(o, "degree", p.degree ? p.degree : n - 1);
    cJSON_AddStringToObject(o, "graph", p.degree ? "k-regular (2*ceil(log2 n))" : "full");
    cJSON_AddNumberToObject(o, "threshold", p.threshold);
    cJSON_AddNumberToObject(o, "plain_server_s", *plain_s);
    cJSON_AddNumberToObject(o, "plain_verify_s", dec);
    cJSON_AddNumberToObject(o, "plain_aggregate_s", aggs);
    cJSON_AddNumberToObject(o, "secure_server_s", *secure_s);
    cJSON_AddNumberToObject(o, "secure_verify_s", dec2);
    cJSON_AddNumberToObject(o, "secure_secagg_s", st.server_s);
    cJSON_AddNumberToObject(o, "secure_clients_s", st.clients_s);
    cJSON_AddNumberToObject(o, "ratio", *secure_s / *plain_s);
    cJSON_AddNumberToObject(o, "plain_bytes_up_per_client", (double)plain_bytes);
    cJSON_AddNumberToObject(o, "secure_bytes_up_per_client", (double)secure_bytes);
    cJSON_AddNumberToObject(o, "secure_bytes_down_per_client", (double)st.bytes_down / n);
    cJSON_AddNumberToObject(o, "plain_wire_ratio", plain_bytes / raw);
    cJSON_AddNumberToObject(o, "secure_wire_ratio", secure_bytes / raw);
    cJSON_AddNumberToObject(o, "included", st.n_included);
    cJSON_AddItemToArray(arr, o);
out:
    for (uint32_t i = 0; ids && i < n; i++) {
        fp_identity_wipe(&ids[i]);
        if (upd)
            free(upd[i]);
        if (vec)
            free(vec[i]);
        if (env)
            free(env[i]);
    }
    free(ids);
    free(upd);
    free(vec);
    free(env);
    free(elen);
    free(w);
    free(mem);
    free(delta);
    free(fsum);
    return rc;
}

int fp_bench_fed(int quick, char **json)
{
    *json = NULL;
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
    size_t d = quick ? ((size_t)1 << 17) : ((size_t)1 << 20);
    static const uint32_t ns[3] = {10, 50, 100};
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "bench", "fed");
    cJSON_AddNumberToObject(root, "update_floats", (double)d);
    cJSON_AddBoolToObject(root, "quick", quick);
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    int rc = 0;
    double ratio100 = NAN;
    for (int i = 0; i < 3 && !rc; i++) {
        double ps = 0, ss = 0;
        rc = bench_one(arr, ns[i], d, &ps, &ss);
        if (!rc && ns[i] == 100)
            ratio100 = ss / ps;
    }
    cJSON_AddNumberToObject(root, "secure_over_plain_at_100", ratio100);
    cJSON_AddBoolToObject(root, "target_met", isfinite(ratio100) && ratio100 <= 2.0);
    if (!rc) {
        *json = cJSON_Print(root);
        if (!*json)
            rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
    }
    cJSON_Delete(root);
    return rc;
}
