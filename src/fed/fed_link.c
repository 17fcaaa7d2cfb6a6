/* One peer's link: FIFO of outgoing envelopes (direct frames or chunked
 * transfers) and reassembly of the peer's chunked envelopes. Non-blocking:
 * driven by the owner's event loop through fed_link_pump / fed_link_chunk_input. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "fed_internal.h"

void fed_link_init(fed_link *l, const uint8_t peer[32], uint64_t max_total)
{
    memset(l, 0, sizeof *l);
    memcpy(l->peer, peer, 32);
    randombytes_buf(&l->next_id, sizeof l->next_id);
    l->next_id |= 1; /* nonzero */
    l->max_total = max_total;
}

static void out_free(fed_out *o)
{
    fp_chunk_tx_destroy(o->tx);
    free(o->buf);
    memset(o, 0, sizeof *o);
}

static void pop(fed_link *l)
{
    out_free(&l->q[l->qhead]);
    l->qhead++;
    l->qn--;
    l->popped++;
    l->pend_len = 0;
    if (l->qn == 0)
        l->qhead = 0;
}

void fed_link_reset_out(fed_link *l)
{
    while (l->qn)
        pop(l);
    l->pend_len = 0;
}

void fed_link_reset(fed_link *l)
{
    fed_link_reset_out(l);
    fp_chunk_rx_destroy(l->rx);
    l->rx = NULL;
}

void fed_link_free(fed_link *l)
{
    if (!l)
        return;
    fed_link_reset(l);
    free(l->q);
    free(l->frame);
    l->q = NULL;
    l->frame = NULL;
    l->qcap = 0;
}

int fed_link_queue(fed_link *l, uint8_t *buf, size_t len)
{
    if (l->qhead + l->qn == l->qcap) {
        if (l->qhead > 0) {
            memmove(l->q, l->q + l->qhead, l->qn * sizeof *l->q);
            l->qhead = 0;
        } else {
            size_t cap = l->qcap ? l->qcap * 2 : 8;
            fed_out *q = realloc(l->q, cap * sizeof *q);
            if (!q) {
                free(buf);
                return fp_seterr(FP_ENOMEM, "link: out of memory queueing a message");
            }
            l->q = q;
            l->qcap = cap;
        }
    }
    fed_out *o = &l->q[l->qhead + l->qn++];
    memset(o, 0, sizeof *o);
    o->buf = buf;
    o->len = len;
    l->queued++;
    return 0;
}

int fed_link_idle(const fed_link *l) { return l->qn == 0; }

static int ensure_frame(fed_link *l, size_t cap)
{
    if (l->frame_cap >= cap)
        return 0;
    uint8_t *f = realloc(l->frame, cap);
    if (!f)
        return fp_seterr(FP_ENOMEM, "link: out of memory for a %zu-byte frame", cap);
    l->frame = f;
    l->frame_cap = cap;
    return 0;
}

int fed_link_pump(fed_link *l, int64_t now_ms, fed_send_fn send, void *ctx)
{
    for (int guard = 0; guard < 4096 && l->qn; guard++) {
        fed_out *o = &l->q[l->qhead];
        if (o->len <= FP_FED_DIRECT_MAX) {
            int rc = send(ctx, l->peer, o->buf, o->len);
            if (rc == FP_ETIMEOUT)
                return 0;
            if (rc) {
                fed_link_reset(l);
                return rc;
            }
            l->bytes_sent += o->len;
            pop(l);
            continue;
        }
        if (!o->tx) {
            fp_chunk_opts co;
            fp_chunk_opts_default(&co);
            int rc = fp_chunk_tx_create(&o->tx, l->next_id++, o->buf, o->len, &co);
            if (!rc)
                rc = ensure_frame(l, fp_chunk_tx_frame_cap(o->tx));
            if (rc) {
                fp_warn("link: dropping a %zu-byte message: %s", o->len, fp_errmsg());
                pop(l);
                continue;
            }
        }
        int done = fp_chunk_tx_done(o->tx);
        if (done != 0) {
            if (done < 0)
                fp_warn("link: chunked transfer of %zu bytes failed (%d)", o->len, done);
            pop(l);
            continue;
        }
        if (l->pend_len == 0) {
            size_t fl = 0;
            int rc = fp_chunk_tx_poll(o->tx, now_ms, l->frame, l->frame_cap, &fl);
            if (rc) {
                fp_warn("link: chunk poll failed: %s", fp_errmsg());
                pop(l);
                continue;
            }
            if (fl == 0)
                return 0; /* waiting for acknowledgements */
            l->pend_len = fl;
        }
        int rc = send(ctx, l->peer, l->frame, l->pend_len);
        if (rc == FP_ETIMEOUT)
            return 0;
        if (rc) {
            fed_link_reset(l);
            return rc;
        }
        l->bytes_sent += l->pend_len;
        l->pend_len = 0;
    }
    return 0;
}

