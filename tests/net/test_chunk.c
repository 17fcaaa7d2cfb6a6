/* The chunk state machines over a simulated link (no sockets): windowing,
 * acknowledgements, resume after frames are lost, hash and size checks. */
#include <stdlib.h>
#include <string.h>

#include "fedproxy/chunk.h"
#include "fp_test.h"

/* A one-way queue of frames. */
typedef struct qframe {
    uint8_t *p;
    size_t n;
} qframe;
typedef struct queue {
    qframe f[4096];
    size_t head, tail;
} queue;

static void push(queue *q, const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n);
    memcpy(c, p, n);
    q->f[q->tail++ % 4096] = (qframe){c, n};
}
static int pop(queue *q, qframe *out)
{
    if (q->head == q->tail)
        return 0;
    *out = q->f[q->head++ % 4096];
    return 1;
}
static void drop_all(queue *q)
{
    qframe f;
    while (pop(q, &f))
        free(f.p);
}

typedef struct sim {
    uint64_t drop_at;   /* when rx holds this many chunks, both queues are lost once */
    int dropped;
    int corrupt_index;  /* flip a byte in this DATA chunk once (-1: never) */
    size_t max_unacked; /* most DATA frames seen in flight beyond the ack */
    uint64_t held_at_drop;
} sim;

/* Runs tx and rx to the end with a virtual clock; returns the rx result code. */
static int run(fp_chunk_tx *tx, fp_chunk_rx *rx, sim *s, int steps)
{
    static queue to_rx, to_tx;
    memset(&to_rx, 0, sizeof to_rx);
    memset(&to_tx, 0, sizeof to_tx);
    size_t cap = fp_chunk_tx_frame_cap(tx);
    uint8_t *buf = malloc(cap);
    int64_t now = 0;
    int rx_rc = 0;
    for (int step = 0; step < steps && fp_chunk_tx_done(tx) == 0; step++, now += 10) {
        size_t n;
        while (fp_chunk_tx_poll(tx, now, buf, cap, &n) == 0 && n) {
            unsigned type;
            fp_chunk_is_frame(buf, n, &type);
            if (type == FP_CHUNK_DATA && s->corrupt_index >= 0 && buf[16] == s->corrupt_index) {
                buf[FP_CHUNK_DATA_HDR_BYTES + 5] ^= 1;
                s->corrupt_index = -1;
            }
            push(&to_rx, buf, n);
        }
        /* count DATA frames queued toward rx beyond what it has acknowledged */
        size_t in_flight = 0;
        for (size_t i = to_rx.head; i < to_rx.tail; i++)
            if (to_rx.f[i % 4096].p[4] == FP_CHUNK_DATA)
                in_flight++;
        if (in_flight > s->max_unacked)
            s->max_unacked = in_flight;
        qframe f;
        while (pop(&to_rx, &f)) {
            uint8_t reply[FP_CHUNK_CTRL_BYTES];
            size_t rl = 0;
            int rc = fp_chunk_rx_input(rx, f.p, f.n, reply, sizeof reply, &rl);
            free(f.p);
            if (rc && fp_chunk_rx_done(rx) < 0)
                rx_rc = rc;
            if (rl)
                push(&to_tx, reply, rl);
            if (!s->dropped && s->drop_at && fp_chunk_rx_next(rx) >= s->drop_at) {
                /* the connection dies: everything in flight either way is lost */
                s->dropped = 1;
                s->held_at_drop = fp_chunk_rx_next(rx);
                drop_all(&to_rx);
                drop_all(&to_tx);
                fp_chunk_tx_link_reset(tx);
                break;
            }
        }
        while (pop(&to_tx, &f)) {
            fp_chunk_tx_input(tx, f.p, f.n, now);
            free(f.p);
        }
    }
    drop_all(&to_rx);
    drop_all(&to_tx);
    free(buf);
    return rx_rc;
}

static fp_chunk_opts small_opts(void)
{
    fp_chunk_opts o;
    fp_chunk_opts_default(&o);
    o.chunk_size = 4096;
    o.window = 4;
    o.ack_timeout_ms = 100;
    return o;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    fp_test_seed(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)fp_test_u32();
    return p;
}

