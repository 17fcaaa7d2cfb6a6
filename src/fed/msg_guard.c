/* Replay, ordering, session/round/stage and sender checks (see fedproxy/msg.h). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "fedproxy/msg.h"

struct fp_msg_guard {
    uint8_t session[FP_MSG_SESSION_BYTES];
    uint32_t round;
    uint8_t stage;
    int policy;
    size_t n;
    uint8_t (*keys)[FP_MSG_SENDER_BYTES];
    uint64_t *last_seq; /* per key: highest accepted seq, 0 = none yet */
};

int fp_msg_guard_create(fp_msg_guard **out, const uint8_t session[FP_MSG_SESSION_BYTES],
                        const uint8_t (*allow)[FP_MSG_SENDER_BYTES], size_t n_allow, int policy)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_msg_guard_create: missing output");
    *out = NULL;
    if (!session || (!allow && n_allow) || (policy != FP_GUARD_EXACT && policy != FP_GUARD_FOLLOW))
        return fp_seterr(FP_EINVAL, "fp_msg_guard_create: bad session, allow-list or policy");
    fp_msg_guard *g = calloc(1, sizeof *g);
    if (!g)
        return fp_seterr(FP_ENOMEM, "fp_msg_guard_create: out of memory");
    if (n_allow) {
        g->keys = malloc(n_allow * sizeof *g->keys);
        g->last_seq = calloc(n_allow, sizeof *g->last_seq);
        if (!g->keys || !g->last_seq) {
            fp_msg_guard_destroy(g);
            return fp_seterr(FP_ENOMEM, "fp_msg_guard_create: out of memory for %zu keys", n_allow);
        }
        memcpy(g->keys, allow, n_allow * sizeof *g->keys);
    }
    g->n = n_allow;
    memcpy(g->session, session, FP_MSG_SESSION_BYTES);
    g->policy = policy;
    g->stage = FP_STAGE_JOIN;
    *out = g;
    return 0;
}

void fp_msg_guard_destroy(fp_msg_guard *g)
{
    if (!g)
        return;
    free(g->keys);
    free(g->last_seq);
    free(g);
}

int fp_msg_guard_set_stage(fp_msg_guard *g, uint32_t round, uint8_t stage)
{
    if (!g || stage > FP_STAGE_MAX)
        return fp_seterr(FP_EINVAL, "fp_msg_guard_set_stage: bad guard or stage %u", stage);
    if (round < g->round)
        return fp_seterr(FP_ESTATE, "guard: cannot go back from round %u to round %u", g->round, round);
    g->round = round;
    g->stage = stage;
    return 0;
}

static long find_key(const fp_msg_guard *g, const uint8_t key[FP_MSG_SENDER_BYTES])
{
    for (size_t i = 0; i < g->n; i++)
        if (memcmp(g->keys[i], key, FP_MSG_SENDER_BYTES) == 0)
            return (long)i;
    return -1;
}

uint64_t fp_msg_guard_last_seq(const fp_msg_guard *g, const uint8_t sender[FP_MSG_SENDER_BYTES])
{
    long i = g && sender ? find_key(g, sender) : -1;
    return i < 0 ? 0 : g->last_seq[i];
}

static int reject(const char **reason, const char *token, int code)
{
    if (reason)
        *reason = token;
    return code;
}

int fp_msg_guard_check(fp_msg_guard *g, const fp_msg *m, const uint8_t peer_key[FP_MSG_SENDER_BYTES],
                       const char **reason)
{
    if (reason)
        *reason = NULL;
    if (!g || !m || !peer_key)
        return reject(reason, "bad-argument",
                      fp_seterr(FP_EINVAL, "fp_msg_guard_check: missing argument"));
    const fp_msg_header *h = &m->h;
    char who[20], peer[20];
    sodium_bin2hex(who, 17, h->sender, 8);
    memcpy(who + 16, "..", 3);
    sodium_bin2hex(peer, 17, peer_key, 8);
    memcpy(peer + 16, "..", 3);
    const char *tn = fp_msg_type_name(h->type);

    if (sodium_memcmp(h->sender, peer_key, FP_MSG_SENDER_BYTES) != 0)
        return reject(reason, "forged-sender",
                      fp_seterr(FP_EAUTH, "%s seq %llu claims sender %s but came from peer %s", tn,
                                (unsigned long long)h->seq, who, peer));
    long k = find_key(g, h->sender);
    if (k < 0)
        return reject(reason, "unknown-sender",
                      fp_seterr(FP_EAUTH, "%s from %s: sender is not on the allow-list", tn, who));
    if (sodium_memcmp(h->session, g->session, FP_MSG_SESSION_BYTES) != 0) {
        char got[33], want[33];
        sodium_bin2hex(got, sizeof got, h->session, FP_MSG_SESSION_BYTES);
        sodium_bin2hex(want, sizeof want, g->session, FP_MSG_SESSION_BYTES);
        return reject(reason, "wrong-session",
                      fp_seterr(FP_EPROTO, "%s from %s: session %s, expected %s", tn, who, got, want));
    }
    if (h->round < g->round)
        return reject(reason, "old-round",
                      fp_seterr(FP_EPROTO, "%s from %s: from round %u, the current round is %u", tn,
                                who, h->round, g->round));
    if (g->policy == FP_GUARD_EXACT) {
        if (h->round != g->round)
            return reject(reason, "wrong-round",
                          fp_seterr(FP_EPROTO, "%s from %s: for round %u, the current round is %u",
                                    tn, who, h->round, g->round));
        if (h->stage != g->stage)
            return reject(reason, "wrong-stage",
                          fp_seterr(FP_EPROTO, "%s from %s: stage %s in round %u, expected stage %s",
                                    tn, who, fp_msg_stage_name(h->stage), h->round,
                                    fp_msg_stage_name(g->stage)));
    } else if (h->round == g->round && h->stage < g->stage) {
        return reject(reason, "wrong-stage",
                      fp_seterr(FP_EPROTO, "%s from %s: stage %s in round %u, already at stage %s", tn,
                                who, fp_msg_stage_name(h->stage), h->round,
                                fp_msg_stage_name(g->stage)));
    }
    if (h->seq <= g->last_seq[k])
        return reject(reason, "replay",
                      fp_seterr(FP_EREPLAY, "%s from %s: seq %llu not above the last accepted %llu",
                                tn, who, (unsigned long long)h->seq,
                                (unsigned long long)g->last_seq[k]));
    g->last_seq[k] = h->seq;
    if (g->policy == FP_GUARD_FOLLOW) {
        g->round = h->round;
        g->stage = h->stage;
    }
    return 0;
}
