/* CURVE-encrypted ROUTER/DEALER transport with a ZAP allow-list (see fedproxy/transport.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zmq.h>

#include "error_internal.h"
#include "net_internal.h"
#include "zap.h"

#define RID_MAX 255 /* ZeroMQ routing ids are 1..255 bytes */

typedef struct route {
    uint8_t rid[RID_MAX];
    size_t rid_len; /* 0: this client has not sent anything yet */
} route;

struct fp_server {
    void *ctx;
    void *sock;
    fp_zap zap;
    fp_allowlist *allow; /* our copy; the ZAP thread reads it */
    route *routes;       /* per allow-list index: the connection the client last used */
    fp_net_opts opts;
    char endpoint[256];
};

struct fp_client {
    void *ctx;
    void *sock;
    void *mon;   /* PAIR receiving the socket's monitor events */
    uint8_t server_curve[32];
    uint8_t curve_pk[32];
    uint8_t curve_sk[32]; /* secret */
    char endpoint[256];
    fp_net_opts opts;
    uint64_t generation;
    int ready; /* handshake succeeded on the current connection */
};

void fp_net_opts_default(fp_net_opts *o)
{
    if (!o)
        return;
    o->max_msg_size = FP_NET_MAX_MSG_DEFAULT;
    o->hwm = FP_NET_HWM_DEFAULT;
    o->linger_ms = FP_NET_LINGER_MS_DEFAULT;
    o->reconnect_ms = FP_NET_RECONNECT_MS_DEFAULT;
    o->reconnect_max_ms = FP_NET_RECONNECT_MAX_MS_DEFAULT;
    o->heartbeat_ms = FP_NET_HEARTBEAT_MS_DEFAULT;
    o->heartbeat_timeout_ms = FP_NET_HEARTBEAT_TIMEOUT_MS_DEFAULT;
    o->handshake_ms = FP_NET_HANDSHAKE_MS_DEFAULT;
}

static int check_opts(const fp_net_opts *o)
{
    /* heartbeat TTL travels in deciseconds in a 16-bit field: at most 6553.5 s */
    if (o->max_msg_size < 1024 || o->max_msg_size > ((size_t)1 << 40) || o->hwm < 1 ||
        o->linger_ms < 0 || o->reconnect_ms < 1 || o->reconnect_max_ms < 0 || o->heartbeat_ms < 0 ||
        o->heartbeat_timeout_ms < 0 || o->heartbeat_timeout_ms > 6553500 || o->handshake_ms < 0)
        return fp_seterr(FP_EINVAL, "transport options out of range");
    return 0;
}

#define SETOPT(sock, opt, val, what)                                                            \
    do {                                                                                        \
        if (zmq_setsockopt((sock), (opt), &(val), sizeof(val)) != 0)                            \
            return fp_seterr(FP_ENET, "%s: cannot set " #opt ": %s", (what),                    \
                             zmq_strerror(zmq_errno()));                                        \
    } while (0)

/* The options both ends share: bounded frames and queues, liveness, linger. */
static int set_common(void *sock, const fp_net_opts *o, const char *what)
{
    int64_t maxmsg = (int64_t)o->max_msg_size;
    int one = 1;
    SETOPT(sock, ZMQ_MAXMSGSIZE, maxmsg, what);
    SETOPT(sock, ZMQ_SNDHWM, o->hwm, what);
    SETOPT(sock, ZMQ_RCVHWM, o->hwm, what);
    SETOPT(sock, ZMQ_LINGER, o->linger_ms, what);
    SETOPT(sock, ZMQ_HEARTBEAT_IVL, o->heartbeat_ms, what);
    SETOPT(sock, ZMQ_HEARTBEAT_TIMEOUT, o->heartbeat_timeout_ms, what);
    SETOPT(sock, ZMQ_HEARTBEAT_TTL, o->heartbeat_timeout_ms, what);
    SETOPT(sock, ZMQ_HANDSHAKE_IVL, o->handshake_ms, what);
    SETOPT(sock, ZMQ_TCP_KEEPALIVE, one, what);
    return 0;
}

/* Waits for events (ZMQ_POLLIN/OUT) on sock until deadline (-1 = none). 1 if
 * ready, 0 on timeout, FP_ENET on error. */
static int wait_for(void *sock, short events, int64_t deadline, const char *what)
{
    for (;;) {
        long wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - fp_net_now_ms();
            wait = left > 0 ? (long)left : 0;
        }
        zmq_pollitem_t it = {sock, 0, events, 0};
        int r = zmq_poll(&it, 1, wait);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (zmq_errno() != EINTR)
            return fp_seterr(FP_ENET, "%s: poll failed: %s", what, zmq_strerror(zmq_errno()));
    }
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : fp_net_now_ms() + timeout_ms;
}

