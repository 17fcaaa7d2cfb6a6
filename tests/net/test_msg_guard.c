/* The guard: replays, out-of-order, previous rounds, wrong stage or session,
 * forged and unknown senders are refused, with a reason; refusals change nothing. */
#include <stdlib.h>
#include <string.h>

#include "fedproxy/msg.h"
#include "fp_test.h"

static fp_identity server, alice, bob, eve;
static uint8_t session[FP_MSG_SESSION_BYTES];

/* Encodes and decodes a real message, so the guard sees what a peer would send. */
typedef struct wire {
    uint8_t *buf;
    fp_msg m;
} wire;

static wire make(const fp_identity *from, uint32_t round, uint8_t stage, uint64_t seq,
                 const uint8_t *sess)
{
    fp_msg_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.session, sess ? sess : session, FP_MSG_SESSION_BYTES);
    h.round = round;
    h.stage = stage;
    h.type = FP_MSG_UPDATE;
    h.kind = FP_PAYLOAD_BYTES;
    memcpy(h.sender, from->pk, 32);
    h.seq = seq;
    wire w;
    size_t len;
    CHECK_OK(fp_msg_encode_alloc(&w.buf, &len, &h, "payload", 7, from));
    CHECK_OK(fp_msg_decode(&w.m, w.buf, len, 1024));
    return w;
}

/* Runs the check and frees the message; returns the code, sets *reason. */
static int check(fp_msg_guard *g, wire w, const fp_identity *peer, const char **reason)
{
    fp_errclear();
    int rc = fp_msg_guard_check(g, &w.m, peer->pk, reason);
    if (rc && !fp_errmsg()[0])
        rc = 12345; /* every rejection must say why */
    free(w.buf);
    return rc;
}

static int same_reason(const char *why, const char *token)
{
    return token == NULL ? why == NULL : why != NULL && strcmp(why, token) == 0;
}

#define EXPECT(g, w, peer, code, token)                                                          \
    do {                                                                                         \
        const char *why_ = NULL;                                                                 \
        int rc2_ = check((g), (w), (peer), &why_);                                               \
        CHECKF(rc2_ == (code) && same_reason(why_, (token)),                                     \
               "rc %d reason %s msg '%s'", rc2_, why_ ? why_ : "(none)", fp_errmsg());         \
    } while (0)

