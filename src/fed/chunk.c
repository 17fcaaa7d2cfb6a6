/* Chunked transfer: the sender and receiver state machines (see fedproxy/chunk.h).
 * They only build and parse frames; chunk_drive.c moves them over the transport. */
#include "fedproxy/chunk.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"

_Static_assert(FP_CHUNK_HASH_BYTES == crypto_generichash_BYTES, "BLAKE2b-256");

enum { ST_IDLE, ST_WAIT_RESUME, ST_RUNNING, ST_DONE, ST_FAILED };

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

static void put_hdr(uint8_t *f, unsigned type, uint64_t id)
{
    f[0] = FP_CHUNK_MAGIC0;
    f[1] = FP_CHUNK_MAGIC1;
    f[2] = FP_CHUNK_MAGIC2;
    f[3] = FP_CHUNK_MAGIC3;
    f[4] = (uint8_t)type;
    f[5] = f[6] = f[7] = 0;
    put64(f + 8, id);
}

/* A 24-byte control frame carrying one u64. */
static size_t put_ctrl(uint8_t *f, unsigned type, uint64_t id, uint64_t v)
{
    put_hdr(f, type, id);
    put64(f + 16, v);
    return FP_CHUNK_DATA_HDR_BYTES;
}

static size_t put_abort(uint8_t *f, uint64_t id, int code)
{
    put_hdr(f, FP_CHUNK_ABORT, id);
    put32(f + 16, (uint32_t)code);
    put32(f + 20, 0);
    return FP_CHUNK_DATA_HDR_BYTES;
}

int fp_chunk_is_frame(const void *frame, size_t len, unsigned *type)
{
    const uint8_t *f = frame;
    if (type)
        *type = 0;
    if (!f || len < FP_CHUNK_HDR_BYTES || f[0] != FP_CHUNK_MAGIC0 || f[1] != FP_CHUNK_MAGIC1 ||
        f[2] != FP_CHUNK_MAGIC2 || f[3] != FP_CHUNK_MAGIC3)
        return 0;
    if (type && f[4] >= FP_CHUNK_BEGIN && f[4] <= FP_CHUNK_ABORT)
        *type = f[4];
    return 1;
}

/* Checks the common header and the exact size of a control frame; returns the
 * type or a negative error. */
static int parse_hdr(const uint8_t *f, size_t len, uint64_t *id, const char *who)
{
    unsigned type;
    if (!fp_chunk_is_frame(f, len, &type))
        return fp_seterr(FP_EFORMAT, "%s: not a chunk frame (%zu bytes)", who, len);
    if (!type)
        return fp_seterr(FP_EFORMAT, "%s: unknown chunk frame type %u", who, f[4]);
    if (f[5] || f[6] || f[7])
        return fp_seterr(FP_EFORMAT, "%s: nonzero reserved bytes in a chunk frame", who);
    *id = get64(f + 8);
    size_t want = type == FP_CHUNK_BEGIN ? 64 : FP_CHUNK_DATA_HDR_BYTES;
    if (type == FP_CHUNK_DATA ? len < want : len != want)
        return fp_seterr(FP_EFORMAT, "%s: chunk frame type %u of %zu bytes, expected %zu", who, type,
                         len, want);
    if (type == FP_CHUNK_ABORT && get32(f + 20) != 0)
        return fp_seterr(FP_EFORMAT, "%s: nonzero reserved bytes in ABORT", who);
    return (int)type;
}

void fp_chunk_opts_default(fp_chunk_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->chunk_size = FP_CHUNK_SIZE_DEFAULT;
    o->window = FP_CHUNK_WINDOW_DEFAULT;
    o->ack_timeout_ms = FP_CHUNK_ACK_TIMEOUT_MS_DEFAULT;
    o->max_total = FP_CHUNK_MAX_TOTAL_DEFAULT;
}