/* Discards the remaining frames of a multi-frame message. */
static void drain_more(void *sock)
{
    int more = 1;
    while (more) {
        size_t ml = sizeof more;
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml) != 0 || !more)
            break;
        zmq_msg_t m;
        zmq_msg_init(&m);
        int r = zmq_msg_recv(&m, sock, ZMQ_DONTWAIT);
        zmq_msg_close(&m);
        if (r < 0)
            break;
    }
}

static int copy_out(void **data, size_t *len, zmq_msg_t *m, const char *what)
{
    size_t n = zmq_msg_size(m);
    /* +1 so a zero-length frame still gets a distinct non-NULL pointer */
    uint8_t *p = malloc(n + 1);
    if (!p)
        return fp_seterr(FP_ENOMEM, "%s: cannot allocate %zu bytes for a frame", what, n);
    memcpy(p, zmq_msg_data(m), n);
    p[n] = 0;
    *data = p;
    *len = n;
    return 0;
}

/* ---- server ------------------------------------------------------------ */

void fp_server_destroy(fp_server *s)
{
    if (!s)
        return;
    if (s->sock)
        zmq_close(s->sock);
    if (s->ctx) {
        zmq_ctx_shutdown(s->ctx); /* wakes the ZAP thread with ETERM */
        fp_zap_join(&s->zap);
        zmq_ctx_term(s->ctx);
    }
    fp_allowlist_free(s->allow);
    free(s->routes);
    free(s);
}

