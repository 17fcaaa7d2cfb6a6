/* The signed envelope: round trips, every malformed case the decoder must
 * refuse, signatures, and the strict JSON schema helper. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fedproxy/msg.h"
#include "fp_test.h"

static fp_identity alice, mallory;

static fp_msg_header header(uint16_t type, uint8_t stage, uint8_t kind)
{
    fp_msg_header h;
    memset(&h, 0, sizeof h);
    memset(h.session, 0x5a, sizeof h.session);
    h.round = 7;
    h.stage = stage;
    h.type = type;
    memcpy(h.sender, alice.pk, sizeof h.sender);
    h.seq = 42;
    h.kind = kind;
    return h;
}

static const char *json_text = "{\"rank\": 8, \"lr\": 0.0002, \"name\": \"client-1\", \"secagg\": true}";
static const fp_json_field round_schema[] = {
    {"rank", FP_JSON_UINT, 1},
    {"lr", FP_JSON_NUMBER, 1},
    {"name", FP_JSON_STRING, 0},
    {"secagg", FP_JSON_BOOL, 0},
};

/* Encodes a JSON control message into a malloc'd buffer. */
static uint8_t *control_msg(size_t *len, const char *json)
{
    fp_msg_header h = header(FP_MSG_ROUND_START, FP_STAGE_CONFIG, FP_PAYLOAD_JSON);
    uint8_t *buf = NULL;
    CHECK_OK(fp_msg_encode_alloc(&buf, len, &h, json, strlen(json), &alice));
    return buf;
}

static void test_control_roundtrip(void)
{
    size_t len;
    uint8_t *buf = control_msg(&len, json_text);
    CHECK(len == FP_MSG_OVERHEAD + strlen(json_text));
    fp_msg m;
    CHECK_OK(fp_msg_decode(&m, buf, len, FP_MSG_MAX_PAYLOAD_DEFAULT));
    CHECK(m.h.type == FP_MSG_ROUND_START && m.h.stage == FP_STAGE_CONFIG && m.h.round == 7);
    CHECK(m.h.seq == 42 && m.h.kind == FP_PAYLOAD_JSON && memcmp(m.h.sender, alice.pk, 32) == 0);
    CHECK(m.payload_len == strlen(json_text) && memcmp(m.payload, json_text, m.payload_len) == 0);
    CHECK(m.payload == buf + FP_MSG_HEADER_BYTES); /* zero-copy */
    cJSON *j = NULL;
    CHECK_OK(fp_msg_json(&j, &m, round_schema, 4));
    CHECK(j && cJSON_GetObjectItem(j, "rank")->valuedouble == 8);
    cJSON_Delete(j);
    free(buf);

    /* NONE payload */
    fp_msg_header h = header(FP_MSG_PING, FP_STAGE_JOIN, FP_PAYLOAD_NONE);
    uint8_t small[FP_MSG_OVERHEAD];
    CHECK_OK(fp_msg_encode(small, sizeof small, &len, &h, NULL, 0, &alice));
    CHECK_OK(fp_msg_decode(&m, small, len, 0));
    CHECK(m.payload_len == 0 && m.h.type == FP_MSG_PING);
    /* too small a buffer */
    CHECK_ERR(fp_msg_encode(small, sizeof small - 1, &len, &h, NULL, 0, &alice), FP_EINVAL);
}