static int check_opts(const fp_chunk_opts *o)
{
    if (o->chunk_size < FP_CHUNK_SIZE_MIN || o->chunk_size > FP_CHUNK_SIZE_MAX || o->window < 1 ||
        o->window > 1024 || o->ack_timeout_ms < 1)
        return fp_seterr(FP_EINVAL, "chunk options out of range (chunk %u, window %u, timeout %d)",
                         o->chunk_size, o->window, o->ack_timeout_ms);
    return 0;
}

static uint64_t n_chunks_of(uint64_t total, uint32_t cs) { return total / cs + (total % cs != 0); }

static size_t chunk_len(uint64_t total, uint32_t cs, uint64_t index)
{
    uint64_t off = index * cs;
    uint64_t left = total - off;
    return (size_t)(left < cs ? left : cs);
}

/* ---- sender ------------------------------------------------------------ */

struct fp_chunk_tx {
    uint64_t id;
    const uint8_t *data;
    uint64_t total, n;
    uint8_t hash[FP_CHUNK_HASH_BYTES];
    fp_chunk_opts o;
    int state;
    int begin_due;
    int resumed; /* a first RESUME has arrived */
    int fail;
    uint64_t acked; /* the receiver holds every chunk below this */
    uint64_t next;  /* next chunk to send */
    int64_t last_progress;
    fp_chunk_stats st;
};

int fp_chunk_tx_create(fp_chunk_tx **out, uint64_t transfer_id, const void *data, size_t len,
                       const fp_chunk_opts *opts)
{
    if (!out || (!data && len) || transfer_id == 0)
        return fp_seterr(FP_EINVAL, "fp_chunk_tx_create: missing data or zero transfer id");
    *out = NULL;
    fp_chunk_tx *t = calloc(1, sizeof *t);
    if (!t)
        return fp_seterr(FP_ENOMEM, "fp_chunk_tx_create: out of memory");
    if (opts)
        t->o = *opts;
    else
        fp_chunk_opts_default(&t->o);
    int rc = check_opts(&t->o);
    if (rc) {
        free(t);
        return rc;
    }
    t->id = transfer_id;
    t->data = data;
    t->total = len;
    t->n = n_chunks_of(len, t->o.chunk_size);
    crypto_generichash(t->hash, sizeof t->hash, data, len, NULL, 0);
    t->state = ST_WAIT_RESUME;
    t->begin_due = 1;
    t->st.n_chunks = t->n;
    *out = t;
    return 0;
}

void fp_chunk_tx_destroy(fp_chunk_tx *t) { free(t); }

size_t fp_chunk_tx_frame_cap(const fp_chunk_tx *t)
{
    return t ? FP_CHUNK_DATA_HDR_BYTES + t->o.chunk_size : 0;
}

void fp_chunk_tx_link_reset(fp_chunk_tx *t)
{
    if (t && (t->state == ST_WAIT_RESUME || t->state == ST_RUNNING)) {
        t->state = ST_WAIT_RESUME;
        t->begin_due = 1;
    }
}

int fp_chunk_tx_done(const fp_chunk_tx *t)
{
    if (!t)
        return FP_EINVAL;
    return t->state == ST_DONE ? 1 : t->state == ST_FAILED ? t->fail : 0;
}

void fp_chunk_tx_get_stats(const fp_chunk_tx *t, fp_chunk_stats *out)
{
    if (t && out)
        *out = t->st;
}

