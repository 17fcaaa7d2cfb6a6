/* The signed message envelope: encode, decode, JSON payloads (see fedproxy/msg.h). */
#include "fedproxy/msg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"

/* Field offsets of the fixed header (msg.h has the table). */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_FLAGS = 5,
    OFF_TYPE = 6,
    OFF_SESSION = 8,
    OFF_ROUND = 24,
    OFF_STAGE = 28,
    OFF_KIND = 29,
    OFF_DTYPE = 30,
    OFF_NDIM = 31,
    OFF_SENDER = 32,
    OFF_SEQ = 64,
    OFF_PLEN = 72,
    OFF_DIMS = 80
};
_Static_assert(OFF_DIMS + 8 * FP_MSG_MAX_DIMS == FP_MSG_HEADER_BYTES, "header layout");
_Static_assert(FP_MSG_SENDER_BYTES == crypto_sign_PUBLICKEYBYTES, "sender is an Ed25519 key");
_Static_assert(FP_MSG_SIG_BYTES == crypto_sign_BYTES, "Ed25519 signature size");

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

size_t fp_msg_dtype_size(unsigned dtype)
{
    switch (dtype) {
    case FP_DTYPE_F32: return 4;
    case FP_DTYPE_F16: return 2;
    case FP_DTYPE_BF16: return 2;
    case FP_DTYPE_I32: return 4;
    case FP_DTYPE_U32: return 4;
    case FP_DTYPE_I8: return 1;
    case FP_DTYPE_U8: return 1;
    case FP_DTYPE_I64: return 8;
    default: return 0;
    }
}

const char *fp_msg_type_name(unsigned type)
{
    static const char *const names[] = {"?",         "HELLO",        "WELCOME",      "ROUND_START",
                                        "MODEL",     "UPDATE",       "SA_ADVERTISE", "SA_SHARE_KEYS",
                                        "SA_MASKED", "SA_UNMASK",    "SA_BROADCAST", "ROUND_END",
                                        "ERROR",     "BYE",          "PING"};
    return type <= FP_MSG_TYPE_MAX ? names[type] : "?";
}

const char *fp_msg_stage_name(unsigned stage)
{
    static const char *const names[] = {"JOIN",  "CONFIG", "TRAIN",  "ADVERTISE",
                                        "SHARE", "MASKED", "UNMASK", "DONE"};
    return stage <= FP_STAGE_MAX ? names[stage] : "?";
}

size_t fp_msg_encoded_size(size_t payload_len)
{
    if (payload_len > SIZE_MAX - FP_MSG_OVERHEAD)
        return SIZE_MAX;
    return payload_len + FP_MSG_OVERHEAD;
}

/* The checks shared by encode (our own mistakes) and decode (a peer's): the
 * header fields are valid and the tensor shape accounts for every payload byte.
 * who: "encode" or the sender's hex prefix, for the message. */
static int check_header(const fp_msg_header *h, uint64_t payload_len, const char *who)
{
    if (h->type < FP_MSG_TYPE_MIN || h->type > FP_MSG_TYPE_MAX)
        return fp_seterr(FP_EFORMAT, "message from %s: unknown message type %u", who, h->type);
    if (h->stage > FP_STAGE_MAX)
        return fp_seterr(FP_EFORMAT, "message from %s: unknown stage %u", who, h->stage);
    if (h->kind > FP_PAYLOAD_KIND_MAX)
        return fp_seterr(FP_EFORMAT, "message from %s: unknown payload kind %u", who, h->kind);
    const char *tn = fp_msg_type_name(h->type);
    if (h->kind != FP_PAYLOAD_TENSOR) {
        int dims_zero = 1;
        for (unsigned i = 0; i < FP_MSG_MAX_DIMS; i++)
            dims_zero &= h->dims[i] == 0;
        if (h->dtype || h->ndim || !dims_zero)
            return fp_seterr(FP_EFORMAT, "%s from %s: dtype/shape set on a non-tensor payload", tn, who);
        if (h->kind == FP_PAYLOAD_NONE && payload_len)
            return fp_seterr(FP_EFORMAT, "%s from %s: payload kind NONE with %llu payload bytes", tn,
                             who, (unsigned long long)payload_len);
        if (h->kind == FP_PAYLOAD_JSON && payload_len == 0)
            return fp_seterr(FP_EFORMAT, "%s from %s: empty JSON payload", tn, who);
        return 0;
    }
    size_t esize = fp_msg_dtype_size(h->dtype);
    if (!esize)
        return fp_seterr(FP_EFORMAT, "%s from %s: unknown tensor dtype %u", tn, who, h->dtype);
    if (h->ndim < 1 || h->ndim > FP_MSG_MAX_DIMS)
        return fp_seterr(FP_EFORMAT, "%s from %s: tensor ndim %u outside 1..%u", tn, who, h->ndim,
                         FP_MSG_MAX_DIMS);
    uint64_t bytes = esize;
    for (unsigned i = 0; i < FP_MSG_MAX_DIMS; i++) {
        if (i >= h->ndim) {
            if (h->dims[i])
                return fp_seterr(FP_EFORMAT, "%s from %s: tensor dim %u set beyond ndim %u", tn, who,
                                 i, h->ndim);
            continue;
        }
        if (h->dims[i] == 0)
            return fp_seterr(FP_EFORMAT, "%s from %s: tensor dim %u is 0", tn, who, i);
        if (bytes > UINT64_MAX / h->dims[i])
            return fp_seterr(FP_EFORMAT, "%s from %s: tensor shape overflows 64 bits", tn, who);
        bytes *= h->dims[i];
    }
    if (bytes != payload_len)
        return fp_seterr(FP_EFORMAT,
                         "%s from %s: tensor shape needs %llu bytes but the payload has %llu", tn,
                         who, (unsigned long long)bytes, (unsigned long long)payload_len);
    return 0;
}