int fp_server_create(fp_server **out, const char *endpoint, const fp_identity *id,
                     const fp_allowlist *allow, const fp_net_opts *opts)
{
    if (!out || !endpoint || !id || !allow)
        return fp_seterr(FP_EINVAL, "fp_server_create: missing argument");
    *out = NULL;
    fp_server *s = calloc(1, sizeof *s);
    if (!s)
        return fp_seterr(FP_ENOMEM, "fp_server_create: out of memory");
    if (opts)
        s->opts = *opts;
    else
        fp_net_opts_default(&s->opts);
    int rc = check_opts(&s->opts);
    uint8_t cpk[32], csk[32];
    int have_keys = 0;
    if (!rc)
        rc = fp_allowlist_dup(&s->allow, allow);
    if (!rc && fp_allowlist_count(allow) &&
        !(s->routes = calloc(fp_allowlist_count(allow), sizeof *s->routes)))
        rc = fp_seterr(FP_ENOMEM, "fp_server_create: out of memory for routes");
    if (!rc && (rc = fp_identity_curve25519(cpk, csk, id)) == 0)
        have_keys = 1;
    if (!rc && !(s->ctx = zmq_ctx_new()))
        rc = fp_seterr(FP_ENET, "server: cannot create a ZeroMQ context");
    if (!rc)
        rc = fp_zap_start(&s->zap, s->ctx, s->allow);
    if (!rc && !(s->sock = zmq_socket(s->ctx, ZMQ_ROUTER)))
        rc = fp_seterr(FP_ENET, "server: cannot create ROUTER socket: %s", zmq_strerror(zmq_errno()));
    if (!rc)
        rc = set_common(s->sock, &s->opts, "server");
    if (!rc) {
        void *sk = s->sock;
        int one = 1;
        /* ROUTER_MANDATORY: a frame to a vanished client is an error we report,
         * not one ZeroMQ silently drops; and a full queue blocks instead of
         * dropping. The ZAP handler is already bound (fp_zap_start), so no
         * handshake can complete without it. */
        if (zmq_setsockopt(sk, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
            zmq_setsockopt(sk, ZMQ_CURVE_SERVER, &one, sizeof one) ||
            zmq_setsockopt(sk, ZMQ_CURVE_SECRETKEY, csk, 32) ||
            zmq_setsockopt(sk, ZMQ_CURVE_PUBLICKEY, cpk, 32) ||
            zmq_setsockopt(sk, ZMQ_ZAP_DOMAIN, FP_NET_ZAP_DOMAIN, strlen(FP_NET_ZAP_DOMAIN)))
            rc = fp_seterr(FP_ENET, "server: cannot configure CURVE: %s", zmq_strerror(zmq_errno()));
    }
    if (have_keys)
        sodium_memzero(csk, sizeof csk);
    if (!rc && zmq_bind(s->sock, endpoint) != 0)
        rc = fp_seterr(FP_ENET, "server: cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    if (!rc) {
        size_t el = sizeof s->endpoint;
        if (zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &el) != 0)
            rc = fp_seterr(FP_ENET, "server: cannot read the bound endpoint");
    }
    if (rc) {
        fp_server_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

int fp_server_endpoint(const fp_server *s, char *out, size_t out_cap)
{
    if (!s || !out)
        return fp_seterr(FP_EINVAL, "fp_server_endpoint: missing argument");
    if (strlen(s->endpoint) >= out_cap)
        return fp_seterr(FP_EINVAL, "fp_server_endpoint: buffer of %zu bytes too small", out_cap);
    strcpy(out, s->endpoint);
    return 0;
}

void fp_server_get_stats(const fp_server *s, fp_server_stats *out)
{
    if (!s || !out)
        return;
    out->zap_accepted = atomic_load(&((fp_server *)s)->zap.accepted);
    out->zap_refused = atomic_load(&((fp_server *)s)->zap.refused);
}

int fp_server_recv(fp_server *s, uint8_t peer[FP_NET_KEY_BYTES], void **data, size_t *len,
                   int timeout_ms)
{
    if (!s || !peer || !data || !len)
        return fp_seterr(FP_EINVAL, "fp_server_recv: missing argument");
    *data = NULL;
    *len = 0;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        int w = wait_for(s->sock, ZMQ_POLLIN, deadline, "server receive");
        if (w < 0)
            return w;
        if (w == 0)
            return fp_seterr(FP_ETIMEOUT, "server: nothing received within %d ms", timeout_ms);
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, s->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&rid);
            if (e == EAGAIN || e == EINTR)
                continue;
            return fp_seterr(FP_ENET, "server receive: %s", zmq_strerror(e));
        }
        /* ROUTER always delivers [routing id][frame...] */
        if (!zmq_msg_more(&rid)) {
            zmq_msg_close(&rid);
            continue;
        }
        zmq_msg_init(&body);
        if (zmq_msg_recv(&body, s->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&rid);
            zmq_msg_close(&body);
            return fp_seterr(FP_ENET, "server receive: %s", zmq_strerror(e));
        }
        int more = zmq_msg_more(&body);
        const char *user = zmq_msg_gets(&body, "User-Id");
        uint8_t key[FP_NET_KEY_BYTES];
        long idx = -1;
        if (user && strlen(user) == 2 * FP_NET_KEY_BYTES &&
            fp_hex_decode(key, sizeof key, user, 2 * FP_NET_KEY_BYTES) == 0)
            idx = fp_allowlist_find(s->allow, key);
        if (idx < 0) {
            /* Cannot happen with our ZAP handler; refuse rather than guess. */
            if (more)
                drain_more(s->sock);
            zmq_msg_close(&rid);
            zmq_msg_close(&body);
            return fp_seterr(FP_EAUTH, "server: frame without an allow-listed User-Id dropped");
        }
        memcpy(peer, key, FP_NET_KEY_BYTES);
        char kn[20];
        fp_net_keyname(kn, key);
        if (more) {
            drain_more(s->sock);
            zmq_msg_close(&rid);
            zmq_msg_close(&body);
            return fp_seterr(FP_EPROTO, "client %s sent a multi-frame message; dropped", kn);
        }
        size_t rl = zmq_msg_size(&rid);
        if (rl >= 1 && rl <= RID_MAX) {
            memcpy(s->routes[idx].rid, zmq_msg_data(&rid), rl);
            s->routes[idx].rid_len = rl;
        }
        zmq_msg_close(&rid);
        int rc = copy_out(data, len, &body, "server receive");
        zmq_msg_close(&body);
        return rc;
    }
}

