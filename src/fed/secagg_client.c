/* SecAgg+ client state machine: advertise, share keys, mask input, unmask.
 *
 * Every step validates its whole input before changing anything, so a
 * rejected message leaves the client where it was; only FP_EABORT is final. */
#include "secagg_internal.h"
#include "error_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { C_NEW, C_ADVERTISED, C_SHARED, C_MASKED, C_DONE, C_ABORTED };

struct fp_secagg_client {
    sa_ctx ctx;
    uint32_t me, my_idx;
    int state;
    fp_identity ident; /* wiped after signing the advertisement */
    uint8_t c_pk[32], c_sk[32]; /* encryption pair (stage 1-2 only) */
    uint8_t s_pk[32], s_sk[32]; /* masking pair (stage 2 only) */
    uint8_t b[32];              /* self-mask seed (stage 1-2 only) */
    uint32_t *nbr;              /* k graph neighbours, ascending indices */
    /* Neighbours that advertised (from KEYS), ascending, with their keys. */
    uint32_t n_u1;
    uint32_t *u1;
    uint8_t (*u1_cpk)[32], (*u1_spk)[32];
    uint8_t own_s[SA_SHARE_BYTES], own_b[SA_SHARE_BYTES]; /* my shares of my secrets */
    /* Shares held for neighbours (from RELAY), per u1 slot. */
    uint8_t *held;
    uint8_t (*hold_s)[SA_SHARE_BYTES], (*hold_b)[SA_SHARE_BYTES];
};

static const char *state_name(int s)
{
    static const char *names[] = {"new", "advertised", "shared keys", "sent masked input", "done",
                                  "aborted"};
    return names[s];
}

static int bad_state(const fp_secagg_client *c, const char *call, int want)
{
    if (c->state == C_ABORTED)
        return fp_seterr(FP_ESTATE, "secagg client %u: %s after the round was aborted", c->me, call);
    return fp_seterr(FP_ESTATE, "secagg client %u: %s called in state '%s', expected '%s'", c->me,
                     call, state_name(c->state), state_name(want));
}

static void wipe_ephemeral(fp_secagg_client *c)
{
    sodium_memzero(c->c_sk, sizeof c->c_sk);
    sodium_memzero(c->s_sk, sizeof c->s_sk);
    sodium_memzero(c->b, sizeof c->b);
}

static int abort_round(fp_secagg_client *c)
{
    c->state = C_ABORTED;
    wipe_ephemeral(c);
    return FP_EABORT;
}

int fp_secagg_client_new(fp_secagg_client **out, const fp_secagg_params *p, uint32_t my_id,
                         const fp_identity *identity)
{
    if (!out || !identity)
        return fp_seterr(FP_EINVAL, "fp_secagg_client_new: NULL argument");
    *out = NULL;
    fp_secagg_client *c = calloc(1, sizeof *c);
    if (!c)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for a client");
    int rc = sa_ctx_init(&c->ctx, p);
    if (rc) {
        free(c);
        return rc;
    }
    int64_t idx = sa_index_of(&c->ctx, my_id);
    if (idx < 0) {
        fp_secagg_client_free(c);
        return fp_seterr(FP_ENOTFOUND, "secagg: client %u is not in the roster", my_id);
    }
    if (sodium_memcmp(c->ctx.sign_pk[idx], identity->pk, 32) != 0) {
        fp_secagg_client_free(c);
        return fp_seterr(FP_EAUTH, "secagg: the identity given is not the roster key of client %u",
                         my_id);
    }
    c->me = my_id;
    c->my_idx = (uint32_t)idx;
    c->nbr = malloc(sizeof *c->nbr * c->ctx.k);
    if (!c->nbr) {
        fp_secagg_client_free(c);
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for %u neighbours", p->degree);
    }
    sa_graph_row(&c->ctx, c->my_idx, c->nbr);
    c->ident = *identity;
    c->state = C_NEW;
    *out = c;
    return 0;
}

