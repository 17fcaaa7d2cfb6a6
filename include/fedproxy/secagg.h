/* fedproxy: SecAgg+ secure aggregation (Bell et al. 2020; Bonawitz et al. 2017),
 * as transport-agnostic state machines that consume and produce byte buffers.
 *
 * The server learns the sum (mod 2^32) of the quantised inputs of the clients
 * that survive to the masked-input stage, and nothing about any single input,
 * as long as fewer than t parties of a neighbourhood collude with it.
 *
 * Setting. n clients with distinct 32-bit ids and long-term Ed25519 identities
 * (fedproxy/identity.h) known to everyone (the roster). A public seed fixes a
 * k-regular neighbour graph (a Harary graph on a seeded random permutation of
 * the clients; k = n-1 is the full graph of the original SecAgg). Each client
 * Shamir-shares its secrets t-of-(k+1) among its neighbours and itself, and
 * masks its input with one pairwise mask per neighbour, so server work is
 * O(n*k*d) rather than O(n^2*d).
 *
 * The round, message by message ("C->S": client to server):
 *   stage 0  C->S ADVERTISE  c_pk, s_pk (fresh X25519 keys), Ed25519 signature
 *            over (c_pk, s_pk, session, round, id)
 *            S->C KEYS       the advertisements of the client's neighbours
 *   stage 1  C->S SHARES     Shamir shares of s_sk and of the self-mask seed b,
 *            for each neighbour, XChaCha20-Poly1305-encrypted under a key from
 *            X25519(c) agreement; associated data = session, round, from, to, stage
 *            S->C RELAY      the ciphertexts addressed to the client
 *   stage 2  C->S MASKED     y = q + PRG(b) + sum_j +-PRG(s_ij)  (mod 2^32)
 *            S->C UNMASK_REQ which neighbours survived, which dropped
 *   stage 3  C->S UNMASK     b-shares of survivors, s_sk-shares of the dropped
 *            (a client never reveals both for the same peer)
 * Pairwise seeds hash the X25519(s) secret with session, round and both ids,
 * and every key is fresh per client object, so no key serves two rounds.
 *
 * Wiring (the caller's job): authenticate the transport peer and check it is
 * the message's sender (fp_secagg_msg_peek); deliver each client message to
 * fp_secagg_server_receive; end each stage (deadline or all received) with
 * fp_secagg_server_close_stage; send each listed client
 * fp_secagg_server_message_for; feed those to the client functions in order.
 * A client that misses a stage is treated as dropped from then on.
 *
 * Errors: a rejected message (FP_EFORMAT malformed or truncated, FP_ECRYPTO bad
 * signature or ciphertext, FP_EAUTH unknown sender, FP_EREPLAY wrong session,
 * round, stage or a duplicate, FP_EPROTO a request that breaks the protocol)
 * leaves the object as it was. FP_EABORT (fewer than t survivors where t are
 * needed) is final: the object refuses everything afterwards (FP_ESTATE).
 *
 * Wire format: little-endian, 40-byte header (magic "FSA\x01", type, 3 zero
 * bytes, session id, round u64, from u32, to u32), then a per-type body with
 * explicit counts; every length is checked before use.
 *
 * Ownership: output buffers (*out) are malloc'd by the library; the caller
 * frees them with free(). Parameters are copied by the _new functions.
 * Threading: an object is used by one thread at a time; distinct objects are
 * independent (fp_secagg_sim_round runs many clients on one thread). Mask
 * expansion of large vectors (client masked input, server's final
 * close_stage) splits the vector over short-lived worker threads inside the
 * call: FP_SECAGG_THREADS=N caps them (1 disables), default the online CPUs.
 */
#ifndef FEDPROXY_SECAGG_H
#define FEDPROXY_SECAGG_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/identity.h"
#include "fedproxy/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_SECAGG_SESSIONBYTES 16u
#define FP_SECAGG_GRAPHSEEDBYTES 32u
#define FP_SECAGG_SERVER_ID 0xFFFFFFFFu   /* reserved: the server's id in headers */
#define FP_SECAGG_MAX_CLIENTS 65536u
#define FP_SECAGG_MAX_DEGREE 254u         /* k+1 shares must fit GF(2^8)'s 255 points */
#define FP_SECAGG_MAX_VECTOR (1u << 28)   /* elements (1 GiB of uint32) */
#define FP_SECAGG_HEADER_BYTES 40u

