/* SecAgg+ message framing: header, bounds-checked reading.
 *
 * Header (40 bytes, little-endian):
 *   0  magic "FSA\x01"      4  type u8, then 3 zero bytes
 *   8  session id [16]      24 round u64
 *   32 from u32             36 to u32   (FP_SECAGG_SERVER_ID for the server)
 * Bodies (counts are u32; entries fixed-size):
 *   ADVERTISE   c_pk[32] s_pk[32] sig[64]
 *   KEYS        count, count x {id, c_pk, s_pk, sig}
 *   SHARES      count, count x {to, nonce[24], ct[90]}
 *   RELAY       count, count x {from, nonce[24], ct[90]}
 *   MASKED      d, d x u32
 *   UNMASK_REQ  n_survivors, ids..., n_dropped, ids...
 *   UNMASK      count, count x {owner, kind u8 (0 b, 1 s_sk), share[33]}
 * Share plaintext: from u32, to u32, s_sk share[33], b share[33]. */
#include "secagg_internal.h"
#include "error_internal.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t magic[4] = {'F', 'S', 'A', 1};

const char *sa_type_name(int type)
{
    switch (type) {
    case FP_SECAGG_MSG_ADVERTISE: return "ADVERTISE";
    case FP_SECAGG_MSG_KEYS: return "KEYS";
    case FP_SECAGG_MSG_SHARES: return "SHARES";
    case FP_SECAGG_MSG_RELAY: return "RELAY";
    case FP_SECAGG_MSG_MASKED: return "MASKED";
    case FP_SECAGG_MSG_UNMASK_REQ: return "UNMASK_REQ";
    case FP_SECAGG_MSG_UNMASK: return "UNMASK";
    default: return "unknown";
    }
}

int sa_msg_new(uint8_t **msg, size_t body_len, const sa_ctx *ctx, int type, uint32_t from,
               uint32_t to)
{
    size_t len = FP_SECAGG_HEADER_BYTES + body_len;
    uint8_t *m = malloc(len);
    if (!m)
        return fp_seterr(FP_ENOMEM, "secagg: cannot allocate a %zu-byte %s message", len,
                         sa_type_name(type));
    memcpy(m, magic, 4);
    m[SA_OFF_TYPE] = (uint8_t)type;
    m[5] = m[6] = m[7] = 0;
    memcpy(m + SA_OFF_SESSION, ctx->session, FP_SECAGG_SESSIONBYTES);
    sa_put64(m + SA_OFF_ROUND, ctx->round);
    sa_put32(m + SA_OFF_FROM, from);
    sa_put32(m + SA_OFF_TO, to);
    *msg = m;
    return 0;
}

int sa_hdr_parse(sa_hdr *h, const uint8_t *msg, size_t len)
{
    if (!msg)
        return fp_seterr(FP_EINVAL, "secagg: NULL message");
    if (len < FP_SECAGG_HEADER_BYTES)
        return fp_seterr(FP_EFORMAT, "secagg: message of %zu bytes is shorter than the %u-byte header",
                         len, FP_SECAGG_HEADER_BYTES);
    if (memcmp(msg, magic, 4) != 0)
        return fp_seterr(FP_EFORMAT, "secagg: bad magic or version (not a SecAgg v1 message)");
    if (msg[5] | msg[6] | msg[7])
        return fp_seterr(FP_EFORMAT, "secagg: reserved header bytes are not zero");
    h->type = msg[SA_OFF_TYPE];
    if (h->type < FP_SECAGG_MSG_ADVERTISE || h->type > FP_SECAGG_MSG_UNMASK)
        return fp_seterr(FP_EFORMAT, "secagg: unknown message type %u", h->type);
    memcpy(h->session, msg + SA_OFF_SESSION, FP_SECAGG_SESSIONBYTES);
    h->round = sa_get64(msg + SA_OFF_ROUND);
    h->from = sa_get32(msg + SA_OFF_FROM);
    h->to = sa_get32(msg + SA_OFF_TO);
    return 0;
}

