/* The CURVE/ZAP transport over tcp://127.0.0.1: handshake and exchange, frames
 * bound to the authenticated key, refusal of keys off the allow-list and of a
 * client pinning the wrong server key, bounded frame size. */
#include <stdlib.h>
#include <string.h>

#include "fedproxy/msg.h"
#include "fedproxy/transport.h"
#include "fp_test.h"

static fp_identity server_id, alice, bob, eve;

static fp_net_opts test_opts(void)
{
    fp_net_opts o;
    fp_net_opts_default(&o);
    o.max_msg_size = 64 * 1024;
    o.reconnect_ms = 50;
    o.reconnect_max_ms = 200;
    o.linger_ms = 0;
    return o;
}

static void test_exchange(fp_server *srv, const char *ep, const fp_net_opts *o)
{
    fp_client *c = NULL;
    CHECK_OK(fp_client_create(&c, ep, server_id.pk, &alice, o));
    CHECK_OK(fp_client_wait_ready(c, 5000));
    CHECK_OK(fp_client_send(c, "hello", 5, 2000));
    uint8_t peer[32];
    void *data = NULL;
    size_t len = 0;
    CHECK_OK(fp_server_recv(srv, peer, &data, &len, 5000));
    CHECK(len == 5 && data && memcmp(data, "hello", 5) == 0);
    CHECK(memcmp(peer, alice.pk, 32) == 0); /* bound to the CURVE-authenticated key */
    free(data);
    CHECK_OK(fp_server_send(srv, alice.pk, "welcome", 7, 2000));
    CHECK_OK(fp_client_recv(c, &data, &len, 5000));
    CHECK(len == 7 && data && memcmp(data, "welcome", 7) == 0);
    free(data);

    /* A signed envelope goes through and passes the guard; Bob forwarding
     * Alice's message (a forged sender) is caught because the transport says
     * who it really came from. */
    fp_client *cb = NULL;
    CHECK_OK(fp_client_create(&cb, ep, server_id.pk, &bob, o));
    CHECK_OK(fp_client_wait_ready(cb, 5000));
    uint8_t session[FP_MSG_SESSION_BYTES] = {1, 2, 3};
    fp_msg_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.session, session, sizeof session);
    h.round = 1;
    h.stage = FP_STAGE_TRAIN;
    h.type = FP_MSG_UPDATE;
    h.kind = FP_PAYLOAD_BYTES;
    memcpy(h.sender, alice.pk, 32);
    h.seq = 1;
    uint8_t *env = NULL;
    size_t env_len = 0;
    CHECK_OK(fp_msg_encode_alloc(&env, &env_len, &h, "delta", 5, &alice));
    uint8_t allow[2][32];
    memcpy(allow[0], alice.pk, 32);
    memcpy(allow[1], bob.pk, 32);
    fp_msg_guard *g = NULL;
    CHECK_OK(fp_msg_guard_create(&g, session, (const uint8_t(*)[32])allow, 2, FP_GUARD_EXACT));
    CHECK_OK(fp_msg_guard_set_stage(g, 1, FP_STAGE_TRAIN));
    const fp_client *senders[2] = {cb, c};
    const uint8_t *expect_peer[2] = {bob.pk, alice.pk};
    int expect_rc[2] = {FP_EAUTH, 0};
    for (int i = 0; i < 2; i++) {
        CHECK_OK(fp_client_send((fp_client *)senders[i], env, env_len, 2000));
        CHECK_OK(fp_server_recv(srv, peer, &data, &len, 5000));
        CHECK(memcmp(peer, expect_peer[i], 32) == 0);
        fp_msg m;
        CHECK_OK(fp_msg_decode(&m, data, len, 1024));
        const char *why = NULL;
        int rc = fp_msg_guard_check(g, &m, peer, &why);
        CHECKF(rc == expect_rc[i], "sender %d: rc %d (%s)", i, rc, fp_errmsg());
        if (i == 0)
            CHECK(why && strcmp(why, "forged-sender") == 0);
        free(data);
    }
    fp_msg_guard_destroy(g);
    free(env);

    /* A frame over the server's limit: ZeroMQ drops the connection, nothing
     * is delivered; the client reconnects and a normal frame passes again. */
    fp_net_opts big = *o;
    big.max_msg_size = 1 << 20;
    fp_client *cbig = NULL;
    CHECK_OK(fp_client_create(&cbig, ep, server_id.pk, &bob, &big));
    CHECK_OK(fp_client_wait_ready(cbig, 5000));
    uint8_t *huge = calloc(1, o->max_msg_size + 1);
    CHECK_OK(fp_client_send(cbig, huge, o->max_msg_size + 1, 2000));
    CHECK_ERR(fp_server_recv(srv, peer, &data, &len, 500), FP_ETIMEOUT);
    free(huge);
    CHECK_OK(fp_client_send(cbig, "small", 5, 5000));
    CHECK_OK(fp_server_recv(srv, peer, &data, &len, 5000));
    CHECK(len == 5 && memcmp(peer, bob.pk, 32) == 0);
    free(data);
    /* the sender's own limit */
    CHECK_ERR(fp_client_send(c, "x", o->max_msg_size + 1, 100), FP_EINVAL);

    fp_client_destroy(cbig);
    fp_client_destroy(cb);
    fp_client_destroy(c);
}