int fp_chunk_tx_poll(fp_chunk_tx *t, int64_t now_ms, uint8_t *frame, size_t cap, size_t *frame_len)
{
    if (!t || !frame || !frame_len)
        return fp_seterr(FP_EINVAL, "fp_chunk_tx_poll: missing argument");
    *frame_len = 0;
    if (t->state == ST_DONE)
        return 0;
    if (t->state == ST_FAILED)
        return fp_seterr(t->fail, "transfer %llx failed earlier", (unsigned long long)t->id);
    if (cap < fp_chunk_tx_frame_cap(t))
        return fp_seterr(FP_EINVAL, "fp_chunk_tx_poll: frame buffer of %zu bytes, need %zu", cap,
                         fp_chunk_tx_frame_cap(t));
    /* No progress for too long: the link may have died or frames were lost;
     * re-announce and let the receiver say where to go on from. */
    if (!t->begin_due && now_ms - t->last_progress >= t->o.ack_timeout_ms)
        t->begin_due = 1;
    if (t->begin_due) {
        put_hdr(frame, FP_CHUNK_BEGIN, t->id);
        put64(frame + 16, t->total);
        put32(frame + 24, t->o.chunk_size);
        put32(frame + 28, 0);
        memcpy(frame + 32, t->hash, FP_CHUNK_HASH_BYTES);
        *frame_len = 64;
        t->begin_due = 0;
        t->state = ST_WAIT_RESUME;
        t->last_progress = now_ms;
        return 0;
    }
    if (t->state != ST_RUNNING || t->next >= t->n || t->next >= t->acked + t->o.window)
        return 0;
    size_t cl = chunk_len(t->total, t->o.chunk_size, t->next);
    put_hdr(frame, FP_CHUNK_DATA, t->id);
    put64(frame + 16, t->next);
    memcpy(frame + FP_CHUNK_DATA_HDR_BYTES, t->data + t->next * (uint64_t)t->o.chunk_size, cl);
    *frame_len = FP_CHUNK_DATA_HDR_BYTES + cl;
    t->next++;
    t->st.data_frames++;
    return 0;
}

static int tx_progress(fp_chunk_tx *t)
{
    if (t->o.progress && t->o.progress(t->o.progress_ctx, t->acked, t->n) != 0) {
        t->state = ST_FAILED;
        t->fail = FP_EABORT;
        return fp_seterr(FP_EABORT, "transfer %llx aborted by its progress callback",
                         (unsigned long long)t->id);
    }
    return 0;
}

int fp_chunk_tx_input(fp_chunk_tx *t, const void *frame, size_t len, int64_t now_ms)
{
    if (!t || !frame)
        return fp_seterr(FP_EINVAL, "fp_chunk_tx_input: missing argument");
    uint64_t id;
    int type = parse_hdr(frame, len, &id, "chunk sender");
    if (type < 0)
        return type;
    const uint8_t *f = frame;
    if (id != t->id)
        return fp_seterr(FP_EPROTO, "chunk sender: frame for transfer %llx, ours is %llx",
                         (unsigned long long)id, (unsigned long long)t->id);
    if (t->state == ST_DONE || t->state == ST_FAILED)
        return 0; /* late frames after the end change nothing */
    uint64_t v = get64(f + 16);
    switch (type) {
    case FP_CHUNK_RESUME:
        if (v > t->n)
            return fp_seterr(FP_EPROTO, "chunk sender: RESUME at chunk %llu of %llu",
                             (unsigned long long)v, (unsigned long long)t->n);
        if (t->resumed)
            t->st.resumes++;
        t->resumed = 1;
        t->st.resume_from = v;
        /* The receiver's word is the truth: it may even have lost chunks we
         * saw acknowledged (a restarted receiver), so v may be below acked. */
        t->acked = v;
        t->next = v;
        t->state = ST_RUNNING;
        t->begin_due = 0;
        t->last_progress = now_ms;
        return tx_progress(t);
    case FP_CHUNK_ACK:
        if (v > t->next || v > t->n)
            return fp_seterr(FP_EPROTO, "chunk sender: ACK of chunk %llu, only %llu sent",
                             (unsigned long long)v, (unsigned long long)t->next);
        if (v > t->acked) {
            t->acked = v;
            t->last_progress = now_ms;
            return tx_progress(t);
        }
        return 0;
    case FP_CHUNK_DONE:
        if (v != t->n)
            return fp_seterr(FP_EPROTO, "chunk sender: DONE after %llu chunks of %llu",
                             (unsigned long long)v, (unsigned long long)t->n);
        t->acked = t->n;
        t->state = ST_DONE;
        return 0;
    case FP_CHUNK_ABORT: {
        int code = (int)get32(f + 16);
        t->state = ST_FAILED;
        t->fail = FP_EABORT;
        return fp_seterr(FP_EABORT, "transfer %llx aborted by the receiver: %s",
                         (unsigned long long)t->id, fp_strerror(code));
    }
    default:
        return fp_seterr(FP_EPROTO, "chunk sender: unexpected frame type %d from the receiver", type);
    }
}

