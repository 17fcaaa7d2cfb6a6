/* SecAgg+ server state machine: collect, relay, sum, reconstruct, unmask.
 *
 * Client sets, as in Bonawitz et al.: U1 advertised keys, U2 shared keys, U3
 * sent masked input (whose sum is the result), U4 answered the unmask request.
 * Masked inputs are added into one accumulator on arrival; at the end the
 * self masks of U3 and the pairwise masks between U3 and U2\U3 are expanded
 * straight into it (sa_apply_masks), so the work is O((|U3| + drops*k) * d)
 * with O(d) memory. */
#include "secagg_internal.h"
#include "error_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { IN_U1 = 1, IN_U2 = 2, IN_U3 = 4, IN_U4 = 8 };

struct fp_secagg_server {
    sa_ctx ctx;
    int stage;
    uint8_t *mem;               /* per client: IN_* bits */
    uint32_t *rows;             /* n x k neighbour indices */
    uint8_t (*c_pk)[32], (*s_pk)[32], (*sig)[64];
    uint8_t **cts;              /* per sender: its SHARES entries, ascending recipients */
    uint32_t *n_cts;
    uint32_t *acc;              /* sum of masked inputs, then the result */
    uint8_t **rsh;              /* per owner: up to t received shares */
    uint32_t *n_rsh;
    uint32_t received;
    uint32_t n_included;
};

static const char *stage_name(int s)
{
    static const char *names[] = {"advertise", "share keys", "masked input", "unmask", "done",
                                  "aborted"};
    return names[s];
}

static const uint32_t *row(const fp_secagg_server *s, uint32_t i)
{
    return s->rows + (size_t)i * s->ctx.k;
}

void fp_secagg_server_free(fp_secagg_server *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; s->cts && i < s->ctx.n; i++)
        free(s->cts[i]);
    for (uint32_t i = 0; s->rsh && i < s->ctx.n; i++) {
        if (s->rsh[i]) {
            sodium_memzero(s->rsh[i], (size_t)s->ctx.t * SA_SHARE_BYTES);
            free(s->rsh[i]);
        }
    }
    if (s->acc)
        sodium_memzero(s->acc, sizeof *s->acc * s->ctx.d);
    free(s->mem);
    free(s->rows);
    free(s->c_pk);
    free(s->s_pk);
    free(s->sig);
    free(s->cts);
    free(s->n_cts);
    free(s->acc);
    free(s->rsh);
    free(s->n_rsh);
    sa_ctx_free(&s->ctx);
    free(s);
}

int fp_secagg_server_new(fp_secagg_server **out, const fp_secagg_params *p)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_secagg_server_new: NULL output");
    *out = NULL;
    fp_secagg_server *s = calloc(1, sizeof *s);
    if (!s)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for the server");
    int rc = sa_ctx_init(&s->ctx, p);
    if (rc) {
        free(s);
        return rc;
    }
    uint32_t n = s->ctx.n;
    s->mem = calloc(n, 1);
    s->rows = malloc(sizeof *s->rows * (size_t)n * s->ctx.k);
    s->c_pk = calloc(n, 32);
    s->s_pk = calloc(n, 32);
    s->sig = calloc(n, 64);
    s->cts = calloc(n, sizeof *s->cts);
    s->n_cts = calloc(n, sizeof *s->n_cts);
    s->acc = calloc(s->ctx.d, sizeof *s->acc);
    s->rsh = calloc(n, sizeof *s->rsh);
    s->n_rsh = calloc(n, sizeof *s->n_rsh);
    if (!s->mem || !s->rows || !s->c_pk || !s->s_pk || !s->sig || !s->cts || !s->n_cts || !s->acc ||
        !s->rsh || !s->n_rsh) {
        fp_secagg_server_free(s);
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for %u clients x %zu elements", n,
                         p->vec_len);
    }
    for (uint32_t i = 0; i < n; i++)
        sa_graph_row(&s->ctx, i, s->rows + (size_t)i * s->ctx.k);
    s->stage = FP_SECAGG_STAGE_ADVERTISE;
    *out = s;
    return 0;
}