int sa_hdr_expect(sa_hdr *h, const uint8_t *msg, size_t len, const sa_ctx *ctx, int type,
                  uint32_t to)
{
    int rc = sa_hdr_parse(h, msg, len);
    if (rc)
        return rc;
    if (memcmp(h->session, ctx->session, FP_SECAGG_SESSIONBYTES) != 0)
        return fp_seterr(FP_EREPLAY, "secagg: %s message from %u belongs to another session",
                         sa_type_name(h->type), h->from);
    if (h->round != ctx->round)
        return fp_seterr(FP_EREPLAY, "secagg: %s message from %u is for round %llu, this is round %llu",
                         sa_type_name(h->type), h->from, (unsigned long long)h->round,
                         (unsigned long long)ctx->round);
    if (h->type != type)
        return fp_seterr(FP_EREPLAY, "secagg: out-of-order message from %u: expected %s, got %s",
                         h->from, sa_type_name(type), sa_type_name(h->type));
    if (h->to != to)
        return fp_seterr(FP_EPROTO, "secagg: %s message addressed to %u arrived at %u",
                         sa_type_name(h->type), h->to, to);
    return 0;
}

int fp_secagg_msg_peek(fp_secagg_msg_info *info, const uint8_t *msg, size_t len)
{
    if (!info)
        return fp_seterr(FP_EINVAL, "fp_secagg_msg_peek: NULL output");
    sa_hdr h;
    int rc = sa_hdr_parse(&h, msg, len);
    if (rc)
        return rc;
    info->type = h.type;
    memcpy(info->session_id, h.session, FP_SECAGG_SESSIONBYTES);
    info->round = h.round;
    info->from = h.from;
    info->to = h.to;
    return 0;
}

static int truncated(const sa_rd *r, size_t need)
{
    return fp_seterr(FP_EFORMAT, "secagg: truncated %s message: %zu more bytes needed at offset %zu, %zu left",
                     r->what, need, FP_SECAGG_HEADER_BYTES + r->off, r->len - r->off);
}

int sa_rd_u32(sa_rd *r, uint32_t *v)
{
    if (r->len - r->off < 4)
        return truncated(r, 4);
    *v = sa_get32(r->p + r->off);
    r->off += 4;
    return 0;
}

int sa_rd_bytes(sa_rd *r, const uint8_t **v, size_t n)
{
    if (r->len - r->off < n)
        return truncated(r, n);
    *v = r->p + r->off;
    r->off += n;
    return 0;
}

int sa_rd_count(sa_rd *r, uint32_t *count, size_t entry_bytes)
{
    int rc = sa_rd_u32(r, count);
    if (rc)
        return rc;
    /* Checked before anything is allocated for the entries, so a hostile count
     * cannot make us reserve memory. */
    if ((uint64_t)*count * entry_bytes > r->len - r->off)
        return fp_seterr(FP_EFORMAT, "secagg: %s message claims %u entries of %zu bytes but has %zu bytes left",
                         r->what, *count, entry_bytes, r->len - r->off);
    return 0;
}

int sa_rd_end(const sa_rd *r)
{
    if (r->off != r->len)
        return fp_seterr(FP_EFORMAT, "secagg: %zu unexpected trailing bytes after the %s message",
                         r->len - r->off, r->what);
    return 0;
}

int sa_masked_decode(uint32_t *y, size_t d, const uint8_t *msg, size_t len)
{
    sa_hdr h;
    int rc = sa_hdr_parse(&h, msg, len);
    if (rc)
        return rc;
    if (h.type != FP_SECAGG_MSG_MASKED)
        return fp_seterr(FP_EFORMAT, "secagg: not a MASKED message");
    sa_rd r = {msg + FP_SECAGG_HEADER_BYTES, len - FP_SECAGG_HEADER_BYTES, 0, "MASKED"};
    uint32_t n;
    if ((rc = sa_rd_count(&r, &n, 4)))
        return rc;
    if (n != d)
        return fp_seterr(FP_EFORMAT, "secagg: MASKED vector has %u elements, expected %zu", n, d);
    for (size_t i = 0; i < d; i++)
        y[i] = sa_get32(r.p + r.off + 4 * i);
    r.off += 4 * d;
    return sa_rd_end(&r);
}