int fp_msg_encode(uint8_t *out, size_t out_cap, size_t *out_len, const fp_msg_header *h,
                  const void *payload, size_t payload_len, const fp_identity *id)
{
    if (out_len)
        *out_len = 0;
    if (!out || !out_len || !h || !id || (!payload && payload_len))
        return fp_seterr(FP_EINVAL, "fp_msg_encode: missing argument");
    size_t need = fp_msg_encoded_size(payload_len);
    if (need == SIZE_MAX)
        return fp_seterr(FP_EOVERFLOW, "fp_msg_encode: payload of %zu bytes too large", payload_len);
    if (out_cap < need)
        return fp_seterr(FP_EINVAL, "fp_msg_encode: buffer of %zu bytes, need %zu", out_cap, need);
    if (sodium_memcmp(h->sender, id->pk, FP_MSG_SENDER_BYTES) != 0)
        return fp_seterr(FP_EINVAL, "fp_msg_encode: header sender is not the signing identity");
    int rc = check_header(h, payload_len, "encode");
    if (rc)
        return rc;

    uint8_t *p = out;
    p[0] = FP_MSG_MAGIC0;
    p[1] = FP_MSG_MAGIC1;
    p[2] = FP_MSG_MAGIC2;
    p[3] = FP_MSG_MAGIC3;
    p[OFF_VERSION] = FP_MSG_VERSION;
    p[OFF_FLAGS] = 0;
    put16(p + OFF_TYPE, h->type);
    memcpy(p + OFF_SESSION, h->session, FP_MSG_SESSION_BYTES);
    put32(p + OFF_ROUND, h->round);
    p[OFF_STAGE] = h->stage;
    p[OFF_KIND] = h->kind;
    p[OFF_DTYPE] = h->dtype;
    p[OFF_NDIM] = h->ndim;
    memcpy(p + OFF_SENDER, h->sender, FP_MSG_SENDER_BYTES);
    put64(p + OFF_SEQ, h->seq);
    put64(p + OFF_PLEN, (uint64_t)payload_len);
    for (unsigned i = 0; i < FP_MSG_MAX_DIMS; i++)
        put64(p + OFF_DIMS + 8 * i, h->dims[i]);
    if (payload_len)
        memmove(p + FP_MSG_HEADER_BYTES, payload, payload_len);
    size_t signed_len = FP_MSG_HEADER_BYTES + payload_len;
    if (crypto_sign_detached(p + signed_len, NULL, p, signed_len, id->sk) != 0)
        return fp_seterr(FP_ECRYPTO, "fp_msg_encode: Ed25519 signing failed");
    *out_len = need;
    return 0;
}