int fp_server_send(fp_server *s, const uint8_t peer[FP_NET_KEY_BYTES], const void *data, size_t len,
                   int timeout_ms)
{
    if (!s || !peer || (!data && len))
        return fp_seterr(FP_EINVAL, "fp_server_send: missing argument");
    char kn[20];
    fp_net_keyname(kn, peer);
    long idx = fp_allowlist_find(s->allow, peer);
    if (idx < 0)
        return fp_seterr(FP_EAUTH, "server send: client %s is not on the allow-list", kn);
    route *r = &s->routes[idx];
    if (r->rid_len == 0)
        return fp_seterr(FP_ENET, "server send: client %s has not connected", kn);
    if (len > s->opts.max_msg_size)
        return fp_seterr(FP_EINVAL, "server send to %s: frame of %zu bytes exceeds the limit %zu", kn,
                         len, s->opts.max_msg_size);
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        if (zmq_send(s->sock, r->rid, r->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
            break;
        int e = zmq_errno();
        if (e == EHOSTUNREACH)
            return fp_seterr(FP_ENET, "server send: client %s is no longer connected", kn);
        if (e != EAGAIN && e != EINTR)
            return fp_seterr(FP_ENET, "server send to %s: %s", kn, zmq_strerror(e));
        if (deadline >= 0 && fp_net_now_ms() >= deadline)
            return fp_seterr(FP_ETIMEOUT, "server send: queue to client %s full for %d ms", kn,
                             timeout_ms);
        /* A ROUTER is writable when any peer is; wait briefly and retry this one. */
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLOUT, 0};
        zmq_poll(&it, 1, 2);
    }
    /* The routing frame was accepted, so the pipe has room for this frame too. */
    while (zmq_send(s->sock, data, len, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        if (e != EINTR)
            return fp_seterr(FP_ENET, "server send to %s: %s", kn, zmq_strerror(e));
    }
    return 0;
}

/* ---- client ------------------------------------------------------------ */

static void close_socket(fp_client *c)
{
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        int zero = 0;
        zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero); /* frames of a dropped link are lost */
        zmq_close(c->sock);
        c->sock = NULL;
    }
    if (c->mon) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
    c->ready = 0;
}

static int open_socket(fp_client *c)
{
    static _Atomic unsigned long mon_counter;
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock)
        return fp_seterr(FP_ENET, "client: cannot create DEALER socket: %s", zmq_strerror(zmq_errno()));
    int rc = set_common(c->sock, &c->opts, "client");
    if (rc)
        return rc;
    int one = 1;
    /* IMMEDIATE: queue frames only on a connection whose handshake finished, so
     * nothing piles up for a server we cannot reach or authenticate. */
    SETOPT(c->sock, ZMQ_IMMEDIATE, one, "client");
    SETOPT(c->sock, ZMQ_RECONNECT_IVL, c->opts.reconnect_ms, "client");
    SETOPT(c->sock, ZMQ_RECONNECT_IVL_MAX, c->opts.reconnect_max_ms, "client");
    if (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->server_curve, 32) ||
        zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, c->curve_pk, 32) ||
        zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, c->curve_sk, 32))
        return fp_seterr(FP_ENET, "client: cannot configure CURVE: %s", zmq_strerror(zmq_errno()));
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://fp-client-monitor-%lu",
             atomic_fetch_add(&mon_counter, 1));
    if (zmq_socket_monitor(c->sock, mon_ep,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_DISCONNECTED) != 0)
        return fp_seterr(FP_ENET, "client: cannot monitor its socket: %s", zmq_strerror(zmq_errno()));
    c->mon = zmq_socket(c->ctx, ZMQ_PAIR);
    if (!c->mon || zmq_connect(c->mon, mon_ep) != 0)
        return fp_seterr(FP_ENET, "client: cannot attach the monitor: %s", zmq_strerror(zmq_errno()));
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return fp_seterr(FP_ENET, "client: cannot connect to %s: %s", c->endpoint,
                         zmq_strerror(zmq_errno()));
    return 0;
}

