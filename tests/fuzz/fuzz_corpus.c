/* Seed corpus for the message fuzzer: valid messages of every payload kind,
 * and systematic and random mutations of them. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fedproxy/chunk.h"
#include "fedproxy/msg.h"
#include "fuzz_msg.h"

/* Emits mode byte + body. */
static void emit_mode(fuzz_emit_fn emit, void *ctx, int mode, const uint8_t *p, size_t n, int expect)
{
    uint8_t *buf = malloc(n + 1);
    if (!buf)
        abort();
    buf[0] = (uint8_t)mode;
    memcpy(buf + 1, p, n);
    emit(ctx, buf, n + 1, expect);
    free(buf);
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static uint8_t *encode(size_t *len, uint16_t type, uint8_t kind, uint8_t dtype, uint8_t ndim,
                       const uint64_t *dims, const void *payload, size_t plen)
{
    fp_msg_header h;
    memset(&h, 0, sizeof h);
    memset(h.session, 0xab, sizeof h.session);
    h.round = 3;
    h.stage = FP_STAGE_TRAIN;
    h.type = type;
    h.kind = kind;
    h.dtype = dtype;
    h.ndim = ndim;
    for (unsigned i = 0; i < ndim; i++)
        h.dims[i] = dims[i];
    memcpy(h.sender, fuzz_msg_key()->pk, 32);
    h.seq = 9;
    uint8_t *buf = NULL;
    if (fp_msg_encode_alloc(&buf, len, &h, payload, plen, fuzz_msg_key()) != 0)
        abort();
    return buf;
}

static void mutations(fuzz_emit_fn emit, void *ctx, const uint8_t *msg, size_t len)
{
    emit_mode(emit, ctx, FUZZ_DECODE, msg, len, 1);
    uint8_t *m = malloc(len + 1);
    if (!m)
        abort();
    /* every truncation, and one byte appended */
    for (size_t cut = 0; cut < len; cut++)
        emit_mode(emit, ctx, FUZZ_DECODE, msg, cut, 0);
    memcpy(m, msg, len);
    m[len] = 0;
    emit_mode(emit, ctx, FUZZ_DECODE, m, len + 1, 0);
    /* every header byte set to 0, 0xff and +1; every bit of a few payload and
     * signature bytes flipped: all must be refused (the signature covers all) */
    static const int ops[3] = {0, 0xff, -1};
    for (size_t off = 0; off < FP_MSG_HEADER_BYTES; off++)
        for (int k = 0; k < 3; k++) {
            memcpy(m, msg, len);
            uint8_t v = ops[k] < 0 ? (uint8_t)(msg[off] + 1) : (uint8_t)ops[k];
            if (v == msg[off])
                continue;
            m[off] = v;
            emit_mode(emit, ctx, FUZZ_DECODE, m, len, 0);
        }
    for (size_t off = FP_MSG_HEADER_BYTES; off < len; off += 7)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(m, msg, len);
            m[off] ^= (uint8_t)(1u << bit);
            emit_mode(emit, ctx, FUZZ_DECODE, m, len, 0);
        }
    /* the header+payload re-signed: reaches the schema checks */
    emit_mode(emit, ctx, FUZZ_SIGNED, msg, len - FP_MSG_SIG_BYTES, -1);
    for (int i = 0; i < 64; i++) {
        memcpy(m, msg, len);
        size_t off = rnd() % (len - FP_MSG_SIG_BYTES);
        m[off] = (uint8_t)rnd();
        emit_mode(emit, ctx, FUZZ_SIGNED, m, len - FP_MSG_SIG_BYTES, -1);
    }
    /* random garbage in the unsigned mode */
    for (int i = 0; i < 64; i++) {
        memcpy(m, msg, len);
        for (int k = 0; k < 4; k++)
            m[rnd() % len] = (uint8_t)rnd();
        emit_mode(emit, ctx, FUZZ_DECODE, m, rnd() % (len + 1), -1);
    }
    free(m);
}