static void test_refusals(fp_server *srv, const char *ep, const fp_net_opts *o)
{
    fp_server_stats before, after;
    fp_server_get_stats(srv, &before);
    /* Eve's key is not on the allow-list: ZAP refuses her handshake, and
     * nothing she sends ever arrives. */
    fp_client *ce = NULL;
    CHECK_OK(fp_client_create(&ce, ep, server_id.pk, &eve, o));
    CHECK_ERR(fp_client_wait_ready(ce, 5000), FP_EAUTH);
    CHECK_ERR(fp_client_send(ce, "let me in", 9, 300), FP_ETIMEOUT);
    uint8_t peer[32];
    void *data = NULL;
    size_t len = 0;
    CHECK_ERR(fp_server_recv(srv, peer, &data, &len, 500), FP_ETIMEOUT);
    fp_server_get_stats(srv, &after);
    CHECK(after.zap_refused > before.zap_refused);
    CHECK(after.zap_accepted == before.zap_accepted);
    fp_client_destroy(ce);

    /* Alice (allowed) pinning the wrong server key: the server cannot open her
     * HELLO, the handshake never completes, nothing gets through. */
    fp_client *cw = NULL;
    CHECK_OK(fp_client_create(&cw, ep, eve.pk, &alice, o));
    CHECK_ERR(fp_client_wait_ready(cw, 5000), FP_ECRYPTO);
    CHECK_ERR(fp_client_send(cw, "hi", 2, 300), FP_ETIMEOUT);
    CHECK_ERR(fp_server_recv(srv, peer, &data, &len, 300), FP_ETIMEOUT);
    fp_client_destroy(cw);

    /* sending to a client that never connected */
    fp_identity_wipe(&eve);
    CHECK_ERR(fp_server_send(srv, eve.pk, "x", 1, 100), FP_EAUTH);
}

int main(void)
{
    fp_identity *ids[] = {&server_id, &alice, &bob, &eve};
    unsigned char seed[32];
    for (int i = 0; i < 4; i++) {
        memset(seed, 40 + i, sizeof seed);
        CHECK_OK(fp_identity_from_seed(ids[i], seed));
    }
    uint8_t keys[2][32];
    memcpy(keys[0], alice.pk, 32);
    memcpy(keys[1], bob.pk, 32);
    fp_allowlist *allow = NULL;
    CHECK_OK(fp_allowlist_from_keys(&allow, (const uint8_t(*)[32])keys, 2));
    fp_net_opts o = test_opts();
    fp_server *srv = NULL;
    CHECK_OK(fp_server_create(&srv, "tcp://127.0.0.1:0", &server_id, allow, &o));
    fp_allowlist_free(allow); /* the server keeps its own copy */
    char ep[256] = "";
    if (srv) {
        CHECK_OK(fp_server_endpoint(srv, ep, sizeof ep));
        CHECK(strncmp(ep, "tcp://127.0.0.1:", 16) == 0 && strcmp(ep, "tcp://127.0.0.1:0") != 0);
        CHECK_ERR(fp_server_send(srv, alice.pk, "x", 1, 100), FP_ENET); /* not connected yet */
        test_exchange(srv, ep, &o);
        test_refusals(srv, ep, &o);
    }
    fp_server_destroy(srv);
    /* binding a bad endpoint fails with a message */
    CHECK_OK(fp_allowlist_from_keys(&allow, (const uint8_t(*)[32])keys, 2));
    srv = NULL;
    CHECK_ERR(fp_server_create(&srv, "tcp://256.1.1.1:1", &server_id, allow, &o), FP_ENET);
    CHECK(srv == NULL);
    fp_allowlist_free(allow);
    for (int i = 0; i < 4; i++)
        fp_identity_wipe(ids[i]);
    return fp_test_report("test_transport");
}