static void free_u1(fp_secagg_client *c)
{
    free(c->u1);
    free(c->u1_cpk);
    free(c->u1_spk);
    if (c->held)
        sodium_memzero(c->held, c->n_u1);
    if (c->hold_s)
        sodium_memzero(c->hold_s, sizeof *c->hold_s * c->n_u1);
    if (c->hold_b)
        sodium_memzero(c->hold_b, sizeof *c->hold_b * c->n_u1);
    free(c->held);
    free(c->hold_s);
    free(c->hold_b);
    c->u1 = NULL;
    c->u1_cpk = c->u1_spk = NULL;
    c->held = NULL;
    c->hold_s = c->hold_b = NULL;
    c->n_u1 = 0;
}

void fp_secagg_client_free(fp_secagg_client *c)
{
    if (!c)
        return;
    free_u1(c);
    free(c->nbr);
    sa_ctx_free(&c->ctx);
    sodium_memzero(c, sizeof *c);
    free(c);
}

int fp_secagg_client_advertise(fp_secagg_client *c, uint8_t **out, size_t *out_len)
{
    if (!c || !out || !out_len)
        return fp_seterr(FP_EINVAL, "fp_secagg_client_advertise: NULL argument");
    if (c->state != C_NEW)
        return bad_state(c, "advertise", C_NEW);
    /* Fresh pairs for this client object (= this round): never reused. */
    randombytes_buf(c->c_sk, 32);
    randombytes_buf(c->s_sk, 32);
    crypto_scalarmult_base(c->c_pk, c->c_sk);
    crypto_scalarmult_base(c->s_pk, c->s_sk);
    uint8_t *m;
    int rc = sa_msg_new(&m, SA_ADV_BODY, &c->ctx, FP_SECAGG_MSG_ADVERTISE, c->me,
                        FP_SECAGG_SERVER_ID);
    if (rc)
        return rc;
    uint8_t signed_bytes[SA_SIGNED_BYTES];
    sa_signed_bytes(signed_bytes, &c->ctx, c->me, c->c_pk, c->s_pk);
    uint8_t *body = m + FP_SECAGG_HEADER_BYTES;
    memcpy(body, c->c_pk, 32);
    memcpy(body + 32, c->s_pk, 32);
    rc = fp_identity_sign(body + 64, signed_bytes, sizeof signed_bytes, &c->ident);
    if (rc) {
        free(m);
        return rc;
    }
    fp_identity_wipe(&c->ident); /* the long-term secret is not needed again */
    c->state = C_ADVERTISED;
    *out = m;
    *out_len = FP_SECAGG_HEADER_BYTES + SA_ADV_BODY;
    return 0;
}