enum fp_secagg_msg_type {
    FP_SECAGG_MSG_ADVERTISE = 1,  /* C->S stage 0 */
    FP_SECAGG_MSG_KEYS = 2,       /* S->C */
    FP_SECAGG_MSG_SHARES = 3,     /* C->S stage 1 */
    FP_SECAGG_MSG_RELAY = 4,      /* S->C */
    FP_SECAGG_MSG_MASKED = 5,     /* C->S stage 2 */
    FP_SECAGG_MSG_UNMASK_REQ = 6, /* S->C */
    FP_SECAGG_MSG_UNMASK = 7      /* C->S stage 3 */
};

typedef struct fp_secagg_member {
    uint32_t id;                                  /* != FP_SECAGG_SERVER_ID */
    unsigned char sign_pk[FP_IDENTITY_PUBLICKEYBYTES]; /* Ed25519 identity */
} fp_secagg_member;

typedef struct fp_secagg_params {
    uint8_t session_id[FP_SECAGG_SESSIONBYTES];
    uint64_t round;
    const fp_secagg_member *members; /* n_clients entries, any order, distinct ids */
    uint32_t n_clients;              /* 2..FP_SECAGG_MAX_CLIENTS */
    uint32_t threshold;              /* t: 2..degree+1; t > (degree+1)/2 recommended */
    uint32_t degree;                 /* k: 0 means n_clients-1 (full graph); k*n even */
    uint8_t graph_seed[FP_SECAGG_GRAPHSEEDBYTES]; /* public; fixes the neighbour graph */
    size_t vec_len;                  /* d: 1..FP_SECAGG_MAX_VECTOR */
    fp_ring_params ring;             /* checked for n_clients without wrap-around */
} fp_secagg_params;

/* Validates params (every check names the offending value). */
int fp_secagg_params_check(const fp_secagg_params *p);

/* Header fields of any SecAgg message, for routing and sender authentication. */
typedef struct fp_secagg_msg_info {
    int type; /* enum fp_secagg_msg_type */
    uint8_t session_id[FP_SECAGG_SESSIONBYTES];
    uint64_t round;
    uint32_t from, to;
} fp_secagg_msg_info;
int fp_secagg_msg_peek(fp_secagg_msg_info *info, const uint8_t *msg, size_t len);

/* ---- neighbour graph (public; both sides derive the same one) ---- */

/* The neighbours of client `id` (ascending ids) into nbrs[cap]; *count = k. */
int fp_secagg_neighbours(uint32_t *nbrs, size_t cap, size_t *count, const fp_secagg_params *p,
                         uint32_t id);

/* ---- client ---- */

typedef struct fp_secagg_client fp_secagg_client;

/* A client for one round. identity must be the roster key of my_id; its secret
 * is copied, and wiped once the advertisement is signed. */
int fp_secagg_client_new(fp_secagg_client **out, const fp_secagg_params *p, uint32_t my_id,
                         const fp_identity *identity);
/* Wipes every secret and frees. NULL is allowed. */
void fp_secagg_client_free(fp_secagg_client *c);

/* Stage 0: fresh X25519 pairs, signed ADVERTISE message. */
int fp_secagg_client_advertise(fp_secagg_client *c, uint8_t **out, size_t *out_len);

/* Stage 1: checks KEYS (signatures, neighbours only, no duplicates, at least
 * t-1 of them), shares s_sk and b among them and itself, encrypts the shares:
 * SHARES message. */
int fp_secagg_client_share_keys(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                                const uint8_t *keys_msg, size_t keys_len);

/* Stage 2: decrypts RELAY (the shares this client holds for its neighbours),
 * quantises x[0..d) (fp_ring_quantize; rounding seed NULL = CSPRNG) and masks
 * it: MASKED message. d must equal params.vec_len. */
int fp_secagg_client_masked_input(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                                  const uint8_t *relay_msg, size_t relay_len, const float *x,
                                  size_t d, const uint8_t *rounding_seed);

/* Stage 2 for inputs already in the ring (e.g. counts); the caller guarantees
 * the sum of all clients' values does not wrap. */
int fp_secagg_client_masked_input_u32(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                                      const uint8_t *relay_msg, size_t relay_len,
                                      const uint32_t *q, size_t d);