static void test_tensor_roundtrip(void)
{
    float data[3 * 5];
    for (int i = 0; i < 15; i++)
        data[i] = (float)i * 0.5f - 3.0f;
    fp_msg_header h = header(FP_MSG_UPDATE, FP_STAGE_TRAIN, FP_PAYLOAD_TENSOR);
    h.dtype = FP_DTYPE_F32;
    h.ndim = 2;
    h.dims[0] = 3;
    h.dims[1] = 5;
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(fp_msg_encode_alloc(&buf, &len, &h, data, sizeof data, &alice));
    fp_msg m;
    CHECK_OK(fp_msg_decode(&m, buf, len, sizeof data));
    CHECK(m.h.dtype == FP_DTYPE_F32 && m.h.ndim == 2 && m.h.dims[0] == 3 && m.h.dims[1] == 5);
    CHECK(m.h.dims[2] == 0 && m.h.dims[3] == 0 && m.h.payload_len == sizeof data);
    CHECK(memcmp(m.payload, data, sizeof data) == 0);
    /* one byte over the receiver's limit */
    CHECK_ERR(fp_msg_decode(&m, buf, len, sizeof data - 1), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "exceeds the limit") != NULL);
    /* a tensor payload is not JSON */
    CHECK_OK(fp_msg_decode(&m, buf, len, sizeof data));
    cJSON *j = (cJSON *)1;
    CHECK_ERR(fp_msg_json(&j, &m, round_schema, 4), FP_EFORMAT);
    CHECK(j == NULL);
    free(buf);

    /* 4-D u8 and 1-D i64 */
    uint8_t bytes[2 * 3 * 1 * 2];
    memset(bytes, 7, sizeof bytes);
    h.dtype = FP_DTYPE_U8;
    h.ndim = 4;
    h.dims[0] = 2, h.dims[1] = 3, h.dims[2] = 1, h.dims[3] = 2;
    CHECK_OK(fp_msg_encode_alloc(&buf, &len, &h, bytes, sizeof bytes, &alice));
    CHECK_OK(fp_msg_decode(&m, buf, len, 1 << 20));
    CHECK(m.h.ndim == 4 && m.h.dims[3] == 2);
    free(buf);
}

/* Every prefix of a valid message, and the message with a byte appended, is
 * refused as malformed (never read out of bounds: ASan watches). */
static void test_truncations(void)
{
    size_t len;
    uint8_t *buf = control_msg(&len, json_text);
    int all = 1;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size so ASan sees overreads */
        memcpy(copy, buf, cut);
        fp_msg m;
        fp_errclear();
        int rc = fp_msg_decode(&m, copy, cut, FP_MSG_MAX_PAYLOAD_DEFAULT);
        if (rc != FP_EFORMAT || !fp_errmsg()[0]) {
            all = 0;
            fprintf(stderr, "truncated at %zu: rc %d\n", cut, rc);
        }
        free(copy);
    }
    CHECK(all);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    fp_msg m;
    CHECK_ERR(fp_msg_decode(&m, longer, len + 1, FP_MSG_MAX_PAYLOAD_DEFAULT), FP_EFORMAT);
    free(longer);
    free(buf);
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Decodes buf with one field patched; the format checks come before the
 * signature, so a patched header is FP_EFORMAT, not FP_ECRYPTO. */
static int decode_patched(const uint8_t *buf, size_t len, size_t off, const uint8_t *bytes, size_t n)
{
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    memcpy(copy + off, bytes, n);
    fp_msg m;
    fp_errclear();
    int rc = fp_msg_decode(&m, copy, len, FP_MSG_MAX_PAYLOAD_DEFAULT);
    free(copy);
    return rc;
}