int fp_msg_encode_alloc(uint8_t **out, size_t *out_len, const fp_msg_header *h, const void *payload,
                        size_t payload_len, const fp_identity *id)
{
    if (!out || !out_len)
        return fp_seterr(FP_EINVAL, "fp_msg_encode_alloc: missing output");
    *out = NULL;
    *out_len = 0;
    size_t need = fp_msg_encoded_size(payload_len);
    if (need == SIZE_MAX)
        return fp_seterr(FP_EOVERFLOW, "fp_msg_encode: payload of %zu bytes too large", payload_len);
    uint8_t *buf = malloc(need);
    if (!buf)
        return fp_seterr(FP_ENOMEM, "fp_msg_encode: cannot allocate %zu bytes", need);
    int rc = fp_msg_encode(buf, need, out_len, h, payload, payload_len, id);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

int fp_msg_decode(fp_msg *out, const uint8_t *buf, size_t len, uint64_t max_payload)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_msg_decode: missing output");
    memset(out, 0, sizeof *out);
    if (!buf && len)
        return fp_seterr(FP_EINVAL, "fp_msg_decode: missing buffer");
    if (len < FP_MSG_OVERHEAD)
        return fp_seterr(FP_EFORMAT, "message of %zu bytes is shorter than header and signature (%u)",
                         len, FP_MSG_OVERHEAD);
    if (buf[0] != FP_MSG_MAGIC0 || buf[1] != FP_MSG_MAGIC1 || buf[2] != FP_MSG_MAGIC2 ||
        buf[3] != FP_MSG_MAGIC3)
        return fp_seterr(FP_EFORMAT, "not a fedproxy message (bad magic %02x%02x%02x%02x)", buf[0],
                         buf[1], buf[2], buf[3]);
    if (buf[OFF_VERSION] != FP_MSG_VERSION)
        return fp_seterr(FP_EFORMAT, "message version %u, this build speaks %u", buf[OFF_VERSION],
                         FP_MSG_VERSION);

    /* Name the claimed sender in every later message: it is not yet verified,
     * but it is what an operator needs to find the misbehaving peer. */
    char who[20];
    sodium_bin2hex(who, 17, buf + OFF_SENDER, 8);
    memcpy(who + 16, "..", 3);

    if (buf[OFF_FLAGS] != 0)
        return fp_seterr(FP_EFORMAT, "message from %s: unknown flags 0x%02x", who, buf[OFF_FLAGS]);
    fp_msg_header h;
    memset(&h, 0, sizeof h);
    h.type = get16(buf + OFF_TYPE);
    memcpy(h.session, buf + OFF_SESSION, FP_MSG_SESSION_BYTES);
    h.round = get32(buf + OFF_ROUND);
    h.stage = buf[OFF_STAGE];
    h.kind = buf[OFF_KIND];
    h.dtype = buf[OFF_DTYPE];
    h.ndim = buf[OFF_NDIM];
    memcpy(h.sender, buf + OFF_SENDER, FP_MSG_SENDER_BYTES);
    h.seq = get64(buf + OFF_SEQ);
    h.payload_len = get64(buf + OFF_PLEN);
    for (unsigned i = 0; i < FP_MSG_MAX_DIMS; i++)
        h.dims[i] = get64(buf + OFF_DIMS + 8 * i);

    if (h.payload_len > max_payload)
        return fp_seterr(FP_EFORMAT, "message from %s: payload of %llu bytes exceeds the limit %llu",
                         who, (unsigned long long)h.payload_len, (unsigned long long)max_payload);
    /* len >= OVERHEAD here, so this subtraction cannot wrap */
    if (h.payload_len != (uint64_t)(len - FP_MSG_OVERHEAD))
        return fp_seterr(FP_EFORMAT,
                         "message from %s: header says %llu payload bytes, the buffer holds %zu", who,
                         (unsigned long long)h.payload_len, len - FP_MSG_OVERHEAD);
    int rc = check_header(&h, h.payload_len, who);
    if (rc)
        return rc;
    size_t signed_len = len - FP_MSG_SIG_BYTES;
    if (crypto_sign_verify_detached(buf + signed_len, buf, signed_len, h.sender) != 0)
        return fp_seterr(FP_ECRYPTO, "%s from %s: bad signature", fp_msg_type_name(h.type), who);
    out->h = h;
    out->payload = buf + FP_MSG_HEADER_BYTES;
    out->payload_len = (size_t)h.payload_len;
    return 0;
}

int fp_msg_json(cJSON **out, const fp_msg *m, const fp_json_field *fields, size_t n)
{
    if (!out || !m)
        return fp_seterr(FP_EINVAL, "fp_msg_json: missing argument");
    *out = NULL;
    char what[64];
    char hex[17];
    sodium_bin2hex(hex, sizeof hex, m->h.sender, 8);
    snprintf(what, sizeof what, "%s from %s..", fp_msg_type_name(m->h.type), hex);
    if (m->h.kind != FP_PAYLOAD_JSON)
        return fp_seterr(FP_EFORMAT, "%s: payload is not JSON (kind %u)", what, m->h.kind);
    return fp_json_parse(out, (const char *)m->payload, m->payload_len, fields, n, what);
}