/* ---- receiver ---------------------------------------------------------- */

struct fp_chunk_rx {
    uint64_t expect_id, id;
    fp_chunk_opts o;
    int state;
    int fail;
    uint64_t total, n, next;
    uint32_t cs;
    uint8_t hash[FP_CHUNK_HASH_BYTES];
    crypto_generichash_state hs;
    uint8_t *buf;
    fp_chunk_stats st;
};

int fp_chunk_rx_create(fp_chunk_rx **out, uint64_t expect_id, const fp_chunk_opts *opts)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_chunk_rx_create: missing output");
    *out = NULL;
    fp_chunk_rx *r = calloc(1, sizeof *r);
    if (!r)
        return fp_seterr(FP_ENOMEM, "fp_chunk_rx_create: out of memory");
    if (opts)
        r->o = *opts;
    else
        fp_chunk_opts_default(&r->o);
    int rc = check_opts(&r->o);
    if (rc) {
        free(r);
        return rc;
    }
    r->expect_id = expect_id;
    r->state = ST_IDLE;
    *out = r;
    return 0;
}

void fp_chunk_rx_destroy(fp_chunk_rx *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

int fp_chunk_rx_done(const fp_chunk_rx *r)
{
    if (!r)
        return FP_EINVAL;
    return r->state == ST_DONE ? 1 : r->state == ST_FAILED ? r->fail : 0;
}

uint64_t fp_chunk_rx_next(const fp_chunk_rx *r) { return r ? r->next : 0; }

void fp_chunk_rx_get_stats(const fp_chunk_rx *r, fp_chunk_stats *out)
{
    if (r && out)
        *out = r->st;
}

int fp_chunk_rx_take(fp_chunk_rx *r, void **data, size_t *len)
{
    if (!r || !data || !len)
        return fp_seterr(FP_EINVAL, "fp_chunk_rx_take: missing argument");
    *data = NULL;
    *len = 0;
    if (r->state != ST_DONE || r->o.sink)
        return fp_seterr(FP_ESTATE, "fp_chunk_rx_take: no assembled payload (transfer not done, "
                                    "or streamed to a sink)");
    /* malloc(0) may return NULL; hand out a real pointer for empty payloads */
    *data = r->buf ? r->buf : malloc(1);
    if (!*data)
        return fp_seterr(FP_ENOMEM, "fp_chunk_rx_take: out of memory");
    *len = (size_t)r->total;
    r->buf = NULL;
    return 0;
}

int fp_chunk_rx_resume_frame(const fp_chunk_rx *r, uint8_t *reply, size_t cap, size_t *reply_len)
{
    if (!r || !reply || !reply_len || cap < FP_CHUNK_CTRL_BYTES)
        return fp_seterr(FP_EINVAL, "fp_chunk_rx_resume_frame: bad argument");
    *reply_len = 0;
    if (r->state == ST_RUNNING)
        *reply_len = put_ctrl(reply, FP_CHUNK_RESUME, r->id, r->next);
    else if (r->state == ST_DONE)
        *reply_len = put_ctrl(reply, FP_CHUNK_DONE, r->id, r->n);
    return 0;
}

/* Ends the transfer with code; the reply is the ABORT telling the sender. */
static int rx_fail(fp_chunk_rx *r, int code, uint8_t *reply, size_t *reply_len)
{
    r->state = ST_FAILED;
    r->fail = code;
    free(r->buf);
    r->buf = NULL;
    *reply_len = put_abort(reply, r->id, code);
    return code;
}

static int rx_finish(fp_chunk_rx *r, uint8_t *reply, size_t *reply_len)
{
    uint8_t got[FP_CHUNK_HASH_BYTES];
    crypto_generichash_final(&r->hs, got, sizeof got);
    if (sodium_memcmp(got, r->hash, sizeof got) != 0) {
        fp_seterr(FP_ECRYPTO, "transfer %llx: the BLAKE2b hash of the %llu bytes received does not "
                              "match the announced one",
                  (unsigned long long)r->id, (unsigned long long)r->total);
        return rx_fail(r, FP_ECRYPTO, reply, reply_len);
    }
    r->state = ST_DONE;
    *reply_len = put_ctrl(reply, FP_CHUNK_DONE, r->id, r->n);
    return 0;
}

static int rx_begin(fp_chunk_rx *r, const uint8_t *f, uint64_t id, uint8_t *reply, size_t *reply_len)
{
    uint64_t total = get64(f + 16);
    uint32_t cs = get32(f + 24);
    if (get32(f + 28) != 0)
        return fp_seterr(FP_EFORMAT, "chunk receiver: nonzero reserved bytes in BEGIN");
    if (cs < FP_CHUNK_SIZE_MIN || cs > FP_CHUNK_SIZE_MAX)
        return fp_seterr(FP_EFORMAT, "chunk receiver: chunk size %u outside %u..%u", cs,
                         FP_CHUNK_SIZE_MIN, FP_CHUNK_SIZE_MAX);
    if (r->state != ST_IDLE) {
        if (id != r->id) {
            *reply_len = put_abort(reply, id, FP_ESTATE);
            return fp_seterr(FP_ESTATE, "chunk receiver: transfer %llx begins while %llx is open",
                             (unsigned long long)id, (unsigned long long)r->id);
        }
        if (r->state == ST_FAILED) {
            *reply_len = put_abort(reply, id, r->fail);
            return 0;
        }
        if (total != r->total || cs != r->cs || sodium_memcmp(f + 32, r->hash, FP_CHUNK_HASH_BYTES))
            return rx_fail(r, fp_seterr(FP_EPROTO, "transfer %llx re-announced with other size, "
                                                   "chunking or hash",
                                        (unsigned long long)id),
                           reply, reply_len);
        if (r->state == ST_DONE) {
            *reply_len = put_ctrl(reply, FP_CHUNK_DONE, id, r->n); /* the sender missed it */
            return 0;
        }
        /* A re-announcement: the sender lost track (reconnect, timeout). */
        r->st.resumes++;
        r->st.resume_from = r->next;
        *reply_len = put_ctrl(reply, FP_CHUNK_RESUME, id, r->next);
        return 0;
    }
    if (r->expect_id && id != r->expect_id) {
        *reply_len = put_abort(reply, id, FP_ESTATE);
        return fp_seterr(FP_ESTATE, "chunk receiver: transfer %llx offered, expecting %llx",
                         (unsigned long long)id, (unsigned long long)r->expect_id);
    }
    r->id = id;
    r->total = total;
    r->cs = cs;
    r->n = n_chunks_of(total, cs);
    r->st.n_chunks = r->n;
    memcpy(r->hash, f + 32, FP_CHUNK_HASH_BYTES);
    if (total > r->o.max_total || total > SIZE_MAX)
        return rx_fail(r, fp_seterr(FP_EFORMAT, "transfer %llx: %llu bytes exceed the limit %llu",
                                    (unsigned long long)id, (unsigned long long)total,
                                    (unsigned long long)r->o.max_total),
                       reply, reply_len);
    if (!r->o.sink && total && !(r->buf = malloc((size_t)total)))
        return rx_fail(r, fp_seterr(FP_ENOMEM, "transfer %llx: cannot allocate %llu bytes",
                                    (unsigned long long)id, (unsigned long long)total),
                       reply, reply_len);
    crypto_generichash_init(&r->hs, NULL, 0, FP_CHUNK_HASH_BYTES);
    r->next = 0;
    r->state = ST_RUNNING;
    if (r->n == 0)
        return rx_finish(r, reply, reply_len);
    *reply_len = put_ctrl(reply, FP_CHUNK_RESUME, id, 0);
    return 0;
}

static int rx_data(fp_chunk_rx *r, const uint8_t *f, size_t len, uint64_t id, uint8_t *reply,
                   size_t *reply_len)
{
    if (r->state == ST_IDLE || id != r->id)
        /* No BEGIN seen (e.g. this receiver restarted): say nothing, the
         * sender's next BEGIN sets things up. */
        return fp_seterr(FP_EPROTO, "chunk receiver: DATA of transfer %llx without its BEGIN",
                         (unsigned long long)id);
    r->st.data_frames++;
    if (r->state == ST_DONE) {
        *reply_len = put_ctrl(reply, FP_CHUNK_DONE, id, r->n);
        return 0;
    }
    if (r->state == ST_FAILED) {
        *reply_len = put_abort(reply, id, r->fail);
        return 0;
    }
    uint64_t index = get64(f + 16);
    if (index < r->next) {
        r->st.duplicates++;
        *reply_len = put_ctrl(reply, FP_CHUNK_ACK, id, r->next);
        return 0;
    }
    if (index > r->next) {
        r->st.gaps++;
        return 0;
    }
    if (index >= r->n)
        return rx_fail(r, fp_seterr(FP_EPROTO, "transfer %llx: chunk %llu of %llu",
                                    (unsigned long long)id, (unsigned long long)index,
                                    (unsigned long long)r->n),
                       reply, reply_len);
    size_t want = chunk_len(r->total, r->cs, index);
    size_t got = len - FP_CHUNK_DATA_HDR_BYTES;
    if (got != want)
        return rx_fail(r, fp_seterr(FP_EPROTO, "transfer %llx: chunk %llu has %zu bytes, expected %zu",
                                    (unsigned long long)id, (unsigned long long)index, got, want),
                       reply, reply_len);
    const uint8_t *p = f + FP_CHUNK_DATA_HDR_BYTES;
    uint64_t off = index * (uint64_t)r->cs;
    if (r->o.sink) {
        int rc = r->o.sink(r->o.sink_ctx, off, p, got);
        if (rc)
            return rx_fail(r, fp_seterr(rc < 0 ? rc : FP_EABORT,
                                        "transfer %llx: the sink refused chunk %llu",
                                        (unsigned long long)id, (unsigned long long)index),
                           reply, reply_len);
    } else {
        memcpy(r->buf + off, p, got);
    }
    crypto_generichash_update(&r->hs, p, got);
    r->next++;
    if (r->o.progress && r->o.progress(r->o.progress_ctx, r->next, r->n) != 0)
        return rx_fail(r, fp_seterr(FP_EABORT, "transfer %llx aborted by its progress callback",
                                    (unsigned long long)id),
                       reply, reply_len);
    if (r->next == r->n)
        return rx_finish(r, reply, reply_len);
    *reply_len = put_ctrl(reply, FP_CHUNK_ACK, id, r->next);
    return 0;
}

int fp_chunk_rx_input(fp_chunk_rx *r, const void *frame, size_t len, uint8_t *reply, size_t cap,
                      size_t *reply_len)
{
    if (reply_len)
        *reply_len = 0;
    if (!r || !frame || !reply || !reply_len || cap < FP_CHUNK_CTRL_BYTES)
        return fp_seterr(FP_EINVAL, "fp_chunk_rx_input: bad argument");
    uint64_t id;
    int type = parse_hdr(frame, len, &id, "chunk receiver");
    if (type < 0)
        return type;
    switch (type) {
    case FP_CHUNK_BEGIN: return rx_begin(r, frame, id, reply, reply_len);
    case FP_CHUNK_DATA: return rx_data(r, frame, len, id, reply, reply_len);
    case FP_CHUNK_ABORT:
        if (r->state == ST_RUNNING && id == r->id) {
            r->state = ST_FAILED;
            r->fail = FP_EABORT;
            free(r->buf);
            r->buf = NULL;
            return fp_seterr(FP_EABORT, "transfer %llx aborted by the sender", (unsigned long long)id);
        }
        return 0;
    default:
        return fp_seterr(FP_EPROTO, "chunk receiver: unexpected frame type %d from the sender", type);
    }
}
