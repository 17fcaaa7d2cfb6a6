/* Blocking drivers that run one chunked transfer over a client or server
 * connection (see fedproxy/chunk.h). The state machines decide what to send;
 * this file only moves frames and watches the clock. */
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/chunk.h"
#include "net_internal.h"

/* One end of the connection, seen the same way whether it is a client or a
 * server talking to one peer. */
typedef struct link {
    fp_client *c;
    fp_server *s;
    const uint8_t *peer;
    char name[32]; /* for messages */
} link;

static int link_send(link *l, const void *buf, size_t len, int timeout_ms)
{
    return l->c ? fp_client_send(l->c, buf, len, timeout_ms)
                : fp_server_send(l->s, l->peer, buf, len, timeout_ms);
}

/* Receives a frame from the link's peer; frames from other peers (server side)
 * are dropped with a warning: this driver serves one peer. */
static int link_recv(link *l, void **buf, size_t *len, int timeout_ms)
{
    if (l->c)
        return fp_client_recv(l->c, buf, len, timeout_ms);
    int64_t deadline = fp_net_now_ms() + timeout_ms;
    for (;;) {
        uint8_t from[FP_NET_KEY_BYTES];
        int64_t left = deadline - fp_net_now_ms();
        int rc = fp_server_recv(l->s, from, buf, len, left > 0 ? (int)left : 0);
        if (rc)
            return rc;
        if (memcmp(from, l->peer, FP_NET_KEY_BYTES) == 0)
            return 0;
        char kn[20];
        fp_net_keyname(kn, from);
        fp_warn("chunk transfer with %s: dropped a frame from another client %s", l->name, kn);
        free(*buf);
        *buf = NULL;
    }
}

static uint64_t link_generation(const link *l) { return l->c ? fp_client_generation(l->c) : 0; }

static int64_t until(int64_t deadline)
{
    if (deadline < 0)
        return INT32_MAX;
    int64_t left = deadline - fp_net_now_ms();
    return left > 0 ? left : 0;
}

static int min_ms(int64_t a, int64_t b) { return (int)(a < b ? a : b); }

static int drive_tx(link *l, uint64_t id, const void *data, size_t len, const fp_chunk_opts *opts,
                    int timeout_ms, fp_chunk_stats *stats)
{
    fp_chunk_opts o;
    if (opts)
        o = *opts;
    else
        fp_chunk_opts_default(&o);
    fp_chunk_tx *t = NULL;
    int rc = fp_chunk_tx_create(&t, id, data, len, &o);
    if (rc)
        return rc;
    size_t cap = fp_chunk_tx_frame_cap(t);
    uint8_t *frame = malloc(cap);
    if (!frame) {
        fp_chunk_tx_destroy(t);
        return fp_seterr(FP_ENOMEM, "chunk send: cannot allocate a %zu-byte frame", cap);
    }
    int64_t deadline = timeout_ms < 0 ? -1 : fp_net_now_ms() + timeout_ms;
    uint64_t gen = link_generation(l);
    rc = 0;
    while (!rc && fp_chunk_tx_done(t) == 0) {
        if (link_generation(l) != gen) {
            gen = link_generation(l);
            fp_chunk_tx_link_reset(t); /* in-flight frames died with the old connection */
        }
        for (;;) {
            size_t flen = 0;
            if ((rc = fp_chunk_tx_poll(t, fp_net_now_ms(), frame, cap, &flen)) || flen == 0)
                break;
            int src = link_send(l, frame, flen, min_ms(until(deadline), o.ack_timeout_ms));
            if (src == FP_ETIMEOUT || src == FP_ENET)
                break; /* link trouble: the ack timeout re-announces; keep listening */
            if (src) {
                rc = src;
                break;
            }
        }
        if (rc || fp_chunk_tx_done(t))
            break;
        if (deadline >= 0 && fp_net_now_ms() >= deadline) {
            rc = fp_seterr(FP_ETIMEOUT, "chunk send to %s: transfer %llx not done within %d ms",
                           l->name, (unsigned long long)id, timeout_ms);
            break;
        }
        /* Short waits: the loop must notice reconnects and the ack timeout. */
        void *in = NULL;
        size_t in_len = 0;
        int r = link_recv(l, &in, &in_len, min_ms(until(deadline), 50));
        if (r == 0) {
            if (fp_chunk_is_frame(in, in_len, NULL)) {
                r = fp_chunk_tx_input(t, in, in_len, fp_net_now_ms());
                if (r && fp_chunk_tx_done(t) < 0)
                    rc = r;
                else if (r)
                    fp_warn("chunk send to %s: %s", l->name, fp_errmsg());
            } else {
                fp_warn("chunk send to %s: dropped a non-chunk frame of %zu bytes", l->name, in_len);
            }
            free(in);
        } else if (r != FP_ETIMEOUT && r != FP_EPROTO && r != FP_EAUTH) {
            rc = r;
        }
    }
    if (stats)
        fp_chunk_tx_get_stats(t, stats);
    free(frame);
    fp_chunk_tx_destroy(t);
    return rc;
}

