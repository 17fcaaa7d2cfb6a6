/* SecAgg+ under attack, stage by stage through the byte-buffer API: forged
 * signatures, tampered or misrouted ciphertexts, truncated and corrupted
 * messages, replays, a server asking for both shares of one client, the
 * server's view of a masked input, and keys of one round against another. */
#include <stdio.h>

#include "fed/secagg_internal.h"
#include "fedproxy/ring.h"
#include "secagg_fixture.h"

typedef struct buf {
    uint8_t *m;
    size_t len;
} buf;

static buf copy_of(buf b)
{
    buf c = {malloc(b.len + 1), b.len};
    memcpy(c.m, b.m, b.len);
    c.m[b.len] = 0;
    return c;
}

/* Every proper prefix of a message must be rejected as malformed, and so must
 * the message with one byte appended. */
#define CHECK_TRUNCATIONS(call_with /* (ptr, len) -> rc */, msg)                                    \
    do {                                                                                           \
        buf tc_ = copy_of(msg);                                                                    \
        int bad_ = 0;                                                                              \
        for (size_t L_ = 0; L_ < tc_.len; L_++) {                                                  \
            uint8_t *p_ = malloc(L_ ? L_ : 1); /* exact size, so ASan sees overreads */            \
            memcpy(p_, tc_.m, L_);                                                                 \
            if (call_with(p_, L_) != FP_EFORMAT)                                                   \
                bad_++;                                                                            \
            free(p_);                                                                              \
        }                                                                                          \
        CHECKF(bad_ == 0, "%d truncations not rejected as FP_EFORMAT", bad_);                     \
        CHECK_ERR(call_with(tc_.m, tc_.len + 1), FP_EFORMAT);                                      \
        free(tc_.m);                                                                               \
    } while (0)

/* Random single-byte corruptions must all be rejected (any error, no crash). */
#define CHECK_FLIPS(call_with, msg, from_off)                                                      \
    do {                                                                                           \
        int accepted_ = 0;                                                                         \
        for (int it_ = 0; it_ < 300; it_++) {                                                      \
            buf fc_ = copy_of(msg);                                                                \
            size_t pos_ = (from_off) + fp_test_u32() % (fc_.len - (from_off));                     \
            fc_.m[pos_] ^= (uint8_t)(1u + fp_test_u32() % 255u);                                   \
            if (call_with(fc_.m, fc_.len) == 0)                                                    \
                accepted_++;                                                                       \
            free(fc_.m);                                                                           \
        }                                                                                          \
        CHECKF(accepted_ == 0, "%d corrupted messages accepted", accepted_);                       \
    } while (0)

static fp_secagg_server *g_srv;
static fp_secagg_client *g_cli;
static int srv_recv(const uint8_t *m, size_t len) { return fp_secagg_server_receive(g_srv, m, len); }
static int cli_keys(const uint8_t *m, size_t len)
{
    uint8_t *o = NULL;
    size_t ol = 0;
    int rc = fp_secagg_client_share_keys(g_cli, &o, &ol, m, len);
    free(o);
    return rc;
}
static const uint32_t *g_q;
static size_t g_d;
static int cli_masked(const uint8_t *m, size_t len)
{
    uint8_t *o = NULL;
    size_t ol = 0;
    int rc = fp_secagg_client_masked_input_u32(g_cli, &o, &ol, m, len, g_q, g_d);
    free(o);
    return rc;
}
static int cli_unmask(const uint8_t *m, size_t len)
{
    uint8_t *o = NULL;
    size_t ol = 0;
    int rc = fp_secagg_client_unmask(g_cli, &o, &ol, m, len);
    free(o);
    return rc;
}

/* An UNMASK_REQ to client `to` with chosen lists (header copied from a real one). */
static buf forge_request(buf real, const uint32_t *sv, uint32_t ns, const uint32_t *dv, uint32_t nd)
{
    buf b = {malloc(FP_SECAGG_HEADER_BYTES + 8 + 4 * (ns + nd)), FP_SECAGG_HEADER_BYTES + 8 + 4 * (ns + nd)};
    memcpy(b.m, real.m, FP_SECAGG_HEADER_BYTES);
    uint8_t *w = b.m + FP_SECAGG_HEADER_BYTES;
    sa_put32(w, ns);
    for (uint32_t i = 0; i < ns; i++)
        sa_put32(w + 4 + 4 * i, sv[i]);
    w += 4 + 4 * ns;
    sa_put32(w, nd);
    for (uint32_t i = 0; i < nd; i++)
        sa_put32(w + 4 + 4 * i, dv[i]);
    return b;
}