int fp_secagg_client_share_keys(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                                const uint8_t *keys_msg, size_t keys_len)
{
    if (!c || !out || !out_len)
        return fp_seterr(FP_EINVAL, "fp_secagg_client_share_keys: NULL argument");
    if (c->state != C_ADVERTISED)
        return bad_state(c, "share_keys", C_ADVERTISED);
    sa_hdr h;
    int rc = sa_hdr_expect(&h, keys_msg, keys_len, &c->ctx, FP_SECAGG_MSG_KEYS, c->me);
    if (rc)
        return rc;
    if (h.from != FP_SECAGG_SERVER_ID)
        return fp_seterr(FP_EPROTO, "secagg client %u: KEYS message not from the server", c->me);
    sa_rd r = {keys_msg + FP_SECAGG_HEADER_BYTES, keys_len - FP_SECAGG_HEADER_BYTES, 0, "KEYS"};
    uint32_t count;
    if ((rc = sa_rd_count(&r, &count, SA_KEYS_ENTRY)))
        return rc;
    if (count > c->ctx.k)
        return fp_seterr(FP_EPROTO, "secagg client %u: KEYS lists %u peers, it has %u neighbours",
                         c->me, count, c->ctx.k);
    const uint8_t *entries;
    if ((rc = sa_rd_bytes(&r, &entries, (size_t)count * SA_KEYS_ENTRY)) || (rc = sa_rd_end(&r)))
        return rc;

    /* Validate every advertisement before keeping anything. */
    uint32_t n_u1 = count;
    uint32_t *u1 = malloc(sizeof *u1 * (n_u1 + 1));
    uint8_t(*cpk)[32] = malloc(32 * (size_t)(n_u1 + 1));
    uint8_t(*spk)[32] = malloc(32 * (size_t)(n_u1 + 1));
    uint8_t *held = calloc(n_u1 + 1, 1);
    uint8_t(*hold_s)[SA_SHARE_BYTES] = calloc(n_u1 + 1, SA_SHARE_BYTES);
    uint8_t(*hold_b)[SA_SHARE_BYTES] = calloc(n_u1 + 1, SA_SHARE_BYTES);
    uint8_t *shares = NULL, *m = NULL;
    size_t stride = SA_SHARE_BYTES, nm = (size_t)n_u1 + 1, sh_bytes = nm * stride * 2;
    if (!u1 || !cpk || !spk || !held || !hold_s || !hold_b) {
        rc = fp_seterr(FP_ENOMEM, "secagg: out of memory for %u neighbours", n_u1);
        goto fail;
    }
    for (uint32_t j = 0; j < count; j++) {
        const uint8_t *e = entries + (size_t)j * SA_KEYS_ENTRY;
        uint32_t id = sa_get32(e);
        int64_t idx = sa_index_of(&c->ctx, id);
        if (idx < 0) {
            rc = fp_seterr(FP_EAUTH, "secagg client %u: KEYS names unknown client %u", c->me, id);
            goto fail;
        }
        if (sa_row_find(c->nbr, c->ctx.k, (uint32_t)idx) < 0) {
            rc = fp_seterr(FP_EPROTO, "secagg client %u: KEYS names %u, which is not a neighbour",
                           c->me, id);
            goto fail;
        }
        if (j && (uint32_t)idx <= u1[j - 1]) {
            rc = fp_seterr(FP_EPROTO, "secagg client %u: KEYS entries repeated or out of order at %u",
                           c->me, id);
            goto fail;
        }
        uint8_t sb[SA_SIGNED_BYTES];
        sa_signed_bytes(sb, &c->ctx, id, e + 4, e + 36);
        if (fp_identity_verify(e + 68, sb, sizeof sb, c->ctx.sign_pk[idx]) != 0) {
            rc = fp_seterr(FP_ECRYPTO, "secagg client %u: forged or corrupted advertisement of client %u (bad signature)",
                           c->me, id);
            goto fail;
        }
        if (sodium_memcmp(e + 4, c->c_pk, 32) == 0 || sodium_memcmp(e + 36, c->s_pk, 32) == 0) {
            rc = fp_seterr(FP_ECRYPTO, "secagg client %u: client %u advertises this client's own key",
                           c->me, id);
            goto fail;
        }
        u1[j] = (uint32_t)idx;
        memcpy(cpk[j], e + 4, 32);
        memcpy(spk[j], e + 36, 32);
    }
    if (count + 1 < c->ctx.t) {
        rc = fp_seterr(FP_EABORT, "secagg client %u: only %u neighbours advertised keys; threshold t=%u needs at least %u",
                       c->me, count, c->ctx.t, c->ctx.t - 1);
        goto fail_abort;
    }

    /* Share s_sk and b t-of-(neighbours+me); member m gets the share with
     * x = m+1, members in ascending index order (the server checks x). */
    randombytes_buf(c->b, 32);
    shares = malloc(sh_bytes);
    if (!shares) {
        rc = fp_seterr(FP_ENOMEM, "secagg: out of memory for shares");
        goto fail;
    }
    uint8_t *sh_s = shares, *sh_b = shares + nm * stride;
    if ((rc = fp_shamir_split(sh_s, nm * stride, c->s_sk, 32, c->ctx.t, (unsigned)nm)) ||
        (rc = fp_shamir_split(sh_b, nm * stride, c->b, 32, c->ctx.t, (unsigned)nm)))
        goto fail;
    size_t body = 4 + (size_t)count * SA_CT_ENTRY;
    if ((rc = sa_msg_new(&m, body, &c->ctx, FP_SECAGG_MSG_SHARES, c->me, FP_SECAGG_SERVER_ID)))
        goto fail;
    uint8_t *w = m + FP_SECAGG_HEADER_BYTES;
    sa_put32(w, count);
    w += 4;
    uint32_t mpos = 0; /* member position of neighbour j: j, or j+1 once past me */
    uint32_t my_pos = count;
    for (uint32_t j = 0; j < count; j++) {
        if (u1[j] > c->my_idx && my_pos == count)
            my_pos = j;
    }
    for (uint32_t j = 0; j < count; j++) {
        uint32_t to = c->ctx.ids[u1[j]];
        mpos = j < my_pos ? j : j + 1;
        uint8_t key[32], plain[SA_PLAIN_BYTES], ad[SA_AD_BYTES];
        if ((rc = sa_pair_key(key, &c->ctx, "enc", c->c_sk, c->me, c->c_pk, to, cpk[j]))) {
            sodium_memzero(key, sizeof key);
            goto fail;
        }
        sa_put32(plain, c->me);
        sa_put32(plain + 4, to);
        memcpy(plain + 8, sh_s + (size_t)mpos * stride, stride);
        memcpy(plain + 8 + stride, sh_b + (size_t)mpos * stride, stride);
        sa_share_ad(ad, &c->ctx, c->me, to);
        sa_put32(w, to);
        randombytes_buf(w + 4, SA_NONCEBYTES);
        crypto_aead_xchacha20poly1305_ietf_encrypt(w + 4 + SA_NONCEBYTES, NULL, plain, sizeof plain,
                                                   ad, sizeof ad, NULL, w + 4, key);
        sodium_memzero(key, sizeof key);
        sodium_memzero(plain, sizeof plain);
        w += SA_CT_ENTRY;
    }
    memcpy(c->own_s, sh_s + (size_t)my_pos * stride, stride);
    memcpy(c->own_b, sh_b + (size_t)my_pos * stride, stride);
    sodium_memzero(shares, sh_bytes);
    free(shares);

    free_u1(c);
    c->n_u1 = n_u1;
    c->u1 = u1;
    c->u1_cpk = cpk;
    c->u1_spk = spk;
    c->held = held;
    c->hold_s = hold_s;
    c->hold_b = hold_b;
    c->state = C_SHARED;
    *out = m;
    *out_len = FP_SECAGG_HEADER_BYTES + body;
    return 0;

fail_abort:
    abort_round(c);
fail:
    if (shares) {
        sodium_memzero(shares, sh_bytes);
        free(shares);
    }
    free(m);
    free(u1);
    free(cpk);
    free(spk);
    free(held);
    free(hold_s);
    free(hold_b);
    if (c->state != C_ABORTED)
        sodium_memzero(c->b, sizeof c->b); /* a retry draws a fresh b */
    return rc;
}