int fp_secagg_server_stage(const fp_secagg_server *s)
{
    return s ? s->stage : fp_seterr(FP_EINVAL, "fp_secagg_server_stage: NULL server");
}

/* The set a client must be in to take part in a stage, and the bit it gets. */
static uint8_t need_bit(int stage) { return stage == 0 ? 0 : (uint8_t)(1u << (stage - 1)); }
static uint8_t got_bit(int stage) { return (uint8_t)(1u << stage); }

/* Neighbours of i in set `bit`, counted. */
static uint32_t nbrs_in(const fp_secagg_server *s, uint32_t i, uint8_t bit)
{
    const uint32_t *r = row(s, i);
    uint32_t c = 0;
    for (uint32_t j = 0; j < s->ctx.k; j++)
        c += (s->mem[r[j]] & bit) != 0;
    return c;
}

static int recv_advertise(fp_secagg_server *s, uint32_t i, const uint8_t *body, size_t len)
{
    sa_rd r = {body, len, 0, "ADVERTISE"};
    const uint8_t *b;
    int rc = sa_rd_bytes(&r, &b, SA_ADV_BODY);
    if (rc || (rc = sa_rd_end(&r)))
        return rc;
    uint8_t sb[SA_SIGNED_BYTES];
    sa_signed_bytes(sb, &s->ctx, s->ctx.ids[i], b, b + 32);
    if (fp_identity_verify(b + 64, sb, sizeof sb, s->ctx.sign_pk[i]) != 0)
        return fp_seterr(FP_ECRYPTO, "secagg server: advertisement of client %u has a bad signature",
                         s->ctx.ids[i]);
    memcpy(s->c_pk[i], b, 32);
    memcpy(s->s_pk[i], b + 32, 32);
    memcpy(s->sig[i], b + 64, 64);
    return 0;
}

static int recv_shares(fp_secagg_server *s, uint32_t i, const uint8_t *body, size_t len)
{
    sa_rd r = {body, len, 0, "SHARES"};
    uint32_t count;
    const uint8_t *e;
    int rc = sa_rd_count(&r, &count, SA_CT_ENTRY);
    if (rc || (rc = sa_rd_bytes(&r, &e, (size_t)count * SA_CT_ENTRY)) || (rc = sa_rd_end(&r)))
        return rc;
    /* Exactly one ciphertext per advertised neighbour, in ascending order:
     * that is what the client's KEYS listed. */
    const uint32_t *rw = row(s, i);
    uint32_t j = 0;
    for (uint32_t a = 0; a < s->ctx.k; a++) {
        if (!(s->mem[rw[a]] & IN_U1))
            continue;
        if (j >= count)
            return fp_seterr(FP_EPROTO, "secagg server: client %u sent %u share ciphertexts, too few",
                             s->ctx.ids[i], count);
        uint32_t to = sa_get32(e + (size_t)j * SA_CT_ENTRY);
        if (to != s->ctx.ids[rw[a]])
            return fp_seterr(FP_EPROTO, "secagg server: client %u's share ciphertext %u is for %u, expected %u",
                             s->ctx.ids[i], j, to, s->ctx.ids[rw[a]]);
        j++;
    }
    if (j != count)
        return fp_seterr(FP_EPROTO, "secagg server: client %u sent %u share ciphertexts, expected %u",
                         s->ctx.ids[i], count, j);
    uint8_t *copy = malloc((size_t)count * SA_CT_ENTRY + 1);
    if (!copy)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory");
    memcpy(copy, e, (size_t)count * SA_CT_ENTRY);
    s->cts[i] = copy;
    s->n_cts[i] = count;
    return 0;
}

static int recv_masked(fp_secagg_server *s, uint32_t i, const uint8_t *body, size_t len)
{
    sa_rd r = {body, len, 0, "MASKED"};
    uint32_t d;
    const uint8_t *y;
    int rc = sa_rd_count(&r, &d, 4);
    if (rc)
        return rc;
    if (d != s->ctx.d)
        return fp_seterr(FP_EFORMAT, "secagg server: client %u's masked input has %u elements, expected %zu",
                         s->ctx.ids[i], d, s->ctx.d);
    if ((rc = sa_rd_bytes(&r, &y, (size_t)d * 4)) || (rc = sa_rd_end(&r)))
        return rc;
    sa_add_le32(s->acc, y, s->ctx.d);
    return 0;
}