static void test_resume(void)
{
    fp_chunk_opts o = small_opts();
    size_t n = 40 * 4096 + 123; /* 41 chunks, the last short */
    uint8_t *data = pattern(n, 1);
    fp_chunk_tx *tx;
    fp_chunk_rx *rx;
    CHECK_OK(fp_chunk_tx_create(&tx, 77, data, n, &o));
    CHECK_OK(fp_chunk_rx_create(&rx, 77, &o));
    sim s = {.drop_at = 20, .corrupt_index = -1};
    CHECK_OK(run(tx, rx, &s, 10000));
    CHECK(fp_chunk_tx_done(tx) == 1 && fp_chunk_rx_done(rx) == 1);
    CHECK(s.dropped && s.held_at_drop == 20);
    CHECK(s.max_unacked <= o.window);
    fp_chunk_stats ts, rs;
    fp_chunk_tx_get_stats(tx, &ts);
    fp_chunk_rx_get_stats(rx, &rs);
    CHECK(ts.n_chunks == 41 && rs.n_chunks == 41);
    /* resumed where the receiver was, not from zero */
    CHECKF(ts.resumes == 1 && ts.resume_from == 20, "resumes %llu from %llu",
           (unsigned long long)ts.resumes, (unsigned long long)ts.resume_from);
    CHECK(ts.data_frames <= 41 + o.window);
    void *got;
    size_t got_len;
    CHECK_OK(fp_chunk_rx_take(rx, &got, &got_len));
    CHECK(got_len == n && memcmp(got, data, n) == 0);
    free(got);
    fp_chunk_tx_destroy(tx);
    fp_chunk_rx_destroy(rx);
    free(data);
}

static void test_hash_mismatch(void)
{
    fp_chunk_opts o = small_opts();
    size_t n = 10 * 4096;
    uint8_t *data = pattern(n, 2);
    fp_chunk_tx *tx;
    fp_chunk_rx *rx;
    CHECK_OK(fp_chunk_tx_create(&tx, 5, data, n, &o));
    CHECK_OK(fp_chunk_rx_create(&rx, 0, &o));
    sim s = {.corrupt_index = 3};
    CHECK(run(tx, rx, &s, 1000) == FP_ECRYPTO);
    CHECK(fp_chunk_rx_done(rx) == FP_ECRYPTO);
    CHECK(fp_chunk_tx_done(tx) == FP_EABORT); /* told by the receiver's ABORT */
    void *got;
    size_t gl;
    CHECK_ERR(fp_chunk_rx_take(rx, &got, &gl), FP_ESTATE);
    fp_chunk_tx_destroy(tx);
    fp_chunk_rx_destroy(rx);
    free(data);
}

static void test_limits_and_bad_frames(void)
{
    fp_chunk_opts o = small_opts();
    o.max_total = 8192;
    uint8_t data[8193];
    memset(data, 1, sizeof data);
    fp_chunk_tx *tx;
    fp_chunk_rx *rx;
    uint8_t frame[FP_CHUNK_DATA_HDR_BYTES + 4096], reply[FP_CHUNK_CTRL_BYTES];
    size_t fl, rl;

    /* over the receiver's limit: refused at BEGIN */
    CHECK_OK(fp_chunk_tx_create(&tx, 9, data, sizeof data, &o));
    CHECK_OK(fp_chunk_rx_create(&rx, 0, &o));
    CHECK_OK(fp_chunk_tx_poll(tx, 0, frame, sizeof frame, &fl));
    CHECK(fl == 64);
    CHECK_ERR(fp_chunk_rx_input(rx, frame, fl, reply, sizeof reply, &rl), FP_EFORMAT);
    CHECK(rl == FP_CHUNK_DATA_HDR_BYTES && reply[4] == FP_CHUNK_ABORT);
    CHECK(fp_chunk_rx_done(rx) == FP_EFORMAT);
    CHECK(fp_chunk_tx_input(tx, reply, rl, 0) == FP_EABORT && fp_chunk_tx_done(tx) == FP_EABORT);
    fp_chunk_tx_destroy(tx);
    fp_chunk_rx_destroy(rx);

    /* malformed frames are refused without ending the transfer */
    CHECK_OK(fp_chunk_tx_create(&tx, 9, data, 8192, &o));
    CHECK_OK(fp_chunk_rx_create(&rx, 9, &o));
    CHECK_OK(fp_chunk_tx_poll(tx, 0, frame, sizeof frame, &fl));
    CHECK_ERR(fp_chunk_rx_input(rx, frame, fl - 1, reply, sizeof reply, &rl), FP_EFORMAT);
    frame[5] = 1;
    CHECK_ERR(fp_chunk_rx_input(rx, frame, fl, reply, sizeof reply, &rl), FP_EFORMAT);
    frame[5] = 0;
    frame[4] = 9;
    CHECK_ERR(fp_chunk_rx_input(rx, frame, fl, reply, sizeof reply, &rl), FP_EFORMAT);
    frame[4] = FP_CHUNK_BEGIN;
    CHECK(fp_chunk_rx_done(rx) == 0);
    /* another transfer's BEGIN while expecting 9 */
    frame[8] = 10;
    CHECK_ERR(fp_chunk_rx_input(rx, frame, fl, reply, sizeof reply, &rl), FP_ESTATE);
    CHECK(rl && reply[4] == FP_CHUNK_ABORT && reply[8] == 10);
    frame[8] = 9;
    CHECK_OK(fp_chunk_rx_input(rx, frame, fl, reply, sizeof reply, &rl));
    CHECK(rl == FP_CHUNK_DATA_HDR_BYTES && reply[4] == FP_CHUNK_RESUME && reply[16] == 0);
    CHECK_OK(fp_chunk_tx_input(tx, reply, rl, 0));
    /* an ACK beyond what was sent is nonsense */
    uint8_t bogus[FP_CHUNK_DATA_HDR_BYTES];
    memcpy(bogus, reply, sizeof bogus);
    bogus[4] = FP_CHUNK_ACK;
    bogus[16] = 2;
    CHECK_ERR(fp_chunk_tx_input(tx, bogus, sizeof bogus, 0), FP_EPROTO);
    CHECK(fp_chunk_tx_done(tx) == 0);
    CHECK_OK(fp_chunk_tx_poll(tx, 0, frame, sizeof frame, &fl));
    CHECK(fl == FP_CHUNK_DATA_HDR_BYTES + 4096 && frame[16] == 0);
    /* chunk 0 with a byte missing: a lying chunk ends the transfer */
    CHECK_ERR(fp_chunk_rx_input(rx, frame, fl - 1, reply, sizeof reply, &rl), FP_EPROTO);
    CHECK(fp_chunk_rx_done(rx) == FP_EPROTO && rl && reply[4] == FP_CHUNK_ABORT);
    fp_chunk_tx_destroy(tx);
    fp_chunk_rx_destroy(rx);

    /* nonsense arguments */
    CHECK_ERR(fp_chunk_tx_create(&tx, 0, data, 10, &o), FP_EINVAL);
    o.chunk_size = 10;
    CHECK_ERR(fp_chunk_tx_create(&tx, 1, data, 10, &o), FP_EINVAL);
}