void fp_client_destroy(fp_client *c)
{
    if (!c)
        return;
    close_socket(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    sodium_memzero(c->curve_sk, sizeof c->curve_sk);
    free(c);
}

int fp_client_create(fp_client **out, const char *endpoint, const uint8_t server_pk[FP_NET_KEY_BYTES],
                     const fp_identity *id, const fp_net_opts *opts)
{
    if (!out || !endpoint || !server_pk || !id)
        return fp_seterr(FP_EINVAL, "fp_client_create: missing argument");
    *out = NULL;
    if (strlen(endpoint) >= sizeof((fp_client *)0)->endpoint)
        return fp_seterr(FP_EINVAL, "fp_client_create: endpoint too long");
    fp_client *c = calloc(1, sizeof *c);
    if (!c)
        return fp_seterr(FP_ENOMEM, "fp_client_create: out of memory");
    strcpy(c->endpoint, endpoint);
    if (opts)
        c->opts = *opts;
    else
        fp_net_opts_default(&c->opts);
    int rc = check_opts(&c->opts);
    if (!rc && fp_identity_pk_to_curve25519(c->server_curve, server_pk) != 0)
        rc = fp_seterr(FP_ECRYPTO, "client: the pinned server key is not a valid Ed25519 key");
    if (!rc)
        rc = fp_identity_curve25519(c->curve_pk, c->curve_sk, id);
    if (!rc && !(c->ctx = zmq_ctx_new()))
        rc = fp_seterr(FP_ENET, "client: cannot create a ZeroMQ context");
    if (!rc)
        rc = open_socket(c);
    if (rc) {
        fp_client_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

int fp_client_reconnect(fp_client *c)
{
    if (!c)
        return fp_seterr(FP_EINVAL, "fp_client_reconnect: missing client");
    close_socket(c);
    c->generation++;
    return open_socket(c);
}

uint64_t fp_client_generation(const fp_client *c) { return c ? c->generation : 0; }

/* Reads one monitor event; 1 and *ev, *val if there was one, 0 if none waiting. */
static int read_event(fp_client *c, uint16_t *ev, uint32_t *val)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    int ok = zmq_msg_size(&m) == 6 && zmq_msg_more(&m);
    if (ok) {
        const uint8_t *p = zmq_msg_data(&m);
        memcpy(ev, p, 2);
        memcpy(val, p + 2, 4);
    }
    zmq_msg_close(&m);
    drain_more(c->mon); /* the endpoint frame */
    return ok;
}

int fp_client_wait_ready(fp_client *c, int timeout_ms)
{
    if (!c)
        return fp_seterr(FP_EINVAL, "fp_client_wait_ready: missing client");
    int64_t deadline = deadline_of(timeout_ms);
    int failures = 0;
    for (;;) {
        uint16_t ev;
        uint32_t val;
        while (read_event(c, &ev, &val)) {
            if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
                c->ready = 1;
            } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
                c->ready = 0;
                return fp_seterr(FP_EAUTH, "server %s refused our key (ZAP status %u)", c->endpoint,
                                 val);
            } else if (ev == ZMQ_EVENT_DISCONNECTED) {
                if (!c->ready)
                    failures++; /* closed before the handshake completed */
                c->ready = 0;
            } else {
                c->ready = 0;
                failures++;
            }
        }
        if (c->ready)
            return 0;
        /* A server without the pinned key cannot decrypt our HELLO and drops the
         * connection; three such drops in a row are not a flaky network. */
        if (failures >= 3)
            return fp_seterr(FP_ECRYPTO,
                             "CURVE handshake with %s failed %d times: the server does not hold the "
                             "pinned key",
                             c->endpoint, failures);
        int w = wait_for(c->mon, ZMQ_POLLIN, deadline, "client");
        if (w < 0)
            return w;
        if (w == 0)
            return fp_seterr(FP_ETIMEOUT, "no completed handshake with %s within %d ms", c->endpoint,
                             timeout_ms);
    }
}

int fp_client_send(fp_client *c, const void *data, size_t len, int timeout_ms)
{
    if (!c || (!data && len))
        return fp_seterr(FP_EINVAL, "fp_client_send: missing argument");
    if (len > c->opts.max_msg_size)
        return fp_seterr(FP_EINVAL, "client send: frame of %zu bytes exceeds the limit %zu", len,
                         c->opts.max_msg_size);
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        if (zmq_send(c->sock, data, len, ZMQ_DONTWAIT) >= 0)
            return 0;
        int e = zmq_errno();
        if (e != EAGAIN && e != EINTR)
            return fp_seterr(FP_ENET, "client send to %s: %s", c->endpoint, zmq_strerror(e));
        int w = wait_for(c->sock, ZMQ_POLLOUT, deadline, "client send");
        if (w < 0)
            return w;
        if (w == 0)
            return fp_seterr(FP_ETIMEOUT, "client send: no usable connection to %s within %d ms",
                             c->endpoint, timeout_ms);
    }
}

int fp_client_recv(fp_client *c, void **data, size_t *len, int timeout_ms)
{
    if (!c || !data || !len)
        return fp_seterr(FP_EINVAL, "fp_client_recv: missing argument");
    *data = NULL;
    *len = 0;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        int w = wait_for(c->sock, ZMQ_POLLIN, deadline, "client receive");
        if (w < 0)
            return w;
        if (w == 0)
            return fp_seterr(FP_ETIMEOUT, "client: nothing received from %s within %d ms",
                             c->endpoint, timeout_ms);
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            if (e == EAGAIN || e == EINTR)
                continue;
            return fp_seterr(FP_ENET, "client receive from %s: %s", c->endpoint, zmq_strerror(e));
        }
        if (zmq_msg_more(&m)) {
            drain_more(c->sock);
            zmq_msg_close(&m);
            return fp_seterr(FP_EPROTO, "server %s sent a multi-frame message; dropped", c->endpoint);
        }
        int rc = copy_out(data, len, &m, "client receive");
        zmq_msg_close(&m);
        return rc;
    }
}