/* The common part of stage 2, q already in the ring. */
static int masked_common(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                         const uint8_t *relay_msg, size_t relay_len, const uint32_t *q, size_t d)
{
    sa_hdr h;
    int rc = sa_hdr_expect(&h, relay_msg, relay_len, &c->ctx, FP_SECAGG_MSG_RELAY, c->me);
    if (rc)
        return rc;
    if (h.from != FP_SECAGG_SERVER_ID)
        return fp_seterr(FP_EPROTO, "secagg client %u: RELAY message not from the server", c->me);
    sa_rd r = {relay_msg + FP_SECAGG_HEADER_BYTES, relay_len - FP_SECAGG_HEADER_BYTES, 0, "RELAY"};
    uint32_t count;
    const uint8_t *entries;
    if ((rc = sa_rd_count(&r, &count, SA_CT_ENTRY)))
        return rc;
    if (count > c->n_u1)
        return fp_seterr(FP_EPROTO, "secagg client %u: RELAY carries %u ciphertexts, only %u neighbours advertised",
                         c->me, count, c->n_u1);
    if ((rc = sa_rd_bytes(&r, &entries, (size_t)count * SA_CT_ENTRY)) || (rc = sa_rd_end(&r)))
        return rc;

    /* Decrypt everything into scratch first; commit only if all is well. */
    uint32_t n = c->n_u1;
    uint8_t *held = calloc(n + 1, 1);
    uint8_t(*hs)[SA_SHARE_BYTES] = calloc(n + 1, SA_SHARE_BYTES);
    uint8_t(*hb)[SA_SHARE_BYTES] = calloc(n + 1, SA_SHARE_BYTES);
    sa_mask *masks = malloc(sizeof *masks * ((size_t)count + 1));
    uint32_t *acc = malloc(sizeof *acc * d);
    uint8_t *m = NULL;
    size_t nmask = 0;
    if (!held || !hs || !hb || !masks || !acc) {
        rc = fp_seterr(FP_ENOMEM, "secagg: out of memory for masking %zu elements", d);
        goto done;
    }
    int64_t prev = -1;
    for (uint32_t j = 0; j < count; j++) {
        const uint8_t *e = entries + (size_t)j * SA_CT_ENTRY;
        uint32_t from = sa_get32(e);
        int64_t idx = sa_index_of(&c->ctx, from);
        int64_t slot = idx < 0 ? -1 : sa_row_find(c->u1, n, (uint32_t)idx);
        if (slot < 0) {
            rc = fp_seterr(FP_EPROTO, "secagg client %u: RELAY has shares from %u, not an advertised neighbour",
                           c->me, from);
            goto done;
        }
        if (slot <= prev) {
            rc = fp_seterr(FP_EPROTO, "secagg client %u: RELAY entries repeated or out of order at %u",
                           c->me, from);
            goto done;
        }
        prev = slot;
        uint8_t key[32], plain[SA_PLAIN_BYTES], ad[SA_AD_BYTES];
        if ((rc = sa_pair_key(key, &c->ctx, "enc", c->c_sk, c->me, c->c_pk, from, c->u1_cpk[slot])))
            goto done;
        sa_share_ad(ad, &c->ctx, from, c->me);
        int bad = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, e + 4 + SA_NONCEBYTES,
                                                             SA_CT_BYTES, ad, sizeof ad, e + 4, key);
        sodium_memzero(key, sizeof key);
        if (bad) {
            sodium_memzero(plain, sizeof plain);
            rc = fp_seterr(FP_ECRYPTO, "secagg client %u: share ciphertext from %u failed authentication (tampered, or wrong session/round/route)",
                           c->me, from);
            goto done;
        }
        if (sa_get32(plain) != from || sa_get32(plain + 4) != c->me) {
            sodium_memzero(plain, sizeof plain);
            rc = fp_seterr(FP_ECRYPTO, "secagg client %u: share from %u names another route", c->me, from);
            goto done;
        }
        held[slot] = 1;
        memcpy(hs[slot], plain + 8, SA_SHARE_BYTES);
        memcpy(hb[slot], plain + 8 + SA_SHARE_BYTES, SA_SHARE_BYTES);
        sodium_memzero(plain, sizeof plain);
        /* Pairwise mask: + toward lower ids, - toward higher, so each pair cancels. */
        sa_mask *mk = &masks[nmask];
        if ((rc = sa_pair_key(mk->key, &c->ctx, "mask", c->s_sk, c->me, c->s_pk, from,
                              c->u1_spk[slot])))
            goto done;
        mk->self = 0;
        mk->neg = c->me < from;
        nmask++;
    }
    if (count + 1 < c->ctx.t) {
        rc = fp_seterr(FP_EABORT, "secagg client %u: only %u neighbours shared keys; threshold t=%u needs at least %u",
                       c->me, count, c->ctx.t, c->ctx.t - 1);
        abort_round(c);
        goto done;
    }
    memcpy(masks[nmask].key, c->b, 32);
    masks[nmask].self = 1;
    masks[nmask].neg = 0;
    nmask++;

    memcpy(acc, q, sizeof *acc * d);
    sa_apply_masks(acc, d, masks, nmask);
    size_t body = 4 + 4 * d;
    if ((rc = sa_msg_new(&m, body, &c->ctx, FP_SECAGG_MSG_MASKED, c->me, FP_SECAGG_SERVER_ID)))
        goto done;
    uint8_t *w = m + FP_SECAGG_HEADER_BYTES;
    sa_put32(w, (uint32_t)d);
    for (size_t i = 0; i < d; i++)
        sa_put32(w + 4 + 4 * i, acc[i]);

    memcpy(c->held, held, n);
    memcpy(c->hold_s, hs, (size_t)n * SA_SHARE_BYTES);
    memcpy(c->hold_b, hb, (size_t)n * SA_SHARE_BYTES);
    wipe_ephemeral(c); /* c_sk, s_sk, b are never needed again */
    c->state = C_MASKED;
    *out = m;
    *out_len = FP_SECAGG_HEADER_BYTES + body;
    m = NULL;
    rc = 0;