/* Position (0-based) of holder h among owner's share members {owner} + its
 * advertised neighbours, ascending: the holder's share has x = pos + 1. */
static uint32_t share_pos(const fp_secagg_server *s, uint32_t owner, uint32_t h)
{
    uint32_t pos = owner < h;
    const uint32_t *r = row(s, owner);
    for (uint32_t j = 0; j < s->ctx.k && r[j] < h; j++)
        pos += (s->mem[r[j]] & IN_U1) != 0;
    return pos;
}

/* What the unmask request to h lists: survivors ({h} + neighbours in U3) and
 * dropped (neighbours in U2 but not U3), both ascending. Returns counts;
 * lists may be NULL to count only. */
static void unmask_lists(const fp_secagg_server *s, uint32_t h, uint32_t *sv, uint32_t *ns,
                         uint32_t *dv, uint32_t *nd)
{
    const uint32_t *r = row(s, h);
    uint32_t a = 0, b = 0;
    int self_done = 0;
    for (uint32_t j = 0; j <= s->ctx.k; j++) {
        if (!self_done && (j == s->ctx.k || r[j] > h)) {
            if (sv)
                sv[a] = h;
            a++;
            self_done = 1;
        }
        if (j == s->ctx.k)
            break;
        uint8_t m = s->mem[r[j]];
        if (m & IN_U3) {
            if (sv)
                sv[a] = r[j];
            a++;
        } else if (m & IN_U2) {
            if (dv)
                dv[b] = r[j];
            b++;
        }
    }
    *ns = a;
    *nd = b;
}

static int recv_unmask(fp_secagg_server *s, uint32_t h, const uint8_t *body, size_t len)
{
    sa_rd r = {body, len, 0, "UNMASK"};
    uint32_t count;
    const uint8_t *e;
    int rc = sa_rd_count(&r, &count, SA_UNMASK_ENTRY);
    if (rc || (rc = sa_rd_bytes(&r, &e, (size_t)count * SA_UNMASK_ENTRY)) || (rc = sa_rd_end(&r)))
        return rc;
    uint32_t ns, nd;
    uint32_t *lists = malloc(sizeof *lists * ((size_t)s->ctx.k + 1));
    if (!lists)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory");
    unmask_lists(s, h, lists, &ns, NULL, &nd);
    unmask_lists(s, h, lists, &ns, lists + ns, &nd);
    if (count != ns + nd) {
        free(lists);
        return fp_seterr(FP_EPROTO, "secagg server: client %u answered with %u shares, %u were asked",
                         s->ctx.ids[h], count, ns + nd);
    }
    /* The answer must follow the request: survivors' b-shares, then the
     * dropped clients' s_sk-shares, each with the holder's x. */
    for (uint32_t j = 0; j < count && !rc; j++) {
        const uint8_t *en = e + (size_t)j * SA_UNMASK_ENTRY;
        uint32_t owner = lists[j];
        uint8_t kind = j < ns ? SA_KIND_B : SA_KIND_S;
        if (sa_get32(en) != s->ctx.ids[owner] || en[4] != kind)
            rc = fp_seterr(FP_EPROTO, "secagg server: client %u's share %u is for %u (kind %u), expected %u (kind %u)",
                           s->ctx.ids[h], j, sa_get32(en), en[4], s->ctx.ids[owner], kind);
        else if (en[5] != share_pos(s, owner, h) + 1)
            rc = fp_seterr(FP_EPROTO, "secagg server: client %u's share of %u has x=%u, expected %u",
                           s->ctx.ids[h], s->ctx.ids[owner], en[5], share_pos(s, owner, h) + 1);
    }
    for (uint32_t j = 0; j < count && !rc; j++) {
        uint32_t owner = lists[j];
        if (s->n_rsh[owner] < s->ctx.t) {
            memcpy(s->rsh[owner] + (size_t)s->n_rsh[owner] * SA_SHARE_BYTES,
                   e + (size_t)j * SA_UNMASK_ENTRY + 5, SA_SHARE_BYTES);
            s->n_rsh[owner]++;
        }
    }
    free(lists);
    return rc;
}

