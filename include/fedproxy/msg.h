/* fedproxy: the signed message envelope of the federation protocol, and the
 * guard that rejects replayed, misrouted and forged messages.
 *
 * Wire format (all integers little-endian), FP_MSG_HEADER_BYTES + payload +
 * FP_MSG_SIG_BYTES bytes in all:
 *
 *   off size field
 *     0    4 magic        "FPM1" (0x46 0x50 0x4d 0x31)
 *     4    1 version      FP_MSG_VERSION
 *     5    1 flags        must be 0 (no flag is defined yet; unknown flags are refused)
 *     6    2 type         enum fp_msg_type
 *     8   16 session      session id, random per federation session
 *    24    4 round        round number
 *    28    1 stage        enum fp_msg_stage
 *    29    1 kind         enum fp_payload_kind
 *    30    1 dtype        enum fp_msg_dtype; 0 unless kind is TENSOR
 *    31    1 ndim         0..FP_MSG_MAX_DIMS; 0 unless kind is TENSOR
 *    32   32 sender       Ed25519 public key of the sender
 *    64    8 seq          sender's sequence number (strictly increasing per sender)
 *    72    8 payload_len  bytes of payload that follow the header
 *    80   32 dims[4]      u64 each; dims[i] for i < ndim are >= 1, the rest 0
 *   112    . payload
 *     .   64 signature    Ed25519 (detached) by sender over bytes [0, 112 + payload_len)
 *
 * Payload kinds: NONE (payload_len 0), JSON (UTF-8 JSON text, parse with
 * fp_msg_json), TENSOR (dense row-major elements, payload_len = product(dims) *
 * dtype size, so the header alone says what the bytes are), BYTES (opaque, e.g.
 * sealed secret shares).
 *
 * Why the signature covers the header: session, round, stage, sender and seq
 * are what the guard decides on, so they must be as authentic as the payload.
 * The transport (CURVE) authenticates the connection; the signature binds the
 * content to the sender's long-term key, so it can be stored, forwarded by the
 * server and checked later.
 *
 * Ownership: encode writes into caller memory (or a malloc'd buffer the caller
 * frees); decode is zero-copy: the fp_msg it fills points into the caller's
 * buffer, which must outlive it. Threading: encode/decode are reentrant; an
 * fp_msg_guard is used by one thread at a time.
 */
#ifndef FEDPROXY_MSG_H
#define FEDPROXY_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "fedproxy/identity.h"
#include "fedproxy/json_check.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_MSG_MAGIC0 0x46u /* 'F' */
#define FP_MSG_MAGIC1 0x50u /* 'P' */
#define FP_MSG_MAGIC2 0x4du /* 'M' */
#define FP_MSG_MAGIC3 0x31u /* '1' */
#define FP_MSG_VERSION 1u
#define FP_MSG_SESSION_BYTES 16u
#define FP_MSG_SENDER_BYTES 32u /* Ed25519 public key */
#define FP_MSG_SIG_BYTES 64u    /* Ed25519 signature */
#define FP_MSG_MAX_DIMS 4u
#define FP_MSG_HEADER_BYTES 112u
#define FP_MSG_OVERHEAD (FP_MSG_HEADER_BYTES + FP_MSG_SIG_BYTES)
/* Default cap on payload_len for decoders that have no better idea (1 GiB). */
#define FP_MSG_MAX_PAYLOAD_DEFAULT ((uint64_t)1 << 30)

/* Message types. Numbers are part of the wire format: append, never renumber. */
enum fp_msg_type {
    FP_MSG_HELLO = 1,          /* client -> server: join request (JSON: device profile) */
    FP_MSG_WELCOME = 2,        /* server -> client: accepted (JSON: session parameters) */
    FP_MSG_ROUND_START = 3,    /* server -> client: round configuration (JSON) */
    FP_MSG_MODEL = 4,          /* server -> client: global weights (TENSOR or BYTES) */
    FP_MSG_UPDATE = 5,         /* client -> server: local update (TENSOR or BYTES) */
    FP_MSG_SA_ADVERTISE = 6,   /* SecAgg round 0: public keys */
    FP_MSG_SA_SHARE_KEYS = 7,  /* SecAgg round 1: encrypted shares */
    FP_MSG_SA_MASKED = 8,      /* SecAgg round 2: masked input */
    FP_MSG_SA_UNMASK = 9,      /* SecAgg round 3: shares for unmasking */
    FP_MSG_SA_BROADCAST = 10,  /* server -> clients: a SecAgg stage's collected data */
    FP_MSG_ROUND_END = 11,     /* server -> client: round result (JSON) */
    FP_MSG_ERROR = 12,         /* either way: a refusal with a reason (JSON) */
    FP_MSG_BYE = 13,           /* either way: leaving (NONE or JSON) */
    FP_MSG_PING = 14           /* either way: liveness (NONE) */
};
#define FP_MSG_TYPE_MIN 1u
#define FP_MSG_TYPE_MAX 14u