static uint64_t frame_id(const uint8_t *f)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | f[8 + i];
    return v;
}

int fed_link_chunk_input(fed_link *l, const uint8_t *frame, size_t len, int64_t now_ms, fed_send_fn send,
                         void *ctx, uint8_t **env, size_t *env_len)
{
    *env = NULL;
    *env_len = 0;
    l->bytes_recv += len;
    unsigned type = 0;
    if (!fp_chunk_is_frame(frame, len, &type) || len < FP_CHUNK_HDR_BYTES)
        return fp_seterr(FP_EFORMAT, "link: not a chunk frame");
    fed_out *head = l->qn ? &l->q[l->qhead] : NULL;
    if (type == FP_CHUNK_RESUME || type == FP_CHUNK_ACK || type == FP_CHUNK_DONE ||
        (type == FP_CHUNK_ABORT && head && head->tx && !l->rx)) {
        if (!head || !head->tx)
            return 0; /* late control frame of a finished transfer */
        int rc = fp_chunk_tx_input(head->tx, frame, len, now_ms);
        if (rc == FP_EPROTO && type == FP_CHUNK_ABORT)
            goto to_rx;
        if (fp_chunk_tx_done(head->tx) == 1)
            pop(l);
        return rc == FP_EABORT ? 0 : rc;
    }
to_rx:
    if (type != FP_CHUNK_BEGIN && type != FP_CHUNK_DATA && type != FP_CHUNK_ABORT)
        return fp_seterr(FP_EFORMAT, "link: chunk frame of unknown type %u", type);
    if (type == FP_CHUNK_ABORT) {
        if (l->rx && frame_id(frame) != 0) {
            fp_chunk_rx_destroy(l->rx);
            l->rx = NULL;
        }
        return 0;
    }
    if (!l->rx || fp_chunk_rx_done(l->rx) != 0) {
        if (type != FP_CHUNK_BEGIN)
            return 0; /* stray data of a finished or abandoned transfer */
        fp_chunk_rx_destroy(l->rx);
        l->rx = NULL;
        fp_chunk_opts co;
        fp_chunk_opts_default(&co);
        co.max_total = l->max_total;
        int rc = fp_chunk_rx_create(&l->rx, 0, &co);
        if (rc)
            return rc;
    }
    uint8_t reply[FP_CHUNK_CTRL_BYTES];
    size_t rl = 0;
    int rc = fp_chunk_rx_input(l->rx, frame, len, reply, sizeof reply, &rl);
    if (rc == FP_ESTATE && type == FP_CHUNK_BEGIN) {
        /* The sender moved on to a new transfer: follow it. */
        fp_chunk_rx_destroy(l->rx);
        l->rx = NULL;
        fp_chunk_opts co;
        fp_chunk_opts_default(&co);
        co.max_total = l->max_total;
        rc = fp_chunk_rx_create(&l->rx, 0, &co);
        if (rc)
            return rc;
        rl = 0;
        rc = fp_chunk_rx_input(l->rx, frame, len, reply, sizeof reply, &rl);
    }
    if (rl > 0) {
        int src = send(ctx, l->peer, reply, rl);
        if (src == 0)
            l->bytes_sent += rl;
    }
    if (fp_chunk_rx_done(l->rx) == 1) {
        void *data = NULL;
        size_t n = 0;
        int trc = fp_chunk_rx_take(l->rx, &data, &n);
        fp_chunk_rx_destroy(l->rx);
        l->rx = NULL;
        if (trc)
            return trc;
        *env = data;
        *env_len = n;
        return 0;
    }
    if (l->rx && fp_chunk_rx_done(l->rx) < 0) {
        fp_chunk_rx_destroy(l->rx);
        l->rx = NULL;
    }
    return rc;
}
