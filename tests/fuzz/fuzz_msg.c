/* libFuzzer target for the message decoder and the other peer-facing parsers
 * of the transport (chunk frames, clients.json). Besides not crashing, a
 * decoded message must satisfy the invariants the rest of the code relies on;
 * a violation aborts so the fuzzer reports it. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fedproxy/chunk.h"
#include "fedproxy/msg.h"
#include "fedproxy/transport.h"
#include "fuzz_msg.h"

const fp_identity *fuzz_msg_key(void)
{
    static fp_identity id;
    static int ready;
    if (!ready) {
        unsigned char seed[FP_IDENTITY_SEEDBYTES];
        memset(seed, 0xf5, sizeof seed);
        if (sodium_init() < 0 || fp_identity_from_seed(&id, seed) != 0)
            abort();
        ready = 1;
    }
    return &id;
}

static const fp_json_field schema[] = {
    {"round", FP_JSON_UINT, 1},
    {"lr", FP_JSON_NUMBER, 0},
    {"name", FP_JSON_STRING, 0},
    {"clients", FP_JSON_ARRAY, 0},
    {"opts", FP_JSON_OBJECT, 0},
    {"secagg", FP_JSON_BOOL, 0},
};

static void check_decoded(const fp_msg *m, const uint8_t *buf, size_t len)
{
    /* the payload lies inside the buffer, right after the header */
    if (m->payload != buf + FP_MSG_HEADER_BYTES || m->payload_len != len - FP_MSG_OVERHEAD ||
        m->h.payload_len != m->payload_len)
        abort();
    if (m->h.type < FP_MSG_TYPE_MIN || m->h.type > FP_MSG_TYPE_MAX || m->h.stage > FP_STAGE_MAX)
        abort();
    if (m->h.kind == FP_PAYLOAD_TENSOR) {
        uint64_t n = fp_msg_dtype_size(m->h.dtype);
        for (unsigned i = 0; i < m->h.ndim; i++)
            n *= m->h.dims[i];
        if (n != m->payload_len || m->h.ndim < 1 || m->h.ndim > FP_MSG_MAX_DIMS)
            abort();
    }
    cJSON *j = NULL;
    int rc = fp_msg_json(&j, m, schema, sizeof schema / sizeof schema[0]);
    if ((rc == 0) != (j != NULL) || (rc == 0 && m->h.kind != FP_PAYLOAD_JSON))
        abort();
    cJSON_Delete(j);
}

static void fuzz_decode(const uint8_t *p, size_t n)
{
    /* a copy of exactly n bytes, so ASan sees any read past the end */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    memcpy(buf, p, n);
    fp_msg m;
    if (fp_msg_decode(&m, buf, n, 1 << 20) == 0)
        check_decoded(&m, buf, n);
    free(buf);
}

static void fuzz_signed(const uint8_t *p, size_t n)
{
    const fp_identity *id = fuzz_msg_key();
    if (n < FP_MSG_HEADER_BYTES || n > (1 << 20))
        return fuzz_decode(p, n);
    uint8_t *buf = malloc(n + FP_MSG_SIG_BYTES);
    if (!buf)
        return;
    memcpy(buf, p, n);
    memcpy(buf + 32, id->pk, 32); /* the sender field */
    crypto_sign_detached(buf + n, NULL, buf, n, id->sk);
    fp_msg m;
    if (fp_msg_decode(&m, buf, n + FP_MSG_SIG_BYTES, 1 << 20) == 0)
        check_decoded(&m, buf, n + FP_MSG_SIG_BYTES);
    free(buf);
}

static void fuzz_chunk(const uint8_t *p, size_t n)
{
    fp_chunk_opts o;
    fp_chunk_opts_default(&o);
    o.max_total = 1 << 16;
    fp_chunk_rx *rx = NULL;
    if (fp_chunk_rx_create(&rx, 0, &o) != 0)
        return;
    while (n >= 2) {
        size_t fl = (size_t)p[0] | (size_t)p[1] << 8;
        p += 2, n -= 2;
        if (fl > n)
            fl = n;
        uint8_t *frame = malloc(fl ? fl : 1);
        if (!frame)
            break;
        memcpy(frame, p, fl);
        uint8_t reply[FP_CHUNK_CTRL_BYTES];
        size_t rl = 0;
        fp_chunk_rx_input(rx, frame, fl, reply, sizeof reply, &rl);
        free(frame);
        if (rl > sizeof reply || fp_chunk_rx_next(rx) > (1 << 16))
            abort();
        p += fl, n -= fl;
    }
    if (fp_chunk_rx_done(rx) == 1) {
        void *d = NULL;
        size_t dl = 0;
        if (fp_chunk_rx_take(rx, &d, &dl) != 0 || dl > (1 << 16))
            abort();
        free(d);
    }
    fp_chunk_rx_destroy(rx);
}

static void fuzz_allowlist(const uint8_t *p, size_t n)
{
    fp_allowlist *a = NULL;
    if (fp_allowlist_parse(&a, (const char *)p, n, "fuzz") == 0) {
        for (size_t i = 0; i < fp_allowlist_count(a); i++)
            if (fp_allowlist_find(a, fp_allowlist_key(a, i)) != (long)i)
                abort();
        fp_allowlist_free(a);
    } else if (a) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % FUZZ_MODES) {
    case FUZZ_DECODE: fuzz_decode(p, n); break;
    case FUZZ_SIGNED: fuzz_signed(p, n); break;
    case FUZZ_CHUNK: fuzz_chunk(p, n); break;
    default: fuzz_allowlist(p, n); break;
    }
    return 0;
}