/* Protocol stages within a round. */
enum fp_msg_stage {
    FP_STAGE_JOIN = 0,      /* before/between rounds: HELLO, WELCOME, PING, BYE */
    FP_STAGE_CONFIG = 1,    /* round configuration, model download */
    FP_STAGE_TRAIN = 2,     /* local training, plain update upload */
    FP_STAGE_ADVERTISE = 3, /* SecAgg: advertise keys */
    FP_STAGE_SHARE = 4,     /* SecAgg: share keys */
    FP_STAGE_MASKED = 5,    /* SecAgg: masked input collection */
    FP_STAGE_UNMASK = 6,    /* SecAgg: unmasking */
    FP_STAGE_DONE = 7       /* round finished */
};
#define FP_STAGE_MAX 7u

enum fp_payload_kind {
    FP_PAYLOAD_NONE = 0,
    FP_PAYLOAD_JSON = 1,
    FP_PAYLOAD_TENSOR = 2,
    FP_PAYLOAD_BYTES = 3
};
#define FP_PAYLOAD_KIND_MAX 3u

/* Element types of TENSOR payloads (wire numbers). */
enum fp_msg_dtype {
    FP_DTYPE_F32 = 1,
    FP_DTYPE_F16 = 2,
    FP_DTYPE_BF16 = 3,
    FP_DTYPE_I32 = 4,
    FP_DTYPE_U32 = 5, /* SecAgg ring elements */
    FP_DTYPE_I8 = 6,
    FP_DTYPE_U8 = 7,
    FP_DTYPE_I64 = 8
};
#define FP_DTYPE_MAX 8u

/* Bytes per element of a dtype; 0 for an unknown one. */
size_t fp_msg_dtype_size(unsigned dtype);

typedef struct fp_msg_header {
    uint8_t session[FP_MSG_SESSION_BYTES];
    uint32_t round;
    uint8_t stage;  /* enum fp_msg_stage */
    uint16_t type;  /* enum fp_msg_type */
    uint8_t sender[FP_MSG_SENDER_BYTES];
    uint64_t seq;
    uint8_t kind;   /* enum fp_payload_kind */
    uint8_t dtype;  /* TENSOR only */
    uint8_t ndim;   /* TENSOR only */
    uint64_t dims[FP_MSG_MAX_DIMS];
    uint64_t payload_len; /* set by encode from its payload_len argument; filled by decode */
} fp_msg_header;

/* A decoded message. payload points into the decoded buffer (borrowed). */
typedef struct fp_msg {
    fp_msg_header h;
    const uint8_t *payload;
    size_t payload_len;
} fp_msg;

/* Encoded size of a message with payload_len bytes of payload (SIZE_MAX if that
 * overflows). */
size_t fp_msg_encoded_size(size_t payload_len);

/* Encodes and signs. h->sender must equal id->pk (a message is only ever signed
 * by its own sender); h->payload_len is ignored (payload_len is used). The
 * header must pass the same checks decode applies. out_cap must be at least
 * fp_msg_encoded_size(payload_len). *out_len gets the bytes written.
 * Errors: FP_EINVAL (bad arguments, sender != id), FP_EFORMAT (invalid header
 * fields, tensor shape disagreeing with payload_len), FP_EOVERFLOW. */
int fp_msg_encode(uint8_t *out, size_t out_cap, size_t *out_len, const fp_msg_header *h,
                  const void *payload, size_t payload_len, const fp_identity *id);

/* As fp_msg_encode into a new malloc'd buffer the caller frees with free(). */
int fp_msg_encode_alloc(uint8_t **out, size_t *out_len, const fp_msg_header *h, const void *payload,
                        size_t payload_len, const fp_identity *id);

