/* Internals shared by the SecAgg+ client, server, graph and wire code. */
#ifndef FP_SECAGG_INTERNAL_H
#define FP_SECAGG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/secagg.h"
#include "fedproxy/shamir.h"

/* ---- sizes of wire items (see secagg_wire.c for the layout) ---- */
#define SA_KEYBYTES 32u                     /* X25519 keys, seeds */
#define SA_SHARE_BYTES 33u                  /* Shamir share of a 32-byte secret: x + 32 */
#define SA_NONCEBYTES 24u                   /* XChaCha20-Poly1305 nonce */
#define SA_MACBYTES 16u
#define SA_PLAIN_BYTES (4u + 4u + 2u * SA_SHARE_BYTES) /* from, to, s_sk share, b share */
#define SA_CT_BYTES (SA_PLAIN_BYTES + SA_MACBYTES)
#define SA_ADV_BODY (2u * SA_KEYBYTES + FP_IDENTITY_SIGBYTES)
#define SA_KEYS_ENTRY (4u + SA_ADV_BODY)                 /* id, c_pk, s_pk, sig */
#define SA_CT_ENTRY (4u + SA_NONCEBYTES + SA_CT_BYTES)   /* peer id, nonce, ciphertext */
#define SA_UNMASK_ENTRY (4u + 1u + SA_SHARE_BYTES)       /* owner, kind, share */
#define SA_KIND_B 0u                                     /* share of the self-mask seed */
#define SA_KIND_S 1u                                     /* share of the masking key s_sk */

/* Header field offsets (tests patch them to forge replays). */
#define SA_OFF_TYPE 4u
#define SA_OFF_SESSION 8u
#define SA_OFF_ROUND 24u
#define SA_OFF_FROM 32u
#define SA_OFF_TO 36u

/* The public round context, copied and validated from fp_secagg_params. Client
 * index i refers to ids[i]; ids are sorted ascending, so index order is id order. */
typedef struct sa_ctx {
    uint8_t session[FP_SECAGG_SESSIONBYTES];
    uint64_t round;
    uint32_t n, t, k;
    size_t d;
    fp_ring_params ring;
    uint8_t graph_seed[FP_SECAGG_GRAPHSEEDBYTES];
    uint32_t *ids;               /* n, ascending */
    uint8_t (*sign_pk)[32];      /* n */
    uint32_t *ring_pos;          /* n: position of client i on the Harary ring */
    uint32_t *at_pos;            /* n: client index at each ring position */
} sa_ctx;

int sa_ctx_init(sa_ctx *ctx, const fp_secagg_params *p);
void sa_ctx_free(sa_ctx *ctx);
/* Index of id, or -1. */
int64_t sa_index_of(const sa_ctx *ctx, uint32_t id);
/* The k neighbours of client index i, as ascending indices, into row[k]. */
void sa_graph_row(const sa_ctx *ctx, uint32_t i, uint32_t *row);
/* Binary search of a sorted index row; position or -1. */
int64_t sa_row_find(const uint32_t *row, size_t len, uint32_t idx);

/* ---- crypto helpers (secagg_crypto.c) ---- */

/* The bytes an advertisement's signature covers. */
#define SA_SIGNED_BYTES (32u + FP_SECAGG_SESSIONBYTES + 8u + 4u + 2u * SA_KEYBYTES)
void sa_signed_bytes(uint8_t out[SA_SIGNED_BYTES], const sa_ctx *ctx, uint32_t id,
                     const uint8_t c_pk[32], const uint8_t s_pk[32]);

/* Symmetric key of a pair from an X25519 secret: hash of a domain label,
 * session, round, both (id, pk) in id order, and the shared point.
 * label is "enc" for share encryption or "mask" for pairwise mask seeds.
 * FP_ECRYPTO if the agreement fails (low-order point). */
int sa_pair_key(uint8_t key[32], const sa_ctx *ctx, const char *label, const uint8_t my_sk[32],
                uint32_t my_id, const uint8_t my_pk[32], uint32_t peer_id,
                const uint8_t peer_pk[32]);

/* Associated data of a share ciphertext. */
#define SA_AD_BYTES (16u + FP_SECAGG_SESSIONBYTES + 8u + 4u + 4u + 1u)
void sa_share_ad(uint8_t ad[SA_AD_BYTES], const sa_ctx *ctx, uint32_t from, uint32_t to);

/* One PRG mask term: acc += sign * ChaCha20(key, nonce)[0..d) as uint32 words. */
typedef struct sa_mask {
    uint8_t key[32];
    int self; /* 1: self mask (nonce "FPSAself"), 0: pairwise ("FPSApair") */
    int neg;  /* 1: subtract */
} sa_mask;
/* Applies all masks, chunk by chunk so the accumulator chunk stays in cache
 * while every mask stream is added into it; large jobs are split over worker
 * threads by element range (FP_SECAGG_THREADS, default the online CPUs). */
void sa_apply_masks(uint32_t *acc, size_t d, const sa_mask *masks, size_t m);
/* acc[i] += little-endian uint32 i of bytes (mod 2^32). */
void sa_add_le32(uint32_t *acc, const uint8_t *bytes, size_t n);

/* ---- wire helpers (secagg_wire.c) ---- */

typedef struct sa_hdr {
    uint8_t type;
    uint8_t session[FP_SECAGG_SESSIONBYTES];
    uint64_t round;
    uint32_t from, to;
} sa_hdr;

static inline void sa_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t sa_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void sa_put64(uint8_t *p, uint64_t v)
{
    sa_put32(p, (uint32_t)v);
    sa_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t sa_get64(const uint8_t *p)
{
    return (uint64_t)sa_get32(p) | (uint64_t)sa_get32(p + 4) << 32;
}

/* Allocates a message of header + body_len bytes, writes the header for ctx. */
int sa_msg_new(uint8_t **msg, size_t body_len, const sa_ctx *ctx, int type, uint32_t from,
               uint32_t to);
/* Parses the header (FP_EFORMAT if short, bad magic or reserved bytes). */
int sa_hdr_parse(sa_hdr *h, const uint8_t *msg, size_t len);
/* Parses and checks session and round (FP_EREPLAY), type (FP_EREPLAY: out of
 * order) and recipient (FP_EPROTO). */
int sa_hdr_expect(sa_hdr *h, const uint8_t *msg, size_t len, const sa_ctx *ctx, int type,
                  uint32_t to);
const char *sa_type_name(int type);

/* Bounds-checked reader over a message body. */
typedef struct sa_rd {
    const uint8_t *p;
    size_t len, off;
    const char *what;
} sa_rd;
int sa_rd_u32(sa_rd *r, uint32_t *v);
int sa_rd_bytes(sa_rd *r, const uint8_t **v, size_t n);
/* A count followed by count entries of entry_bytes: the count must fit the rest. */
int sa_rd_count(sa_rd *r, uint32_t *count, size_t entry_bytes);
int sa_rd_end(const sa_rd *r);

/* Decodes a MASKED message's vector into y[d] (the server's view; for tests). */
int sa_masked_decode(uint32_t *y, size_t d, const uint8_t *msg, size_t len);

#endif