int fp_secagg_server_receive(fp_secagg_server *s, const uint8_t *msg, size_t len)
{
    if (!s || !msg)
        return fp_seterr(FP_EINVAL, "fp_secagg_server_receive: NULL argument");
    if (s->stage > FP_SECAGG_STAGE_UNMASK)
        return fp_seterr(FP_ESTATE, "secagg server: no message accepted in state '%s'",
                         stage_name(s->stage));
    static const int want[] = {FP_SECAGG_MSG_ADVERTISE, FP_SECAGG_MSG_SHARES, FP_SECAGG_MSG_MASKED,
                               FP_SECAGG_MSG_UNMASK};
    sa_hdr h;
    int rc = sa_hdr_expect(&h, msg, len, &s->ctx, want[s->stage], FP_SECAGG_SERVER_ID);
    if (rc)
        return rc;
    int64_t idx = sa_index_of(&s->ctx, h.from);
    if (idx < 0)
        return fp_seterr(FP_EAUTH, "secagg server: %s message from unknown client %u",
                         sa_type_name(h.type), h.from);
    uint32_t i = (uint32_t)idx;
    uint8_t need = need_bit(s->stage), got = got_bit(s->stage);
    if (need && !(s->mem[i] & need))
        return fp_seterr(FP_EPROTO, "secagg server: client %u dropped out before stage '%s'; its %s is refused",
                         h.from, stage_name(s->stage), sa_type_name(h.type));
    if (s->mem[i] & got)
        return fp_seterr(FP_EREPLAY, "secagg server: duplicate %s message from client %u",
                         sa_type_name(h.type), h.from);
    const uint8_t *body = msg + FP_SECAGG_HEADER_BYTES;
    size_t blen = len - FP_SECAGG_HEADER_BYTES;
    switch (s->stage) {
    case FP_SECAGG_STAGE_ADVERTISE: rc = recv_advertise(s, i, body, blen); break;
    case FP_SECAGG_STAGE_SHARES: rc = recv_shares(s, i, body, blen); break;
    case FP_SECAGG_STAGE_MASKED: rc = recv_masked(s, i, body, blen); break;
    default: rc = recv_unmask(s, i, body, blen); break;
    }
    if (rc)
        return rc;
    s->mem[i] |= got;
    s->received++;
    return 0;
}

int fp_secagg_server_pending(const fp_secagg_server *s, uint32_t *expected, uint32_t *received)
{
    if (!s || !expected || !received)
        return fp_seterr(FP_EINVAL, "fp_secagg_server_pending: NULL argument");
    *expected = 0;
    *received = 0;
    if (s->stage > FP_SECAGG_STAGE_UNMASK)
        return 0;
    uint8_t need = need_bit(s->stage);
    for (uint32_t i = 0; i < s->ctx.n; i++)
        *expected += !need || (s->mem[i] & need);
    *received = s->received;
    return 0;
}

static int server_abort(fp_secagg_server *s, int code)
{
    s->stage = FP_SECAGG_STAGE_ABORTED;
    sodium_memzero(s->acc, sizeof *s->acc * s->ctx.d);
    return code;
}

/* Removes from set `bit` every client with fewer than t-1 neighbours in it
 * (its secrets could never be reconstructed, and the client itself gives up),
 * until none is left; returns the set's size. */
static uint32_t prune(fp_secagg_server *s, uint8_t bit)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        for (uint32_t i = 0; i < s->ctx.n; i++) {
            if ((s->mem[i] & bit) && nbrs_in(s, i, bit) + 1 < s->ctx.t) {
                s->mem[i] &= (uint8_t)~bit;
                changed = 1;
            }
        }
    }
    uint32_t c = 0;
    for (uint32_t i = 0; i < s->ctx.n; i++)
        c += (s->mem[i] & bit) != 0;
    return c;
}