static void test_malformed_header(void)
{
    size_t len;
    uint8_t *buf = control_msg(&len, json_text);
    uint8_t v8;
    uint8_t v16[2], v64[8];
#define PATCH8(off, val) (v8 = (uint8_t)(val), decode_patched(buf, len, (off), &v8, 1))
    CHECK(PATCH8(0, 'X') == FP_EFORMAT && strstr(fp_errmsg(), "magic"));
    CHECK(PATCH8(3, '2') == FP_EFORMAT);
    CHECK(PATCH8(4, 2) == FP_EFORMAT && strstr(fp_errmsg(), "version"));
    CHECK(PATCH8(4, 0) == FP_EFORMAT);
    CHECK(PATCH8(5, 1) == FP_EFORMAT && strstr(fp_errmsg(), "flags"));
    v16[0] = 0, v16[1] = 0;
    CHECK(decode_patched(buf, len, 6, v16, 2) == FP_EFORMAT && strstr(fp_errmsg(), "type"));
    v16[0] = FP_MSG_TYPE_MAX + 1;
    CHECK(decode_patched(buf, len, 6, v16, 2) == FP_EFORMAT);
    v16[0] = 0xff, v16[1] = 0xff;
    CHECK(decode_patched(buf, len, 6, v16, 2) == FP_EFORMAT);
    CHECK(PATCH8(28, FP_STAGE_MAX + 1) == FP_EFORMAT && strstr(fp_errmsg(), "stage"));
    CHECK(PATCH8(28, 0xff) == FP_EFORMAT);
    CHECK(PATCH8(29, FP_PAYLOAD_KIND_MAX + 1) == FP_EFORMAT && strstr(fp_errmsg(), "kind"));
    /* dtype / ndim / dims on a JSON payload */
    CHECK(PATCH8(30, FP_DTYPE_F32) == FP_EFORMAT && strstr(fp_errmsg(), "non-tensor"));
    CHECK(PATCH8(31, 1) == FP_EFORMAT);
    put64(v64, 1);
    CHECK(decode_patched(buf, len, 80 + 8 * 3, v64, 8) == FP_EFORMAT);
    /* NONE kind with payload bytes */
    CHECK(PATCH8(29, FP_PAYLOAD_NONE) == FP_EFORMAT);
    /* lying payload lengths: one more, one less, zero, huge */
    size_t plen = len - FP_MSG_OVERHEAD;
    uint64_t lies[] = {plen + 1, plen - 1, 0, (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - FP_MSG_OVERHEAD + 1};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        put64(v64, lies[i]);
        CHECKF(decode_patched(buf, len, 72, v64, 8) == FP_EFORMAT, "payload_len lie %llu",
               (unsigned long long)lies[i]);
    }
    /* the message names the claimed sender */
    char hex[17];
    sodium_bin2hex(hex, sizeof hex, alice.pk, 8);
    put64(v64, plen + 1);
    decode_patched(buf, len, 72, v64, 8);
    CHECK(strstr(fp_errmsg(), hex) != NULL);
    free(buf);
#undef PATCH8
}

static void test_bad_tensors(void)
{
    /* A valid 2x3 f32 tensor, then broken shapes patched into it. */
    float data[6] = {1, 2, 3, 4, 5, 6};
    fp_msg_header h = header(FP_MSG_MODEL, FP_STAGE_CONFIG, FP_PAYLOAD_TENSOR);
    h.dtype = FP_DTYPE_F32;
    h.ndim = 2;
    h.dims[0] = 2;
    h.dims[1] = 3;
    uint8_t *buf;
    size_t len;
    CHECK_OK(fp_msg_encode_alloc(&buf, &len, &h, data, sizeof data, &alice));
    uint8_t v8, v64[8];
    CHECK((v8 = 0, decode_patched(buf, len, 30, &v8, 1)) == FP_EFORMAT && strstr(fp_errmsg(), "dtype"));
    CHECK((v8 = FP_DTYPE_MAX + 1, decode_patched(buf, len, 30, &v8, 1)) == FP_EFORMAT);
    /* f16 needs 12 bytes, the payload has 24 */
    CHECK((v8 = FP_DTYPE_F16, decode_patched(buf, len, 30, &v8, 1)) == FP_EFORMAT &&
          strstr(fp_errmsg(), "needs 12 bytes"));
    CHECK((v8 = 0, decode_patched(buf, len, 31, &v8, 1)) == FP_EFORMAT && strstr(fp_errmsg(), "ndim"));
    CHECK((v8 = 5, decode_patched(buf, len, 31, &v8, 1)) == FP_EFORMAT);
    CHECK((v8 = 3, decode_patched(buf, len, 31, &v8, 1)) == FP_EFORMAT); /* dims[2] == 0 */
    CHECK((v8 = 1, decode_patched(buf, len, 31, &v8, 1)) == FP_EFORMAT); /* dims[1] beyond ndim */
    put64(v64, 4);
    CHECK(decode_patched(buf, len, 80, v64, 8) == FP_EFORMAT); /* 4x3 != 2x3 */
    put64(v64, 0);
    CHECK(decode_patched(buf, len, 80, v64, 8) == FP_EFORMAT && strstr(fp_errmsg(), "is 0"));
    /* dims whose product overflows 64 bits must not wrap around to the length */
    put64(v64, (uint64_t)1 << 62);
    CHECK(decode_patched(buf, len, 80, v64, 8) == FP_EFORMAT);
    put64(v64, ((uint64_t)1 << 62) + 6); /* 4 * 2 * (2^62+6) wraps past 2^64 */
    CHECK(decode_patched(buf, len, 88, v64, 8) == FP_EFORMAT);
    free(buf);

    /* encode refuses the same mistakes */
    uint8_t out[256];
    h.dims[1] = 4;
    CHECK_ERR(fp_msg_encode(out, sizeof out, &len, &h, data, sizeof data, &alice), FP_EFORMAT);
    h.dims[1] = 3;
    h.dtype = 99;
    CHECK_ERR(fp_msg_encode(out, sizeof out, &len, &h, data, sizeof data, &alice), FP_EFORMAT);
    h.dtype = FP_DTYPE_F32;
    h.type = 0;
    CHECK_ERR(fp_msg_encode(out, sizeof out, &len, &h, data, sizeof data, &alice), FP_EFORMAT);
    /* a message is only signed by its own sender */
    h.type = FP_MSG_MODEL;
    CHECK_ERR(fp_msg_encode(out, sizeof out, &len, &h, data, sizeof data, &mallory), FP_EINVAL);
}