static void test_server_guard(void)
{
    uint8_t allow[2][32];
    memcpy(allow[0], alice.pk, 32);
    memcpy(allow[1], bob.pk, 32);
    fp_msg_guard *g = NULL;
    CHECK_OK(fp_msg_guard_create(&g, session, (const uint8_t(*)[32])allow, 2, FP_GUARD_EXACT));
    CHECK_OK(fp_msg_guard_set_stage(g, 3, FP_STAGE_TRAIN));

    EXPECT(g, make(&alice, 3, FP_STAGE_TRAIN, 1, NULL), &alice, 0, NULL);
    /* the same message again, and an earlier seq: replay */
    EXPECT(g, make(&alice, 3, FP_STAGE_TRAIN, 1, NULL), &alice, FP_EREPLAY, "replay");
    EXPECT(g, make(&alice, 3, FP_STAGE_TRAIN, 5, NULL), &alice, 0, NULL);
    EXPECT(g, make(&alice, 3, FP_STAGE_TRAIN, 4, NULL), &alice, FP_EREPLAY, "replay");
    CHECK(strstr(fp_errmsg(), "seq 4") && strstr(fp_errmsg(), "5"));
    CHECK(fp_msg_guard_last_seq(g, alice.pk) == 5);
    /* seq 0 is never valid: nothing accepted counts as 0 */
    EXPECT(g, make(&bob, 3, FP_STAGE_TRAIN, 0, NULL), &bob, FP_EREPLAY, "replay");

    /* previous round, future round, wrong stage, other session */
    EXPECT(g, make(&bob, 2, FP_STAGE_TRAIN, 10, NULL), &bob, FP_EPROTO, "old-round");
    CHECK(strstr(fp_errmsg(), "round 2") != NULL);
    EXPECT(g, make(&bob, 4, FP_STAGE_TRAIN, 11, NULL), &bob, FP_EPROTO, "wrong-round");
    EXPECT(g, make(&bob, 3, FP_STAGE_MASKED, 12, NULL), &bob, FP_EPROTO, "wrong-stage");
    CHECK(strstr(fp_errmsg(), "MASKED") && strstr(fp_errmsg(), "TRAIN"));
    uint8_t other[FP_MSG_SESSION_BYTES];
    memset(other, 0xee, sizeof other);
    EXPECT(g, make(&bob, 3, FP_STAGE_TRAIN, 13, other), &bob, FP_EPROTO, "wrong-session");

    /* forged sender: Alice's (validly signed) message arriving on Bob's
     * authenticated connection, e.g. Bob replaying what the server forwarded */
    EXPECT(g, make(&alice, 3, FP_STAGE_TRAIN, 6, NULL), &bob, FP_EAUTH, "forged-sender");
    /* unknown sender, even when it is who it claims to be */
    EXPECT(g, make(&eve, 3, FP_STAGE_TRAIN, 1, NULL), &eve, FP_EAUTH, "unknown-sender");

    /* none of the refusals moved anything: Bob's seq 1 is still fresh, Alice's 6 too */
    CHECK(fp_msg_guard_last_seq(g, bob.pk) == 0);
    EXPECT(g, make(&bob, 3, FP_STAGE_TRAIN, 1, NULL), &bob, 0, NULL);
    EXPECT(g, make(&alice, 3, FP_STAGE_TRAIN, 6, NULL), &alice, 0, NULL);

    /* the server moves on; the old stage's messages are refused now */
    CHECK_OK(fp_msg_guard_set_stage(g, 3, FP_STAGE_MASKED));
    EXPECT(g, make(&bob, 3, FP_STAGE_TRAIN, 2, NULL), &bob, FP_EPROTO, "wrong-stage");
    EXPECT(g, make(&bob, 3, FP_STAGE_MASKED, 2, NULL), &bob, 0, NULL);
    CHECK_OK(fp_msg_guard_set_stage(g, 4, FP_STAGE_CONFIG));
    EXPECT(g, make(&bob, 3, FP_STAGE_MASKED, 3, NULL), &bob, FP_EPROTO, "old-round");
    /* rounds never go back */
    CHECK_ERR(fp_msg_guard_set_stage(g, 3, FP_STAGE_DONE), FP_ESTATE);
    fp_msg_guard_destroy(g);
}

static void test_client_guard(void)
{
    fp_msg_guard *g = NULL;
    CHECK_OK(fp_msg_guard_create(&g, session, (const uint8_t(*)[32])server.pk, 1, FP_GUARD_FOLLOW));
    EXPECT(g, make(&server, 1, FP_STAGE_CONFIG, 1, NULL), &server, 0, NULL);
    EXPECT(g, make(&server, 1, FP_STAGE_TRAIN, 2, NULL), &server, 0, NULL);
    /* going back a stage within the round is refused */
    EXPECT(g, make(&server, 1, FP_STAGE_CONFIG, 3, NULL), &server, FP_EPROTO, "wrong-stage");
    EXPECT(g, make(&server, 1, FP_STAGE_TRAIN, 3, NULL), &server, 0, NULL);
    EXPECT(g, make(&server, 2, FP_STAGE_JOIN, 4, NULL), &server, 0, NULL);
    EXPECT(g, make(&server, 1, FP_STAGE_DONE, 5, NULL), &server, FP_EPROTO, "old-round");
    /* a client relaying something that claims to be from the server */
    EXPECT(g, make(&server, 2, FP_STAGE_JOIN, 6, NULL), &alice, FP_EAUTH, "forged-sender");
    EXPECT(g, make(&alice, 2, FP_STAGE_JOIN, 1, NULL), &alice, FP_EAUTH, "unknown-sender");
    fp_msg_guard_destroy(g);

    CHECK_ERR(fp_msg_guard_create(&g, session, NULL, 0, 7), FP_EINVAL);
    CHECK(g == NULL);
}

int main(void)
{
    unsigned char seed[32];
    fp_identity *ids[] = {&server, &alice, &bob, &eve};
    for (int i = 0; i < 4; i++) {
        memset(seed, 10 + i, sizeof seed);
        CHECK_OK(fp_identity_from_seed(ids[i], seed));
    }
    memset(session, 0x33, sizeof session);
    test_server_guard();
    test_client_guard();
    for (int i = 0; i < 4; i++)
        fp_identity_wipe(ids[i]);
    return fp_test_report("test_msg_guard");
}