static int finish(fp_secagg_server *s);

int fp_secagg_server_close_stage(fp_secagg_server *s)
{
    if (!s)
        return fp_seterr(FP_EINVAL, "fp_secagg_server_close_stage: NULL server");
    if (s->stage > FP_SECAGG_STAGE_UNMASK)
        return fp_seterr(FP_ESTATE, "secagg server: close_stage in state '%s'", stage_name(s->stage));
    const uint32_t t = s->ctx.t, n = s->ctx.n;
    uint8_t got = got_bit(s->stage);
    uint32_t size;
    if (s->stage <= FP_SECAGG_STAGE_SHARES) {
        size = prune(s, got);
    } else {
        size = 0;
        for (uint32_t i = 0; i < n; i++)
            size += (s->mem[i] & got) != 0;
    }
    if (s->stage <= FP_SECAGG_STAGE_MASKED && size < t) {
        fp_seterr(FP_EABORT, "secagg server: only %u clients usable after stage '%s', threshold t=%u",
                  size, stage_name(s->stage), t);
        return server_abort(s, FP_EABORT);
    }
    if (s->stage == FP_SECAGG_STAGE_MASKED) {
        /* Every survivor's b and every dropped client's s_sk must still have t
         * holders among the survivors, or the sum can never be unmasked. */
        for (uint32_t i = 0; i < n; i++) {
            uint8_t m = s->mem[i];
            if (!(m & IN_U2))
                continue;
            uint32_t holders = nbrs_in(s, i, IN_U3) + ((m & IN_U3) != 0);
            if (holders < t) {
                fp_seterr(FP_EABORT, "secagg server: %s client %u has %u surviving share holders, threshold t=%u",
                          (m & IN_U3) ? "surviving" : "dropped", s->ctx.ids[i], holders, t);
                return server_abort(s, FP_EABORT);
            }
            s->rsh[i] = malloc((size_t)t * SA_SHARE_BYTES);
            if (!s->rsh[i]) {
                fp_seterr(FP_ENOMEM, "secagg: out of memory");
                return server_abort(s, FP_ENOMEM);
            }
        }
        s->n_included = size;
    }
    if (s->stage == FP_SECAGG_STAGE_UNMASK) {
        int rc = finish(s);
        if (rc)
            return server_abort(s, rc);
        s->stage = FP_SECAGG_STAGE_DONE;
        return 0;
    }
    s->stage++;
    s->received = 0;
    return 0;
}

static int finish(fp_secagg_server *s)
{
    const uint32_t n = s->ctx.n, t = s->ctx.t;
    size_t nmask = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t m = s->mem[i];
        if (!(m & IN_U2))
            continue;
        if (s->n_rsh[i] < t)
            return fp_seterr(FP_EABORT, "secagg server: only %u of t=%u shares of %s client %u arrived",
                             s->n_rsh[i], t, (m & IN_U3) ? "surviving" : "dropped", s->ctx.ids[i]);
        nmask += (m & IN_U3) ? 1 : nbrs_in(s, i, IN_U3);
    }
    sa_mask *masks = malloc(sizeof *masks * (nmask + 1));
    if (!masks)
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for %zu masks", nmask);
    size_t mi = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++) {
        uint8_t m = s->mem[i];
        if (!(m & IN_U2))
            continue;
        uint8_t secret[32];
        if ((rc = fp_shamir_combine(secret, 32, s->rsh[i], t, t)))
            break;
        if (m & IN_U3) { /* survivor: remove its self mask */
            memcpy(masks[mi].key, secret, 32);
            masks[mi].self = 1;
            masks[mi].neg = 1;
            mi++;
        } else { /* dropped: remove the pairwise masks its surviving neighbours added */
            uint8_t pk[32];
            crypto_scalarmult_base(pk, secret);
            if (sodium_memcmp(pk, s->s_pk[i], 32) != 0) {
                rc = fp_seterr(FP_ECRYPTO, "secagg server: the key of dropped client %u reconstructed from its shares does not match its advertised key (a holder sent a bad share)",
                               s->ctx.ids[i]);
                break;
            }
            const uint32_t *r = row(s, i);
            for (uint32_t j = 0; j < s->ctx.k && !rc; j++) {
                uint32_t u = r[j];
                if (!(s->mem[u] & IN_U3))
                    continue;
                rc = sa_pair_key(masks[mi].key, &s->ctx, "mask", secret, s->ctx.ids[i], s->s_pk[i],
                                 s->ctx.ids[u], s->s_pk[u]);
                masks[mi].self = 0;
                /* u added + toward lower ids: undo with the opposite sign. */
                masks[mi].neg = s->ctx.ids[u] > s->ctx.ids[i];
                mi++;
            }
        }
        sodium_memzero(secret, sizeof secret);
    }
    if (!rc)
        sa_apply_masks(s->acc, s->ctx.d, masks, mi);
    sodium_memzero(masks, sizeof *masks * (nmask + 1));
    free(masks);
    return rc;
}