static double correlation(const double *a, const double *b, size_t n)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    for (size_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

/* ---- a round driven step by step, for the cross-round test ---- */
typedef struct party {
    fp_secagg_server *s;
    fp_secagg_client *c[8];
} party;

static void party_to_masked(party *P, fixture *f, buf *masked)
{
    CHECK_OK(fp_secagg_server_new(&P->s, &f->p));
    for (uint32_t i = 0; i < f->n; i++) {
        buf a;
        CHECK_OK(fp_secagg_client_new(&P->c[i], &f->p, f->members[i].id, &f->idn[i]));
        CHECK_OK(fp_secagg_client_advertise(P->c[i], &a.m, &a.len));
        CHECK_OK(fp_secagg_server_receive(P->s, a.m, a.len));
        free(a.m);
    }
    CHECK_OK(fp_secagg_server_close_stage(P->s));
    for (int stage = 1; stage <= 2; stage++) {
        for (uint32_t i = 0; i < f->n; i++) {
            buf down, up;
            CHECK_OK(fp_secagg_server_message_for(P->s, f->members[i].id, &down.m, &down.len));
            if (stage == 1) {
                CHECK_OK(fp_secagg_client_share_keys(P->c[i], &up.m, &up.len, down.m, down.len));
                CHECK_OK(fp_secagg_server_receive(P->s, up.m, up.len));
                free(up.m);
            } else {
                CHECK_OK(fp_secagg_client_masked_input_u32(P->c[i], &masked[i].m, &masked[i].len,
                                                           down.m, down.len, f->q[i], f->d));
            }
            free(down.m);
        }
        if (stage == 1)
            CHECK_OK(fp_secagg_server_close_stage(P->s));
    }
}

static void party_finish(party *P, fixture *f, uint32_t *sum)
{
    CHECK_OK(fp_secagg_server_close_stage(P->s));
    for (uint32_t i = 0; i < f->n; i++) {
        buf down, up;
        CHECK_OK(fp_secagg_server_message_for(P->s, f->members[i].id, &down.m, &down.len));
        CHECK_OK(fp_secagg_client_unmask(P->c[i], &up.m, &up.len, down.m, down.len));
        CHECK_OK(fp_secagg_server_receive(P->s, up.m, up.len));
        free(down.m);
        free(up.m);
    }
    CHECK_OK(fp_secagg_server_close_stage(P->s));
    CHECK_OK(fp_secagg_server_result(P->s, sum, NULL, f->d, NULL));
}

static void party_free(party *P, fixture *f)
{
    fp_secagg_server_free(P->s);
    for (uint32_t i = 0; i < f->n; i++)
        fp_secagg_client_free(P->c[i]);
}

static void cross_round(void)
{
    fixture f;
    fx_init(&f, 5, 3, 0, 1001, 1);
    uint32_t *expect = calloc(f.d, sizeof *expect), *sum = malloc(sizeof *sum * f.d);
    for (uint32_t i = 0; i < f.n; i++)
        fp_ring_add(expect, f.q[i], f.d);

    /* Round 2 runs to its masked inputs. */
    party r2 = {0}, r1 = {0};
    buf m2[5], m1[5];
    f.p.round = 2;
    party_to_masked(&r2, &f, m2);
    /* Round 1, same identities and inputs: as it should, it gives the sum. */
    f.p.round = 1;
    party_to_masked(&r1, &f, m1);
    /* Round-2 messages are refused by round 1 as replays... */
    CHECK_ERR(fp_secagg_server_receive(r1.s, m2[0].m, m2[0].len), FP_EREPLAY);
    /* ...and relabelled as round 1, round 1's keys do not unmask them. */
    for (uint32_t i = 0; i < f.n; i++) {
        sa_put64(m2[i].m + SA_OFF_ROUND, 1);
        CHECK_OK(fp_secagg_server_receive(r1.s, m2[i].m, m2[i].len));
    }
    party_finish(&r1, &f, sum);
    size_t equal = 0;
    for (size_t j = 0; j < f.d; j++)
        equal += sum[j] == expect[j];
    CHECKF(equal < 5, "round-1 keys unmasked %zu of %zu elements of round 2's inputs", equal, f.d);
    party_free(&r1, &f);

    /* Control: the same round 2 with its own masked inputs gives the exact sum. */
    for (uint32_t i = 0; i < f.n; i++) {
        sa_put64(m2[i].m + SA_OFF_ROUND, 2);
        CHECK_OK(fp_secagg_server_receive(r2.s, m2[i].m, m2[i].len));
    }
    f.p.round = 2;
    party_finish(&r2, &f, sum);
    CHECK(memcmp(sum, expect, sizeof *sum * f.d) == 0);
    party_free(&r2, &f);
    for (int i = 0; i < 5; i++) {
        free(m1[i].m);
        free(m2[i].m);
    }
    free(expect);
    free(sum);
    fx_free(&f);
}

int main(void)
{
    fp_test_seed(99);
    fixture f;
    fx_init(&f, 5, 3, 0, 1001, 1);
    /* Real quantised inputs: small centred integers, so "the server sees the
     * input" would be obvious if it were true. */
    for (uint32_t i = 0; i < f.n; i++)
        CHECK_OK(fp_ring_quantize(f.q[i], f.x[i], f.d, &f.p.ring, NULL));
    uint32_t id[5];
    for (int i = 0; i < 5; i++)
        id[i] = f.members[i].id;

    fp_secagg_server *S;
    fp_secagg_client *C[5];
    CHECK_OK(fp_secagg_server_new(&S, &f.p));
    g_srv = S;
    buf A[5], K[5], SH[5], R[5], M[5], Q[5], U[5];
    for (int i = 0; i < 5; i++) {
        CHECK_OK(fp_secagg_client_new(&C[i], &f.p, id[i], &f.idn[i]));
        CHECK_OK(fp_secagg_client_advertise(C[i], &A[i].m, &A[i].len));
    }
    /* A client object cannot be built with someone else's identity. */
    fp_secagg_client *impostor = NULL;
    CHECK_ERR(fp_secagg_client_new(&impostor, &f.p, id[0], &f.idn[1]), FP_EAUTH);
    CHECK_ERR(fp_secagg_client_advertise(C[0], &K[0].m, &K[0].len), FP_ESTATE);

    /* ---- stage 0 at the server ---- */
    buf x = copy_of(A[0]);
    x.m[0] = 'X';
    CHECK_ERR(srv_recv(x.m, x.len), FP_EFORMAT);
    memcpy(x.m, A[0].m, x.len);
    x.m[FP_SECAGG_HEADER_BYTES + 64 + 5] ^= 1; /* signature */
    CHECK_ERR(srv_recv(x.m, x.len), FP_ECRYPTO);
    memcpy(x.m, A[0].m, x.len);
    x.m[FP_SECAGG_HEADER_BYTES + 40] ^= 1; /* s_pk swapped by a man in the middle */
    CHECK_ERR(srv_recv(x.m, x.len), FP_ECRYPTO);
    memcpy(x.m, A[0].m, x.len);
    x.m[SA_OFF_ROUND] ^= 1;
    CHECK_ERR(srv_recv(x.m, x.len), FP_EREPLAY);
    memcpy(x.m, A[0].m, x.len);
    x.m[SA_OFF_SESSION + 3] ^= 1;
    CHECK_ERR(srv_recv(x.m, x.len), FP_EREPLAY);
    memcpy(x.m, A[0].m, x.len);
    x.m[SA_OFF_TYPE] = FP_SECAGG_MSG_MASKED;
    CHECK_ERR(srv_recv(x.m, x.len), FP_EREPLAY);
    memcpy(x.m, A[0].m, x.len);
    sa_put32(x.m + SA_OFF_FROM, 4242);
    CHECK_ERR(srv_recv(x.m, x.len), FP_EAUTH);
    free(x.m);
    x = copy_of(A[1]);
    sa_put32(x.m + SA_OFF_FROM, id[0]); /* client 1 posing as client 0 */
    CHECK_ERR(srv_recv(x.m, x.len), FP_ECRYPTO);
    free(x.m);
    CHECK_TRUNCATIONS(srv_recv, A[0]);
    CHECK_FLIPS(srv_recv, A[0], 0);
    for (int i = 0; i < 5; i++)
        CHECK_OK(srv_recv(A[i].m, A[i].len));
    CHECK_ERR(srv_recv(A[2].m, A[2].len), FP_EREPLAY); /* duplicate */
    uint32_t expected, received;
    CHECK_OK(fp_secagg_server_pending(S, &expected, &received));
    CHECK(expected == 5 && received == 5);
    CHECK_OK(fp_secagg_server_close_stage(S));
    CHECK_ERR(srv_recv(A[3].m, A[3].len), FP_EREPLAY); /* late: stage is over */
    for (int i = 0; i < 5; i++)
        CHECK_OK(fp_secagg_server_message_for(S, id[i], &K[i].m, &K[i].len));

    /* ---- KEYS at the client ---- */
    g_cli = C[0];
    x = copy_of(K[0]);
    x.m[FP_SECAGG_HEADER_BYTES + 4 + 68 + 3] ^= 0x10; /* a neighbour's signature */
    CHECK_ERR(cli_keys(x.m, x.len), FP_ECRYPTO);
    memcpy(x.m, K[0].m, x.len);
    x.m[FP_SECAGG_HEADER_BYTES + 4 + 36] ^= 0x10; /* a neighbour's s_pk substituted */
    CHECK_ERR(cli_keys(x.m, x.len), FP_ECRYPTO);
    memcpy(x.m, K[0].m, x.len);
    sa_put32(x.m + FP_SECAGG_HEADER_BYTES, 0xFFFFFFFFu); /* absurd count */
    CHECK_ERR(cli_keys(x.m, x.len), FP_EFORMAT);
    free(x.m);
    CHECK_ERR(cli_keys(K[1].m, K[1].len), FP_EPROTO); /* someone else's message */
    CHECK_TRUNCATIONS(cli_keys, K[0]);
    CHECK_FLIPS(cli_keys, K[0], 0);
    for (int i = 0; i < 5; i++) /* after all that, the genuine message still works */
        CHECK_OK(fp_secagg_client_share_keys(C[i], &SH[i].m, &SH[i].len, K[i].m, K[i].len));
    CHECK_ERR(cli_keys(K[0].m, K[0].len), FP_ESTATE);

    /* ---- SHARES at the server (ciphertexts are opaque to it) ---- */
    x = copy_of(SH[0]);
    sa_put32(x.m + FP_SECAGG_HEADER_BYTES + 4, id[0]); /* a share addressed to itself */
    CHECK_ERR(srv_recv(x.m, x.len), FP_EPROTO);
    free(x.m);
    CHECK_TRUNCATIONS(srv_recv, SH[0]);
    for (int i = 0; i < 5; i++)
        CHECK_OK(srv_recv(SH[i].m, SH[i].len));
    CHECK_OK(fp_secagg_server_close_stage(S));
    for (int i = 0; i < 5; i++)
        CHECK_OK(fp_secagg_server_message_for(S, id[i], &R[i].m, &R[i].len));

    /* ---- RELAY at the client ---- */
    g_cli = C[0];
    g_q = f.q[0];
    g_d = f.d;
    const size_t e0 = FP_SECAGG_HEADER_BYTES + 4;
    x = copy_of(R[0]);
    x.m[e0 + 4 + 24 + 10] ^= 1; /* ciphertext */
    CHECK_ERR(cli_masked(x.m, x.len), FP_ECRYPTO);
    memcpy(x.m, R[0].m, x.len);
    x.m[e0 + 4 + 24 + SA_CT_BYTES - 1] ^= 1; /* tag */
    CHECK_ERR(cli_masked(x.m, x.len), FP_ECRYPTO);
    memcpy(x.m, R[0].m, x.len);
    x.m[e0 + 4] ^= 1; /* nonce */
    CHECK_ERR(cli_masked(x.m, x.len), FP_ECRYPTO);
    /* Misrouted: the ciphertext that client j wrote for client 1, relayed to
     * client 0 as if j wrote it for 0 (same sender, other recipient in the AD). */
    memcpy(x.m, R[0].m, x.len);
    int swapped = 0;
    for (uint32_t a = 0; a < 4 && !swapped; a++) {
        uint32_t from = sa_get32(x.m + e0 + a * SA_CT_ENTRY);
        for (uint32_t b = 0; b < 4; b++) {
            const uint8_t *eb = R[1].m + e0 + b * SA_CT_ENTRY;
            if (sa_get32(eb) == from) {
                memcpy(x.m + e0 + a * SA_CT_ENTRY + 4, eb + 4, SA_CT_ENTRY - 4);
                swapped = 1;
                break;
            }
        }
    }
    CHECK(swapped);
    CHECK_ERR(cli_masked(x.m, x.len), FP_ECRYPTO);
    free(x.m);
    CHECK_TRUNCATIONS(cli_masked, R[0]);
    CHECK_FLIPS(cli_masked, R[0], 0);
    /* Wrong input length. */
    uint8_t *o = NULL;
    size_t ol = 0;
    CHECK_ERR(fp_secagg_client_masked_input_u32(C[0], &o, &ol, R[0].m, R[0].len, f.q[0], f.d - 1),
              FP_ESHAPE);
    for (int i = 0; i < 4; i++) /* client 4 drops before sending its masked input */
        CHECK_OK(fp_secagg_client_masked_input_u32(C[i], &M[i].m, &M[i].len, R[i].m, R[i].len,
                                                   f.q[i], f.d));

    /* ---- the server's view of one masked input ---- */
    {
        uint32_t *y = malloc(sizeof *y * f.d);
        double *a = malloc(sizeof *a * f.d), *b = malloc(sizeof *b * f.d);
        CHECK_OK(sa_masked_decode(y, f.d, M[0].m, M[0].len));
        size_t equal = 0, small = 0, qsmall = 0;
        for (size_t j = 0; j < f.d; j++) {
            int64_t qc = f.q[0][j] >= 0x80000000u ? (int64_t)f.q[0][j] - 0x100000000ll : f.q[0][j];
            int64_t yc = y[j] >= 0x80000000u ? (int64_t)y[j] - 0x100000000ll : y[j];
            equal += y[j] == f.q[0][j];
            small += yc > -65536 && yc < 65536;
            qsmall += qc > -65536 && qc < 65536;
            a[j] = (double)qc;
            b[j] = (double)yc;
        }
        double r = correlation(a, b, f.d);
        CHECK(qsmall == f.d);   /* every input element is small... */
        CHECKF(small < 3, "%zu masked elements look like inputs", small); /* ...none of y is */
        CHECK(equal == 0);
        CHECKF(fabs(r) < 0.2, "masked input correlates with the input: r=%g", r);
        free(y);
        free(a);
        free(b);
    }

    /* ---- MASKED at the server ---- */
    x = copy_of(M[0]);
    sa_put32(x.m + FP_SECAGG_HEADER_BYTES, (uint32_t)f.d - 1);
    CHECK_ERR(srv_recv(x.m, x.len - 4), FP_EFORMAT); /* consistent but wrong length */
    free(x.m);
    CHECK_TRUNCATIONS(srv_recv, M[0]);
    for (int i = 0; i < 4; i++)
        CHECK_OK(srv_recv(M[i].m, M[i].len));
    CHECK_ERR(srv_recv(M[1].m, M[1].len), FP_EREPLAY);
    CHECK_OK(fp_secagg_server_close_stage(S));
    uint32_t rec[5];
    size_t nrec = 0;
    CHECK_OK(fp_secagg_server_recipients(S, rec, 5, &nrec));
    CHECK(nrec == 4);
    for (int i = 0; i < 4; i++)
        CHECK_OK(fp_secagg_server_message_for(S, id[i], &Q[i].m, &Q[i].len));
    CHECK_ERR(fp_secagg_server_message_for(S, id[4], &x.m, &x.len), FP_ENOTFOUND);

    /* ---- UNMASK_REQ at the client: never both shares of one peer ---- */
    uint32_t surv[4] = {id[0], id[1], id[2], id[3]};
    uint32_t both[2] = {id[4], id[1]};
    g_cli = C[0];
    buf bad = forge_request(Q[0], surv, 4, both, 2);
    CHECK_ERR(cli_unmask(bad.m, bad.len), FP_EPROTO);
    CHECK(strstr(fp_errmsg(), "both") != NULL);
    free(bad.m);
    uint32_t me_dropped[1] = {id[0]};
    bad = forge_request(Q[0], surv + 1, 3, me_dropped, 1);
    CHECK_ERR(cli_unmask(bad.m, bad.len), FP_EPROTO);
    free(bad.m);
    uint32_t stranger[1] = {777};
    bad = forge_request(Q[0], surv, 4, stranger, 1);
    CHECK_ERR(cli_unmask(bad.m, bad.len), FP_EPROTO);
    free(bad.m);
    bad = forge_request(Q[0], surv, 4, surv + 2, 1); /* survivor listed as dropped too */
    CHECK_ERR(cli_unmask(bad.m, bad.len), FP_EPROTO);
    free(bad.m);
    CHECK_TRUNCATIONS(cli_unmask, Q[0]);
    CHECK_FLIPS(cli_unmask, Q[0], 0);
    /* Told that only 2 of its neighbourhood survived (t=3): client 3 aborts for good. */
    g_cli = C[3];
    uint32_t two[2] = {id[2] < id[3] ? id[2] : id[3], id[2] < id[3] ? id[3] : id[2]};
    bad = forge_request(Q[3], two, 2, NULL, 0);
    CHECK_ERR(cli_unmask(bad.m, bad.len), FP_EABORT);
    CHECK_ERR(cli_unmask(Q[3].m, Q[3].len), FP_ESTATE);
    free(bad.m);
    for (int i = 0; i < 3; i++)
        CHECK_OK(fp_secagg_client_unmask(C[i], &U[i].m, &U[i].len, Q[i].m, Q[i].len));
    g_cli = C[0];
    CHECK_ERR(cli_unmask(Q[0].m, Q[0].len), FP_ESTATE); /* answers once only */

    /* ---- UNMASK at the server ---- */
    x = copy_of(U[0]);
    x.m[FP_SECAGG_HEADER_BYTES + 4 + 5] ^= 0x40; /* x of the first share */
    CHECK_ERR(srv_recv(x.m, x.len), FP_EPROTO);
    memcpy(x.m, U[0].m, x.len);
    x.m[FP_SECAGG_HEADER_BYTES + 4 + 4] ^= 1; /* kind b <-> s */
    CHECK_ERR(srv_recv(x.m, x.len), FP_EPROTO);
    free(x.m);
    CHECK_TRUNCATIONS(srv_recv, U[0]);
    for (int i = 0; i < 3; i++)
        CHECK_OK(srv_recv(U[i].m, U[i].len));
    uint32_t *sum = malloc(sizeof *sum * f.d);
    CHECK_ERR(fp_secagg_server_result(S, sum, NULL, f.d, NULL), FP_ESTATE);
    CHECK_OK(fp_secagg_server_close_stage(S));
    CHECK(fp_secagg_server_stage(S) == FP_SECAGG_STAGE_DONE);
    uint32_t inc = 0;
    float *fsum = malloc(sizeof *fsum * f.d);
    CHECK_OK(fp_secagg_server_result(S, sum, fsum, f.d, &inc));
    CHECK(inc == 4);
    /* Exact in the ring: the sum of the four quantised inputs, nothing else. */
    size_t wrong = 0;
    for (size_t j = 0; j < f.d; j++) {
        uint32_t e = 0;
        for (int i = 0; i < 4; i++)
            e += f.q[i][j];
        wrong += sum[j] != e;
    }
    CHECKF(wrong == 0, "%zu elements differ from the exact ring sum", wrong);
    uint8_t drop[5] = {0, 0, 0, 0, FP_SECAGG_DROP_BEFORE_MASKED};
    CHECK(fx_float_err(&f, fsum, drop) <= 4 * ldexp(1.0, -16) + 1e-5);

    for (int i = 0; i < 5; i++) {
        fp_secagg_client_free(C[i]);
        free(A[i].m);
        free(K[i].m);
        free(SH[i].m);
        free(R[i].m);
        if (i < 4) {
            free(M[i].m);
            free(Q[i].m);
        }
        if (i < 3)
            free(U[i].m);
    }
    fp_secagg_server_free(S);
    free(sum);
    free(fsum);
    fx_free(&f);

    cross_round();
    return fp_test_report("test_secagg_attacks");
}