typedef struct sink_state {
    uint8_t *buf;
    size_t cap;
    uint64_t next;
    int in_order;
} sink_state;

static int sink(void *ctx, uint64_t off, const void *p, size_t n)
{
    sink_state *ss = ctx;
    if (off != ss->next || off + n > ss->cap) {
        ss->in_order = 0;
        return FP_EIO;
    }
    if (off == 0)
        ss->in_order = 1;
    memcpy(ss->buf + off, p, n);
    ss->next = off + n;
    return 0;
}

static void test_empty_and_sink(void)
{
    fp_chunk_opts o = small_opts();
    fp_chunk_tx *tx;
    fp_chunk_rx *rx;
    CHECK_OK(fp_chunk_tx_create(&tx, 3, NULL, 0, &o));
    CHECK_OK(fp_chunk_rx_create(&rx, 3, &o));
    sim s = {.corrupt_index = -1};
    CHECK_OK(run(tx, rx, &s, 100));
    CHECK(fp_chunk_tx_done(tx) == 1 && fp_chunk_rx_done(rx) == 1);
    void *got;
    size_t gl = 99;
    CHECK_OK(fp_chunk_rx_take(rx, &got, &gl));
    CHECK(gl == 0);
    free(got);
    fp_chunk_tx_destroy(tx);
    fp_chunk_rx_destroy(rx);

    /* streamed to a sink: bytes arrive in order, nothing is assembled */
    size_t n = 9 * 4096 + 77;
    uint8_t *data = pattern(n, 3);
    sink_state ss = {.buf = calloc(1, n), .cap = n};
    o.sink = sink;
    o.sink_ctx = &ss;
    CHECK_OK(fp_chunk_tx_create(&tx, 4, data, n, &o));
    CHECK_OK(fp_chunk_rx_create(&rx, 4, &o));
    sim s2 = {.drop_at = 5, .corrupt_index = -1};
    CHECK_OK(run(tx, rx, &s2, 10000));
    CHECK(fp_chunk_rx_done(rx) == 1 && fp_chunk_tx_done(tx) == 1);
    CHECK(ss.in_order && ss.next == n && memcmp(ss.buf, data, n) == 0);
    CHECK_ERR(fp_chunk_rx_take(rx, &got, &gl), FP_ESTATE);
    fp_chunk_tx_destroy(tx);
    fp_chunk_rx_destroy(rx);
    free(ss.buf);
    free(data);
}

int main(void)
{
    test_resume();
    test_hash_mismatch();
    test_limits_and_bad_frames();
    test_empty_and_sink();
    return fp_test_report("test_chunk");
}