int fp_secagg_server_recipients(const fp_secagg_server *s, uint32_t *ids, size_t cap,
                                size_t *count)
{
    if (!s || !count || (!ids && cap))
        return fp_seterr(FP_EINVAL, "fp_secagg_server_recipients: NULL argument");
    *count = 0;
    if (s->stage < FP_SECAGG_STAGE_SHARES || s->stage > FP_SECAGG_STAGE_UNMASK)
        return 0;
    uint8_t bit = got_bit(s->stage - 1);
    size_t c = 0;
    for (uint32_t i = 0; i < s->ctx.n; i++) {
        if (!(s->mem[i] & bit))
            continue;
        if (c < cap)
            ids[c] = s->ctx.ids[i];
        c++;
    }
    *count = c;
    if (c > cap)
        return fp_seterr(FP_EINVAL, "secagg server: %zu recipients do not fit a buffer of %zu", c, cap);
    return 0;
}

/* Finds sender w's ciphertext entry for recipient id (entries ascending). */
static const uint8_t *find_ct(const fp_secagg_server *s, uint32_t w, uint32_t id)
{
    size_t lo = 0, hi = s->n_cts[w];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t to = sa_get32(s->cts[w] + mid * SA_CT_ENTRY);
        if (to < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->n_cts[w] && sa_get32(s->cts[w] + lo * SA_CT_ENTRY) == id)
        return s->cts[w] + lo * SA_CT_ENTRY;
    return NULL;
}