static int drive_rx(link *l, uint64_t id, void **data, size_t *len, const fp_chunk_opts *opts,
                    int timeout_ms, fp_chunk_stats *stats)
{
    if (!data || !len)
        return fp_seterr(FP_EINVAL, "chunk receive: missing output");
    *data = NULL;
    *len = 0;
    fp_chunk_opts o;
    if (opts)
        o = *opts;
    else
        fp_chunk_opts_default(&o);
    fp_chunk_rx *r = NULL;
    int rc = fp_chunk_rx_create(&r, id, &o);
    if (rc)
        return rc;
    uint8_t reply[FP_CHUNK_CTRL_BYTES];
    int64_t deadline = timeout_ms < 0 ? -1 : fp_net_now_ms() + timeout_ms;
    int64_t last_progress = fp_net_now_ms();
    uint64_t gen = link_generation(l);
    while (!rc && fp_chunk_rx_done(r) == 0) {
        size_t rlen = 0;
        int64_t now = fp_net_now_ms();
        /* After a reconnect, or when the sender has gone quiet, tell it where
         * we are; it cannot know which chunks died with the old connection. */
        if (link_generation(l) != gen || now - last_progress >= o.ack_timeout_ms) {
            gen = link_generation(l);
            last_progress = now;
            fp_chunk_rx_resume_frame(r, reply, sizeof reply, &rlen);
            if (rlen)
                link_send(l, reply, rlen, min_ms(until(deadline), o.ack_timeout_ms));
        }
        if (deadline >= 0 && now >= deadline) {
            rc = fp_seterr(FP_ETIMEOUT, "chunk receive from %s: transfer not done within %d ms",
                           l->name, timeout_ms);
            break;
        }
        void *in = NULL;
        size_t in_len = 0;
        int q = link_recv(l, &in, &in_len, min_ms(until(deadline), 50));
        if (q == FP_ETIMEOUT || q == FP_EPROTO || q == FP_EAUTH)
            continue;
        if (q) {
            rc = q;
            break;
        }
        if (!fp_chunk_is_frame(in, in_len, NULL)) {
            fp_warn("chunk receive from %s: dropped a non-chunk frame of %zu bytes", l->name, in_len);
            free(in);
            continue;
        }
        uint64_t before = fp_chunk_rx_next(r);
        q = fp_chunk_rx_input(r, in, in_len, reply, sizeof reply, &rlen);
        free(in);
        if (fp_chunk_rx_next(r) != before || fp_chunk_rx_done(r))
            last_progress = fp_net_now_ms();
        if (rlen) {
            int s = link_send(l, reply, rlen, min_ms(until(deadline), o.ack_timeout_ms));
            if (s && s != FP_ETIMEOUT && s != FP_ENET && !q)
                q = s;
        }
        if (q && fp_chunk_rx_done(r) < 0)
            rc = q;
        else if (q)
            fp_warn("chunk receive from %s: %s", l->name, fp_errmsg());
    }
    if (stats)
        fp_chunk_rx_get_stats(r, stats);
    if (!rc && !o.sink)
        rc = fp_chunk_rx_take(r, data, len);
    fp_chunk_rx_destroy(r);
    return rc;
}

static void client_link(link *l, fp_client *c)
{
    memset(l, 0, sizeof *l);
    l->c = c;
    strcpy(l->name, "the server");
}

static void server_link(link *l, fp_server *s, const uint8_t *peer)
{
    memset(l, 0, sizeof *l);
    l->s = s;
    l->peer = peer;
    strcpy(l->name, "client ");
    fp_net_keyname(l->name + 7, peer);
}

int fp_chunk_client_send(fp_client *c, uint64_t transfer_id, const void *data, size_t len,
                         const fp_chunk_opts *opts, int timeout_ms, fp_chunk_stats *stats)
{
    if (!c)
        return fp_seterr(FP_EINVAL, "fp_chunk_client_send: missing client");
    link l;
    client_link(&l, c);
    return drive_tx(&l, transfer_id, data, len, opts, timeout_ms, stats);
}

int fp_chunk_client_recv(fp_client *c, uint64_t transfer_id, void **data, size_t *len,
                         const fp_chunk_opts *opts, int timeout_ms, fp_chunk_stats *stats)
{
    if (!c)
        return fp_seterr(FP_EINVAL, "fp_chunk_client_recv: missing client");
    link l;
    client_link(&l, c);
    return drive_rx(&l, transfer_id, data, len, opts, timeout_ms, stats);
}

int fp_chunk_server_send(fp_server *s, const uint8_t peer[FP_NET_KEY_BYTES], uint64_t transfer_id,
                         const void *data, size_t len, const fp_chunk_opts *opts, int timeout_ms,
                         fp_chunk_stats *stats)
{
    if (!s || !peer)
        return fp_seterr(FP_EINVAL, "fp_chunk_server_send: missing server or peer");
    link l;
    server_link(&l, s, peer);
    return drive_tx(&l, transfer_id, data, len, opts, timeout_ms, stats);
}

int fp_chunk_server_recv(fp_server *s, const uint8_t peer[FP_NET_KEY_BYTES], uint64_t transfer_id,
                         void **data, size_t *len, const fp_chunk_opts *opts, int timeout_ms,
                         fp_chunk_stats *stats)
{
    if (!s || !peer)
        return fp_seterr(FP_EINVAL, "fp_chunk_server_recv: missing server or peer");
    link l;
    server_link(&l, s, peer);
    return drive_rx(&l, transfer_id, data, len, opts, timeout_ms, stats);
}