static void chunk_seeds(fuzz_emit_fn emit, void *ctx)
{
    /* a whole small transfer, frames length-prefixed as fuzz_chunk reads them */
    uint8_t data[3000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31);
    fp_chunk_opts o;
    fp_chunk_opts_default(&o);
    o.chunk_size = FP_CHUNK_SIZE_MIN;
    fp_chunk_tx *tx = NULL;
    if (fp_chunk_tx_create(&tx, 42, data, sizeof data, &o) != 0)
        abort();
    uint8_t stream[8192];
    size_t sl = 0;
    uint8_t frame[FP_CHUNK_DATA_HDR_BYTES + FP_CHUNK_SIZE_MIN];
    size_t fl;
    uint8_t resume[FP_CHUNK_DATA_HDR_BYTES] = {FP_CHUNK_MAGIC0, FP_CHUNK_MAGIC1, FP_CHUNK_MAGIC2,
                                               FP_CHUNK_MAGIC3, FP_CHUNK_RESUME, 0, 0, 0, 42};
    for (int step = 0; step < 8; step++) {
        while (fp_chunk_tx_poll(tx, 0, frame, sizeof frame, &fl) == 0 && fl) {
            stream[sl] = (uint8_t)fl;
            stream[sl + 1] = (uint8_t)(fl >> 8);
            memcpy(stream + sl + 2, frame, fl);
            sl += 2 + fl;
        }
        if (step == 0)
            fp_chunk_tx_input(tx, resume, sizeof resume, 0);
        else
            for (uint64_t k = 1; k <= 3; k++) {
                resume[4] = FP_CHUNK_ACK;
                resume[16] = (uint8_t)k;
                fp_chunk_tx_input(tx, resume, sizeof resume, 0);
            }
    }
    fp_chunk_tx_destroy(tx);
    emit_mode(emit, ctx, FUZZ_CHUNK, stream, sl, -1);
    for (int i = 0; i < 32; i++) {
        uint8_t m[8192];
        memcpy(m, stream, sl);
        m[rnd() % sl] = (uint8_t)rnd();
        emit_mode(emit, ctx, FUZZ_CHUNK, m, sl, -1);
    }
}

static void allowlist_seeds(fuzz_emit_fn emit, void *ctx)
{
    char hex[65], json[512];
    sodium_bin2hex(hex, sizeof hex, fuzz_msg_key()->pk, 32);
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"name\": \"a\", \"key\": \"%s\"}]}", hex);
    emit_mode(emit, ctx, FUZZ_ALLOWLIST, (const uint8_t *)json, strlen(json), -1);
    const char *bad[] = {"{}", "[]", "{\"version\": 1, \"clients\": [{}]}", "{\"version\": 1e400}",
                         "{\"version\": 1, \"clients\": [{\"key\": \"00\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        emit_mode(emit, ctx, FUZZ_ALLOWLIST, (const uint8_t *)bad[i], strlen(bad[i]), -1);
}

void fuzz_msg_corpus(fuzz_emit_fn emit, void *ctx)
{
    size_t len;
    const char *json = "{\"round\": 3, \"lr\": 0.001, \"name\": \"c1\", \"opts\": {\"a\": [1, 2]}}";
    uint8_t *m = encode(&len, FP_MSG_ROUND_START, FP_PAYLOAD_JSON, 0, 0, NULL, json, strlen(json));
    mutations(emit, ctx, m, len);
    free(m);

    float t[2 * 3 * 2];
    for (int i = 0; i < 12; i++)
        t[i] = (float)i;
    uint64_t dims[3] = {2, 3, 2};
    m = encode(&len, FP_MSG_UPDATE, FP_PAYLOAD_TENSOR, FP_DTYPE_F32, 3, dims, t, sizeof t);
    mutations(emit, ctx, m, len);
    free(m);

    m = encode(&len, FP_MSG_PING, FP_PAYLOAD_NONE, 0, 0, NULL, NULL, 0);
    mutations(emit, ctx, m, len);
    free(m);

    m = encode(&len, FP_MSG_SA_SHARE_KEYS, FP_PAYLOAD_BYTES, 0, 0, NULL, "sealed", 6);
    mutations(emit, ctx, m, len);
    free(m);

    chunk_seeds(emit, ctx);
    allowlist_seeds(emit, ctx);
    /* pure noise of assorted sizes in every mode */
    uint8_t noise[600];
    for (int i = 0; i < 200; i++) {
        size_t n = rnd() % sizeof noise;
        for (size_t k = 0; k < n; k++)
            noise[k] = (uint8_t)rnd();
        if (n)
            noise[0] = (uint8_t)(i % FUZZ_MODES);
        emit(ctx, noise, n, -1);
    }
}