int fp_secagg_server_message_for(fp_secagg_server *s, uint32_t id, uint8_t **out, size_t *out_len)
{
    if (!s || !out || !out_len)
        return fp_seterr(FP_EINVAL, "fp_secagg_server_message_for: NULL argument");
    if (s->stage < FP_SECAGG_STAGE_SHARES || s->stage > FP_SECAGG_STAGE_UNMASK)
        return fp_seterr(FP_ESTATE, "secagg server: no outgoing message in state '%s'",
                         stage_name(s->stage));
    int64_t idx = sa_index_of(&s->ctx, id);
    uint8_t bit = got_bit(s->stage - 1);
    if (idx < 0 || !(s->mem[idx] & bit))
        return fp_seterr(FP_ENOTFOUND, "secagg server: client %u gets no message now (dropped or unknown)",
                         id);
    uint32_t u = (uint32_t)idx;
    const uint32_t *r = row(s, u);
    uint8_t *m;
    int rc;
    if (s->stage == FP_SECAGG_STAGE_SHARES) { /* KEYS: advertised neighbours */
        uint32_t c = nbrs_in(s, u, IN_U1);
        size_t body = 4 + (size_t)c * SA_KEYS_ENTRY;
        if ((rc = sa_msg_new(&m, body, &s->ctx, FP_SECAGG_MSG_KEYS, FP_SECAGG_SERVER_ID, id)))
            return rc;
        uint8_t *w = m + FP_SECAGG_HEADER_BYTES;
        sa_put32(w, c);
        w += 4;
        for (uint32_t j = 0; j < s->ctx.k; j++) {
            uint32_t v = r[j];
            if (!(s->mem[v] & IN_U1))
                continue;
            sa_put32(w, s->ctx.ids[v]);
            memcpy(w + 4, s->c_pk[v], 32);
            memcpy(w + 36, s->s_pk[v], 32);
            memcpy(w + 68, s->sig[v], 64);
            w += SA_KEYS_ENTRY;
        }
        *out_len = FP_SECAGG_HEADER_BYTES + body;
    } else if (s->stage == FP_SECAGG_STAGE_MASKED) { /* RELAY: ciphertexts from U2 neighbours */
        uint32_t c = nbrs_in(s, u, IN_U2);
        size_t body = 4 + (size_t)c * SA_CT_ENTRY;
        if ((rc = sa_msg_new(&m, body, &s->ctx, FP_SECAGG_MSG_RELAY, FP_SECAGG_SERVER_ID, id)))
            return rc;
        uint8_t *w = m + FP_SECAGG_HEADER_BYTES;
        sa_put32(w, c);
        w += 4;
        for (uint32_t j = 0; j < s->ctx.k; j++) {
            uint32_t v = r[j];
            if (!(s->mem[v] & IN_U2))
                continue;
            const uint8_t *e = find_ct(s, v, id);
            if (!e) { /* cannot happen: v's SHARES were checked to cover u */
                free(m);
                return fp_seterr(FP_EPROTO, "secagg server: no ciphertext from %u to %u",
                                 s->ctx.ids[v], id);
            }
            sa_put32(w, s->ctx.ids[v]);
            memcpy(w + 4, e + 4, SA_CT_ENTRY - 4);
            w += SA_CT_ENTRY;
        }
        *out_len = FP_SECAGG_HEADER_BYTES + body;
    } else { /* UNMASK_REQ */
        uint32_t *lists = malloc(sizeof *lists * ((size_t)s->ctx.k + 1));
        if (!lists)
            return fp_seterr(FP_ENOMEM, "secagg: out of memory");
        uint32_t ns, nd;
        unmask_lists(s, u, NULL, &ns, NULL, &nd);
        unmask_lists(s, u, lists, &ns, lists + ns, &nd);
        size_t body = 8 + 4 * (size_t)(ns + nd);
        if ((rc = sa_msg_new(&m, body, &s->ctx, FP_SECAGG_MSG_UNMASK_REQ, FP_SECAGG_SERVER_ID, id))) {
            free(lists);
            return rc;
        }
        uint8_t *w = m + FP_SECAGG_HEADER_BYTES;
        sa_put32(w, ns);
        w += 4;
        for (uint32_t j = 0; j < ns; j++, w += 4)
            sa_put32(w, s->ctx.ids[lists[j]]);
        sa_put32(w, nd);
        w += 4;
        for (uint32_t j = 0; j < nd; j++, w += 4)
            sa_put32(w, s->ctx.ids[lists[ns + j]]);
        free(lists);
        *out_len = FP_SECAGG_HEADER_BYTES + body;
    }
    *out = m;
    return 0;
}

int fp_secagg_server_result(const fp_secagg_server *s, uint32_t *sum, float *fsum, size_t d,
                            uint32_t *n_included)
{
    if (!s || !sum)
        return fp_seterr(FP_EINVAL, "fp_secagg_server_result: NULL argument");
    if (s->stage != FP_SECAGG_STAGE_DONE)
        return fp_seterr(FP_ESTATE, "secagg server: no result in state '%s'", stage_name(s->stage));
    if (d != s->ctx.d)
        return fp_seterr(FP_ESHAPE, "secagg server: result has %zu elements, buffer %zu", s->ctx.d, d);
    memcpy(sum, s->acc, sizeof *sum * d);
    if (n_included)
        *n_included = s->n_included;
    if (fsum)
        return fp_ring_dequantize_sum(fsum, sum, d, &s->ctx.ring, s->n_included);
    return 0;
}