static void test_signatures(void)
{
    size_t len;
    uint8_t *buf = control_msg(&len, json_text);
    fp_msg m;
    /* flip one bit in the payload, the seq, the round, the sender, the signature */
    size_t offs[] = {FP_MSG_HEADER_BYTES + 3, 64, 24, 40, len - 1, len - FP_MSG_SIG_BYTES};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        buf[offs[i]] ^= 0x10;
        fp_errclear();
        int rc = fp_msg_decode(&m, buf, len, FP_MSG_MAX_PAYLOAD_DEFAULT);
        CHECKF(rc == FP_ECRYPTO && fp_errmsg()[0], "bit flip at %zu: rc %d", offs[i], rc);
        buf[offs[i]] ^= 0x10;
    }
    CHECK_OK(fp_msg_decode(&m, buf, len, FP_MSG_MAX_PAYLOAD_DEFAULT));

    /* Mallory signs a message that names Alice as sender: refused. */
    uint8_t *forged = malloc(len);
    memcpy(forged, buf, len);
    crypto_sign_detached(forged + len - FP_MSG_SIG_BYTES, NULL, forged, len - FP_MSG_SIG_BYTES,
                         mallory.sk);
    CHECK_ERR(fp_msg_decode(&m, forged, len, FP_MSG_MAX_PAYLOAD_DEFAULT), FP_ECRYPTO);
    CHECK(strstr(fp_errmsg(), "bad signature") != NULL);
    free(forged);

    /* Every single-bit flip anywhere is refused, one way or the other. */
    int all = 1;
    for (size_t byte = 0; byte < len; byte++)
        for (int bit = 0; bit < 8; bit++) {
            buf[byte] ^= (uint8_t)(1u << bit);
            int rc = fp_msg_decode(&m, buf, len, FP_MSG_MAX_PAYLOAD_DEFAULT);
            buf[byte] ^= (uint8_t)(1u << bit);
            if (rc != FP_EFORMAT && rc != FP_ECRYPTO) {
                all = 0;
                fprintf(stderr, "flip %zu.%d accepted (rc %d)\n", byte, bit, rc);
            }
        }
    CHECK(all);
    free(buf);
}

