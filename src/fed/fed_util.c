/* Small helpers of the federation rounds: clocks, envelope encoding, JSON
 * lookups, stage names and a ChaCha20-based deterministic RNG. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "error_internal.h"
#include "fed_internal.h"

int64_t fed_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double fed_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void fed_sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void fed_log(const char *fmt, ...)
{
    const char *q = getenv("FP_QUIET");
    if (q && q[0] && strcmp(q, "0"))
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void fed_keyname(char out[20], const uint8_t key[32])
{
    fp_hex_encode(out, 20, key, 4);
}

uint64_t fed_seq_start(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* microseconds since the epoch, shifted so that a process can send 2^10
     * messages per microsecond of its start time before the next process's
     * numbers could overlap: restarts keep seq increasing. */
    return ((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u) << 10;
}

void fed_header(fp_msg_header *h, const uint8_t session[16], uint32_t round, uint8_t stage, uint16_t type,
                uint8_t kind, const uint8_t sender[32], uint64_t seq)
{
    memset(h, 0, sizeof *h);
    memcpy(h->session, session, 16);
    h->round = round;
    h->stage = stage;
    h->type = type;
    h->kind = kind;
    memcpy(h->sender, sender, 32);
    h->seq = seq;
}

int fed_encode_json(uint8_t **out, size_t *out_len, const fp_msg_header *h, const cJSON *obj,
                    const fp_identity *id)
{
    char *txt = cJSON_PrintUnformatted(obj);
    if (!txt)
        return fp_seterr(FP_ENOMEM, "encoding %s: out of memory", fp_msg_type_name(h->type));
    fp_msg_header hh = *h;
    hh.kind = FP_PAYLOAD_JSON;
    int rc = fp_msg_encode_alloc(out, out_len, &hh, txt, strlen(txt), id);
    free(txt);
    return rc;
}

int fed_encode_bytes(uint8_t **out, size_t *out_len, const fp_msg_header *h, const void *p, size_t n,
                     const fp_identity *id)
{
    fp_msg_header hh = *h;
    hh.kind = FP_PAYLOAD_BYTES;
    return fp_msg_encode_alloc(out, out_len, &hh, p, n, id);
}

int fed_encode_f32(uint8_t **out, size_t *out_len, const fp_msg_header *h, const float *v, size_t n,
                   const fp_identity *id)
{
    fp_msg_header hh = *h;
    hh.kind = FP_PAYLOAD_TENSOR;
    hh.dtype = FP_DTYPE_F32;
    hh.ndim = 1;
    hh.dims[0] = n;
    /* Little-endian hosts only (the project's targets); the wire is LE. */
    return fp_msg_encode_alloc(out, out_len, &hh, v, n * sizeof(float), id);
}

double fed_jnum(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

const char *fed_jstr(const cJSON *o, const char *k, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : def;
}

int fed_jbool(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

int fed_stage_from_name(const char *s)
{
    static const struct { const char *n; int st; } t[] = {
        {"config", FP_STAGE_CONFIG}, {"train", FP_STAGE_TRAIN},   {"advertise", FP_STAGE_ADVERTISE},
        {"share", FP_STAGE_SHARE},   {"masked", FP_STAGE_MASKED}, {"unmask", FP_STAGE_UNMASK}};
    for (size_t i = 0; s && i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].n))
            return t[i].st;
    return -1;
}

void fed_rng_init(fed_rng *r, const uint8_t key[32])
{
    memcpy(r->key, key, 32);
    r->counter = 0;
}

void fed_rng_seed(fed_rng *r, uint64_t seed, uint64_t stream)
{
    uint8_t in[16];
    for (int i = 0; i < 8; i++) {
        in[i] = (uint8_t)(seed >> (8 * i));
        in[8 + i] = (uint8_t)(stream >> (8 * i));
    }
    crypto_generichash(r->key, 32, in, sizeof in, NULL, 0);
    r->counter = 0;
}

uint64_t fed_rng_u64(fed_rng *r)
{
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    for (int i = 0; i < 8; i++)
        nonce[i] = (uint8_t)(r->counter >> (8 * i));
    r->counter++;
    uint8_t b[8];
    crypto_stream_chacha20(b, sizeof b, nonce, r->key);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

double fed_rng_uniform(fed_rng *r) { return (double)(fed_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

double fed_rng_normal(fed_rng *r)
{
    double u1 = fed_rng_uniform(r), u2 = fed_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