done:
    free(m);
    if (held)
        sodium_memzero(held, n + 1);
    if (hs)
        sodium_memzero(hs, (size_t)(n + 1) * SA_SHARE_BYTES);
    if (hb)
        sodium_memzero(hb, (size_t)(n + 1) * SA_SHARE_BYTES);
    if (masks)
        sodium_memzero(masks, sizeof *masks * ((size_t)count + 1));
    if (acc)
        sodium_memzero(acc, sizeof *acc * d); /* q + masks leaks q given the masks: wipe */
    free(held);
    free(hs);
    free(hb);
    free(masks);
    free(acc);
    return rc;
}

int fp_secagg_client_masked_input_u32(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                                      const uint8_t *relay_msg, size_t relay_len,
                                      const uint32_t *q, size_t d)
{
    if (!c || !out || !out_len || !q)
        return fp_seterr(FP_EINVAL, "fp_secagg_client_masked_input: NULL argument");
    if (c->state != C_SHARED)
        return bad_state(c, "masked_input", C_SHARED);
    if (d != c->ctx.d)
        return fp_seterr(FP_ESHAPE, "secagg client %u: input has %zu elements, the round expects %zu",
                         c->me, d, c->ctx.d);
    return masked_common(c, out, out_len, relay_msg, relay_len, q, d);
}