static void test_json_schema(void)
{
    static const struct {
        const char *json;
        const char *expect; /* substring of the message; NULL = accepted */
    } cases[] = {
        {"{\"rank\": 8, \"lr\": 1e-4}", NULL},
        {" {\"rank\": 0, \"lr\": 1, \"name\": \"x\"}\n", NULL},
        {"{\"rank\": 8}", "missing required field \"lr\""},
        {"{\"rank\": 8, \"lr\": 0.1, \"extra\": 1}", "unknown field \"extra\""},
        {"{\"rank\": \"8\", \"lr\": 0.1}", "\"rank\" must be a non-negative integer"},
        {"{\"rank\": -1, \"lr\": 0.1}", "\"rank\" must be a non-negative integer"},
        {"{\"rank\": 1.5, \"lr\": 0.1}", "\"rank\" must be a non-negative integer"},
        {"{\"rank\": 1e300, \"lr\": 0.1}", "\"rank\" must be a non-negative integer"},
        {"{\"rank\": 8, \"lr\": 0.1, \"secagg\": 1}", "\"secagg\" must be a boolean"},
        {"{\"rank\": 8, \"lr\": 0.1, \"name\": null}", "\"name\" must be a string"},
        {"{\"rank\": 8, \"lr\": 0.1, \"rank\": 9}", "appears twice"},
        {"{\"rank\": 8, \"lr\": 0.1} x", "trailing bytes"},
        {"{\"rank\": 8, \"lr\": 0.1}{}", "trailing bytes"},
        {"[1, 2]", "expected a JSON object"},
        {"{\"rank\": 8, \"lr\": ", "invalid JSON"},
        {"", NULL /* handled below: encode refuses an empty JSON payload */},
    };
    for (size_t i = 0; i + 1 < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *buf = control_msg(&len, cases[i].json);
        fp_msg m;
        CHECK_OK(fp_msg_decode(&m, buf, len, FP_MSG_MAX_PAYLOAD_DEFAULT));
        cJSON *j = NULL;
        fp_errclear();
        int rc = fp_msg_json(&j, &m, round_schema, 4);
        if (!cases[i].expect) {
            CHECKF(rc == 0 && j, "case %zu: %s", i, fp_errmsg());
        } else {
            CHECKF(rc == FP_EFORMAT && !j && strstr(fp_errmsg(), cases[i].expect) &&
                       strstr(fp_errmsg(), "ROUND_START from"),
                   "case %zu: rc %d, message '%s'", i, rc, fp_errmsg());
        }
        cJSON_Delete(j);
        free(buf);
    }
    /* an embedded NUL would hide the rest from cJSON */
    const char nul[] = "{\"rank\": 8, \"lr\": 0.1}\0{\"x\":1}";
    fp_msg_header h = header(FP_MSG_ROUND_START, FP_STAGE_CONFIG, FP_PAYLOAD_JSON);
    uint8_t *buf;
    size_t len;
    CHECK_OK(fp_msg_encode_alloc(&buf, &len, &h, nul, sizeof nul - 1, &alice));
    fp_msg m;
    CHECK_OK(fp_msg_decode(&m, buf, len, FP_MSG_MAX_PAYLOAD_DEFAULT));
    cJSON *j = NULL;
    CHECK_ERR(fp_msg_json(&j, &m, round_schema, 4), FP_EFORMAT);
    free(buf);
    uint8_t out[FP_MSG_OVERHEAD];
    CHECK_ERR(fp_msg_encode(out, sizeof out, &len, &h, "", 0, &alice), FP_EFORMAT);
}

int main(void)
{
    unsigned char seed[32];
    memset(seed, 1, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&alice, seed));
    memset(seed, 2, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&mallory, seed));
    test_control_roundtrip();
    test_tensor_roundtrip();
    test_truncations();
    test_malformed_header();
    test_bad_tensors();
    test_signatures();
    test_json_schema();
    CHECK(strcmp(fp_msg_type_name(FP_MSG_UPDATE), "UPDATE") == 0);
    CHECK(strcmp(fp_msg_stage_name(FP_STAGE_MASKED), "MASKED") == 0);
    CHECK(strcmp(fp_msg_type_name(999), "?") == 0);
    fp_identity_wipe(&alice);
    fp_identity_wipe(&mallory);
    return fp_test_report("test_msg");
}
