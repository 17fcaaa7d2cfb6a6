/* The server's ZAP handler: a thread answering libzmq's authentication requests
 * (RFC 27, ZAP 1.0) on inproc://zeromq.zap.01 of the server's context. It admits
 * a CURVE client only if its key is the Curve25519 form of an allow-listed
 * Ed25519 key, and answers with that Ed25519 key in hex as User-Id, which libzmq
 * attaches to every frame from the connection (zmq_msg_gets "User-Id"). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>
#include <zmq.h>

#include "error_internal.h"
#include "net_internal.h"
#include "zap.h"

#define ZAP_FRAMES 7 /* version, request id, domain, address, routing id, mechanism, key */
#define ZAP_FRAME_MAX 256

static void send_reply(void *sock, const uint8_t *req_id, size_t req_id_len, const char *code,
                       const char *text, const char *user_id)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, req_id, req_id_len, ZMQ_SNDMORE);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user_id, strlen(user_id), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0); /* metadata: none */
}

/* Reads one request (all its frames, however many) into f; returns the frame
 * count, or -1 when the context is shutting down. Oversized frames are cut
 * (zmq_recv truncates) and marked by their true size in len[]. */
static int recv_request(void *sock, uint8_t f[ZAP_FRAMES][ZAP_FRAME_MAX], size_t len[ZAP_FRAMES])
{
    int n = 0;
    for (;;) {
        uint8_t scratch[ZAP_FRAME_MAX];
        uint8_t *dst = n < ZAP_FRAMES ? f[n] : scratch;
        int r = zmq_recv(sock, dst, ZAP_FRAME_MAX, 0);
        if (r < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return -1;
        }
        if (n < ZAP_FRAMES)
            len[n] = (size_t)r;
        n++;
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
        if (!more)
            return n;
    }
}

static int eq(const uint8_t *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

static void *zap_main(void *arg)
{
    fp_zap *z = arg;
    uint8_t f[ZAP_FRAMES][ZAP_FRAME_MAX];
    size_t len[ZAP_FRAMES];
    for (;;) {
        int n = recv_request(z->sock, f, len);
        if (n < 0)
            break; /* ETERM: the server is shutting down */
        /* REP must answer every request, even one without a request id
         * (libzmq never sends such a thing). */
        const uint8_t *rid = f[1];
        size_t rid_len = n < 2 ? 0 : len[1] <= ZAP_FRAME_MAX ? len[1] : ZAP_FRAME_MAX;
        if (n != ZAP_FRAMES || !eq(f[0], len[0], "1.0") || !eq(f[2], len[2], FP_NET_ZAP_DOMAIN) ||
            !eq(f[5], len[5], "CURVE") || len[6] != 32) {
            atomic_fetch_add(&z->refused, 1);
            send_reply(z->sock, rid, rid_len, "400", "not a fedproxy CURVE client", "");
            continue;
        }
        long idx = fp_allowlist_find_curve(z->allow, f[6]);
        if (idx < 0) {
            atomic_fetch_add(&z->refused, 1);
            char hex[65];
            sodium_bin2hex(hex, sizeof hex, f[6], 32);
            char addr[64];
            size_t al = len[3] < sizeof addr - 1 ? len[3] : sizeof addr - 1;
            memcpy(addr, f[3], al);
            addr[al] = '\0';
            /* A refused client retries every reconnect interval; say so at
             * most once a second rather than flood the log. */
            int64_t now = fp_net_now_ms();
            if (now - z->last_warn_ms >= 1000) {
                z->last_warn_ms = now;
                fp_warn("refused connection from %s: its key (Curve25519 %.16s..) is not on "
                        "the allow-list", addr, hex);
            }
            send_reply(z->sock, rid, rid_len, "400", "key not allowed", "");
            continue;
        }
        char user[2 * FP_NET_KEY_BYTES + 1];
        sodium_bin2hex(user, sizeof user, fp_allowlist_key(z->allow, (size_t)idx), FP_NET_KEY_BYTES);
        atomic_fetch_add(&z->accepted, 1);
        send_reply(z->sock, rid, rid_len, "200", "OK", user);
    }
    zmq_close(z->sock);
    z->sock = NULL;
    return NULL;
}

int fp_zap_start(fp_zap *z, void *ctx, const fp_allowlist *allow)
{
    memset(z, 0, sizeof *z);
    z->allow = allow;
    atomic_init(&z->accepted, 0);
    atomic_init(&z->refused, 0);
    /* Bound here, before the server socket exists, so that no handshake can
     * ever happen without the handler: the server fails closed. */
    z->sock = zmq_socket(ctx, ZMQ_REP);
    if (!z->sock)
        return fp_seterr(FP_ENET, "ZAP handler: cannot create socket: %s", zmq_strerror(zmq_errno()));
    int linger = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(z->sock, "inproc://zeromq.zap.01") != 0) {
        int e = zmq_errno();
        zmq_close(z->sock);
        z->sock = NULL;
        return fp_seterr(FP_ENET, "ZAP handler: cannot bind inproc://zeromq.zap.01: %s",
                         zmq_strerror(e));
    }
    if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
        zmq_close(z->sock);
        z->sock = NULL;
        return fp_seterr(FP_ENET, "ZAP handler: cannot start its thread");
    }
    z->running = 1;
    return 0;
}

void fp_zap_join(fp_zap *z)
{
    if (z->running)
        pthread_join(z->thread, NULL);
    z->running = 0;
}