int fp_secagg_client_masked_input(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                                  const uint8_t *relay_msg, size_t relay_len, const float *x,
                                  size_t d, const uint8_t *rounding_seed)
{
    if (!c || !out || !out_len || !x)
        return fp_seterr(FP_EINVAL, "fp_secagg_client_masked_input: NULL argument");
    if (c->state != C_SHARED)
        return bad_state(c, "masked_input", C_SHARED);
    if (d != c->ctx.d)
        return fp_seterr(FP_ESHAPE, "secagg client %u: input has %zu elements, the round expects %zu",
                         c->me, d, c->ctx.d);
    uint32_t *q = malloc(sizeof *q * d);
    if (!q)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for %zu elements", d);
    int rc = fp_ring_quantize(q, x, d, &c->ctx.ring, rounding_seed);
    if (!rc)
        rc = masked_common(c, out, out_len, relay_msg, relay_len, q, d);
    sodium_memzero(q, sizeof *q * d);
    free(q);
    return rc;
}

int fp_secagg_client_unmask(fp_secagg_client *c, uint8_t **out, size_t *out_len,
                            const uint8_t *req_msg, size_t req_len)
{
    if (!c || !out || !out_len)
        return fp_seterr(FP_EINVAL, "fp_secagg_client_unmask: NULL argument");
    if (c->state != C_MASKED)
        return bad_state(c, "unmask", C_MASKED);
    sa_hdr h;
    int rc = sa_hdr_expect(&h, req_msg, req_len, &c->ctx, FP_SECAGG_MSG_UNMASK_REQ, c->me);
    if (rc)
        return rc;
    if (h.from != FP_SECAGG_SERVER_ID)
        return fp_seterr(FP_EPROTO, "secagg client %u: UNMASK_REQ not from the server", c->me);
    sa_rd r = {req_msg + FP_SECAGG_HEADER_BYTES, req_len - FP_SECAGG_HEADER_BYTES, 0, "UNMASK_REQ"};
    uint32_t ns, nd;
    const uint8_t *sv, *dv;
    if ((rc = sa_rd_count(&r, &ns, 4)) || (rc = sa_rd_bytes(&r, &sv, (size_t)ns * 4)) ||
        (rc = sa_rd_count(&r, &nd, 4)) || (rc = sa_rd_bytes(&r, &dv, (size_t)nd * 4)) ||
        (rc = sa_rd_end(&r)))
        return rc;
    uint32_t n = c->n_u1;
    /* No count check up front: the marking below rejects any id named twice
     * with the more useful message (which id, and why). */

    /* mark[slot]: 1 asked as survivor, 2 asked as dropped; slot n is me. */
    uint8_t *mark = calloc(n + 1, 1);
    if (!mark)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory");
    for (uint32_t pass = 0; pass < 2 && !rc; pass++) {
        uint32_t cnt = pass ? nd : ns;
        const uint8_t *v = pass ? dv : sv;
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t id = sa_get32(v + 4 * j);
            int64_t slot = -1;
            if (id == c->me) {
                slot = n;
            } else {
                int64_t idx = sa_index_of(&c->ctx, id);
                slot = idx < 0 ? -1 : sa_row_find(c->u1, n, (uint32_t)idx);
                if (slot >= 0 && !c->held[slot])
                    slot = -1;
            }
            if (slot < 0) {
                rc = fp_seterr(FP_EPROTO, "secagg client %u: asked for a share of %u, which it does not hold",
                               c->me, id);
                break;
            }
            if (mark[slot] & (1u << pass)) {
                rc = fp_seterr(FP_EPROTO, "secagg client %u: UNMASK_REQ names %u twice", c->me, id);
                break;
            }
            mark[slot] |= (uint8_t)(1u << pass);
            if (mark[slot] == 3) {
                rc = fp_seterr(FP_EPROTO,
                               "secagg client %u: refusing to reveal both the self-mask share and the key "
                               "share of client %u: together they would unmask its input",
                               c->me, id);
                break;
            }
            if (pass == 1 && slot == (int64_t)n) {
                rc = fp_seterr(FP_EPROTO, "secagg client %u: UNMASK_REQ lists this client as dropped, but it sent its masked input",
                               c->me);
                break;
            }
        }
    }
    if (!rc && !(mark[n] & 1))
        rc = fp_seterr(FP_EPROTO, "secagg client %u: UNMASK_REQ does not list this client as a survivor", c->me);
    if (!rc && ns < c->ctx.t) {
        rc = fp_seterr(FP_EABORT, "secagg client %u: only %u survivors in its neighbourhood, threshold t=%u",
                       c->me, ns, c->ctx.t);
        abort_round(c);
    }
    sodium_memzero(mark, n + 1);
    free(mark);
    if (rc)
        return rc;

    size_t body = 4 + (size_t)(ns + nd) * SA_UNMASK_ENTRY;
    uint8_t *m;
    if ((rc = sa_msg_new(&m, body, &c->ctx, FP_SECAGG_MSG_UNMASK, c->me, FP_SECAGG_SERVER_ID)))
        return rc;
    uint8_t *w = m + FP_SECAGG_HEADER_BYTES;
    sa_put32(w, ns + nd);
    w += 4;
    for (uint32_t pass = 0; pass < 2; pass++) {
        uint32_t cnt = pass ? nd : ns;
        const uint8_t *v = pass ? dv : sv;
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t id = sa_get32(v + 4 * j);
            const uint8_t *share;
            if (id == c->me) {
                share = c->own_b;
            } else {
                int64_t slot = sa_row_find(c->u1, n, (uint32_t)sa_index_of(&c->ctx, id));
                share = pass ? c->hold_s[slot] : c->hold_b[slot];
            }
            sa_put32(w, id);
            w[4] = pass ? SA_KIND_S : SA_KIND_B;
            memcpy(w + 5, share, SA_SHARE_BYTES);
            w += SA_UNMASK_ENTRY;
        }
    }
    /* Answered once: drop the shares so no second request can get more. */
    sodium_memzero(c->hold_s, sizeof *c->hold_s * n);
    sodium_memzero(c->hold_b, sizeof *c->hold_b * n);
    sodium_memzero(c->own_s, sizeof c->own_s);
    sodium_memzero(c->own_b, sizeof c->own_b);
    c->state = C_DONE;
    *out = m;
    *out_len = FP_SECAGG_HEADER_BYTES + body;
    return 0;
}