/* Decodes buf[0..len): checks magic, version, flags, type, stage, kind, dtype,
 * shape, that payload_len agrees with len exactly and is <= max_payload, then
 * the signature with the header's sender key. FP_EFORMAT with a message for
 * every structural problem, FP_ECRYPTO for a bad signature. On failure *out is
 * zeroed. The signature only proves that whoever holds `sender`'s key wrote
 * it; whether that sender is allowed, and is the peer it came from, is the
 * guard's job. */
int fp_msg_decode(fp_msg *out, const uint8_t *buf, size_t len, uint64_t max_payload);

/* Parses a JSON payload (kind must be JSON) and checks it against fields[0..n)
 * (see json_check.h: unknown fields, duplicates, wrong types, missing required
 * fields are FP_EFORMAT). *out is freed with cJSON_Delete. */
int fp_msg_json(cJSON **out, const fp_msg *m, const fp_json_field *fields, size_t n);

/* Short constant name of a type / stage ("UPDATE", "MASKED"); "?" if unknown. */
const char *fp_msg_type_name(unsigned type);
const char *fp_msg_stage_name(unsigned stage);

/* ---- Guard: replay, ordering, session/round/stage and sender checks ---------
 *
 * The guard holds the allow-list of sender keys, the session id, the expected
 * round and stage, and per sender the highest sequence number accepted. Checks,
 * in this order (the first failure wins):
 *   1. the envelope's sender differs from the key the transport authenticated
 *      the peer as (forged sender)                  -> FP_EAUTH  "forged-sender"
 *   2. the sender is not on the allow-list          -> FP_EAUTH  "unknown-sender"
 *   3. another session id                           -> FP_EPROTO "wrong-session"
 *   4. a round before the current one               -> FP_EPROTO "old-round"
 *      a round after it (EXACT policy)              -> FP_EPROTO "wrong-round"
 *   5. another stage (EXACT policy), or an earlier
 *      stage of the current round (FOLLOW policy)   -> FP_EPROTO "wrong-stage"
 *   6. seq <= the highest seq accepted from sender  -> FP_EREPLAY "replay"
 * Senders number their messages from 1 (nothing was accepted yet counts as 0).
 * A rejected message changes nothing. Gaps in seq are allowed (a sender may
 * drop a message it failed to send), going backwards never is.
 *
 * Policies: EXACT (the server): the owner moves round/stage with
 * fp_msg_guard_set_stage; messages must match exactly. FOLLOW (a client
 * following the server): a message may move round/stage forward (round
 * larger, or same round and stage >= current) and accepting it does so.
 */
enum fp_guard_policy { FP_GUARD_EXACT = 0, FP_GUARD_FOLLOW = 1 };

typedef struct fp_msg_guard fp_msg_guard;

/* allow[0..n_allow) are Ed25519 public keys (copied). Starts at round 0, stage JOIN. */
int fp_msg_guard_create(fp_msg_guard **out, const uint8_t session[FP_MSG_SESSION_BYTES],
                        const uint8_t (*allow)[FP_MSG_SENDER_BYTES], size_t n_allow, int policy);
void fp_msg_guard_destroy(fp_msg_guard *g);

/* Sets the expected round and stage (EXACT) or the current position (FOLLOW).
 * Moving to an earlier round is refused with FP_ESTATE: rounds never repeat. */
int fp_msg_guard_set_stage(fp_msg_guard *g, uint32_t round, uint8_t stage);

/* Checks m, received from the peer the transport authenticated as peer_key.
 * Returns 0 (and records m->h.seq) or the codes above; *reason (if not NULL)
 * gets the short constant token in quotes above (NULL on success), and
 * fp_errmsg() a sentence naming the sender, the seq and the values involved. */
int fp_msg_guard_check(fp_msg_guard *g, const fp_msg *m, const uint8_t peer_key[FP_MSG_SENDER_BYTES],
                       const char **reason);

/* Highest seq accepted from sender (0 if none or not allowed). */
uint64_t fp_msg_guard_last_seq(const fp_msg_guard *g, const uint8_t sender[FP_MSG_SENDER_BYTES]);

#ifdef __cplusplus
}
#endif
#endif