/* Stage 3: answers UNMASK_REQ once. Refuses (FP_EPROTO) a request that names
 * a peer as both survivor and dropped, names itself as dropped, or names
 * someone it holds no share for; FP_EABORT if fewer than t of its
 * neighbourhood (itself included) survived. UNMASK message. */
int fp_secagg_client_unmask(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                            const uint8_t *req_msg, size_t req_len);

/* ---- server ---- */

typedef struct fp_secagg_server fp_secagg_server;

enum fp_secagg_server_stage {
    FP_SECAGG_STAGE_ADVERTISE = 0, /* collecting ADVERTISE */
    FP_SECAGG_STAGE_SHARES = 1,    /* collecting SHARES */
    FP_SECAGG_STAGE_MASKED = 2,    /* collecting MASKED */
    FP_SECAGG_STAGE_UNMASK = 3,    /* collecting UNMASK */
    FP_SECAGG_STAGE_DONE = 4,      /* result available */
    FP_SECAGG_STAGE_ABORTED = 5
};

int fp_secagg_server_new(fp_secagg_server **out, const fp_secagg_params *p);
void fp_secagg_server_free(fp_secagg_server *s);

int fp_secagg_server_stage(const fp_secagg_server *s);

/* Takes one client message of the current stage (verifies, stores; masked
 * inputs are added into the running sum at once, so the server keeps O(d)
 * memory whatever n is). */
int fp_secagg_server_receive(fp_secagg_server *s, const uint8_t *msg, size_t len);

/* Clients expected in the current stage, and how many of them have answered. */
int fp_secagg_server_pending(const fp_secagg_server *s, uint32_t *expected, uint32_t *received);

/* Ends the current stage: whoever did not answer is dropped. FP_EABORT (final)
 * if fewer than t clients remain, or a survivor's or dropped client's secret
 * could no longer be reconstructed from t shares. After stage 3 it
 * reconstructs the masks and computes the sum. */
int fp_secagg_server_close_stage(fp_secagg_server *s);

/* The ids (ascending) to which the message of the stage just closed goes:
 * KEYS after stage 0, RELAY after 1, UNMASK_REQ after 2. */
int fp_secagg_server_recipients(const fp_secagg_server *s, uint32_t *ids, size_t cap,
                                size_t *count);

/* That message for one recipient (FP_ENOTFOUND if id is not one). */
int fp_secagg_server_message_for(fp_secagg_server *s, uint32_t id, uint8_t **out, size_t *out_len);

/* After stage 3 is closed: the ring sum over the surviving clients (sum, d
 * elements), optionally dequantised (fsum, may be NULL), and how many clients
 * it covers (n_included, may be NULL). */
int fp_secagg_server_result(const fp_secagg_server *s, uint32_t *sum, float *fsum, size_t d,
                            uint32_t *n_included);

/* ---- whole round in one process (tests, `fp bench fed`) ---- */

enum fp_secagg_drop {
    FP_SECAGG_DROP_NONE = 0,
    FP_SECAGG_DROP_BEFORE_ADVERTISE = 1, /* never shows up */
    FP_SECAGG_DROP_BEFORE_SHARES = 2,    /* after stage 0 */
    FP_SECAGG_DROP_BEFORE_MASKED = 3,    /* after stage 1: sends no masked input */
    FP_SECAGG_DROP_BEFORE_UNMASK = 4     /* after stage 2: input counted, no shares */
};

typedef struct fp_secagg_sim_stats {
    double server_s;    /* wall time inside server calls */
    double clients_s;   /* wall time inside client calls, all clients */
    uint64_t bytes_up;  /* client -> server message bytes */
    uint64_t bytes_down; /* server -> client message bytes */
    uint32_t n_included; /* clients whose input is in the sum */
} fp_secagg_sim_stats;

/* Runs one round for all of p->members in this thread. identities[i] and
 * inputs[i] (d floats) belong to p->members[i]; drop (may be NULL) gives each
 * member's dropout point. Outputs as fp_secagg_server_result; stats may be
 * NULL. Returns the first server error (e.g. FP_EABORT). */
int fp_secagg_sim_round(uint32_t *sum, float *fsum, fp_secagg_sim_stats *stats,
                        const fp_secagg_params *p, const fp_identity *identities,
                        const float *const *inputs, const uint8_t *drop);

#ifdef __cplusplus
}
#endif
#endif
