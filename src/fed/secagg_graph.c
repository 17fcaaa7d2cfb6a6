/* SecAgg+ round context: parameter checks, roster, and the k-regular neighbour graph.
 *
 * The graph is a Harary graph H(k, n) laid on a random permutation of the
 * clients: client at ring position p is joined to positions p+-1 .. p+-floor(k/2)
 * and, for odd k, to p + n/2. The permutation comes from a ChaCha20 stream keyed
 * by the public graph seed, so every party derives the same graph, while which
 * clients end up adjacent is unpredictable before the seed is fixed (Bell et
 * al. 2020 need the neighbourhoods random, not chosen by anyone). */
#include "secagg_internal.h"
#include "error_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int fp_secagg_params_check(const fp_secagg_params *p)
{
    if (!p)
        return fp_seterr(FP_EINVAL, "secagg: NULL parameters");
    if (p->n_clients < 2 || p->n_clients > FP_SECAGG_MAX_CLIENTS)
        return fp_seterr(FP_EINVAL, "secagg: %u clients, allowed 2..%u", p->n_clients,
                         FP_SECAGG_MAX_CLIENTS);
    if (!p->members)
        return fp_seterr(FP_EINVAL, "secagg: NULL member list");
    uint32_t k = p->degree ? p->degree : p->n_clients - 1;
    if (k > p->n_clients - 1)
        return fp_seterr(FP_EINVAL, "secagg: degree k=%u but only %u other clients", k,
                         p->n_clients - 1);
    if (k > FP_SECAGG_MAX_DEGREE)
        return fp_seterr(FP_EINVAL,
                         "secagg: degree k=%u exceeds %u (k+1 Shamir shares must fit GF(2^8)); "
                         "set params.degree for %u clients",
                         k, FP_SECAGG_MAX_DEGREE, p->n_clients);
    if ((uint64_t)k * p->n_clients % 2)
        return fp_seterr(FP_EINVAL, "secagg: no %u-regular graph on %u clients (k*n is odd)", k,
                         p->n_clients);
    if (p->threshold < 2 || p->threshold > k + 1)
        return fp_seterr(FP_EINVAL,
                         "secagg: threshold t=%u must be in 2..k+1=%u (t=1 would let any one "
                         "neighbour reconstruct a client's secrets)",
                         p->threshold, k + 1);
    if (p->vec_len < 1 || p->vec_len > FP_SECAGG_MAX_VECTOR)
        return fp_seterr(FP_EINVAL, "secagg: vector length %zu, allowed 1..%u", p->vec_len,
                         FP_SECAGG_MAX_VECTOR);
    int rc = fp_ring_check(&p->ring, p->n_clients);
    if (rc)
        return fp_adderr(rc, "secagg");
    for (uint32_t i = 0; i < p->n_clients; i++)
        if (p->members[i].id == FP_SECAGG_SERVER_ID)
            return fp_seterr(FP_EINVAL, "secagg: client id 0x%08x is reserved for the server",
                             FP_SECAGG_SERVER_ID);
    return 0;
}

static int cmp_member(const void *a, const void *b)
{
    uint32_t x = ((const fp_secagg_member *)a)->id, y = ((const fp_secagg_member *)b)->id;
    return x < y ? -1 : x > y;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Uniform integers from the graph seed's ChaCha20 stream. */
typedef struct graph_rng {
    uint8_t key[32];
    uint8_t buf[64];
    unsigned used;
    uint64_t block;
} graph_rng;

static uint32_t rng_u32(graph_rng *g)
{
    static const uint8_t zeros[64];
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {'F', 'P', 'S', 'A',
                                                                     'g', 'r', 'p', 'h'};
    if (g->used >= 64) {
        crypto_stream_chacha20_xor_ic(g->buf, zeros, 64, nonce, g->block++, g->key);
        g->used = 0;
    }
    uint32_t v = sa_get32(g->buf + g->used);
    g->used += 4;
    return v;
}

/* Uniform in [0, bound) by rejection (no modulo bias). */
static uint32_t rng_below(graph_rng *g, uint32_t bound)
{
    uint32_t limit = (uint32_t)(0x100000000ull - 0x100000000ull % bound);
    for (;;) {
        uint32_t v = rng_u32(g);
        if (limit == 0 || v < limit) /* limit 0: bound divides 2^32 */
            return v % bound;
    }
}

int sa_ctx_init(sa_ctx *ctx, const fp_secagg_params *p)
{
    memset(ctx, 0, sizeof *ctx);
    int rc = fp_secagg_params_check(p);
    if (rc)
        return rc;
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
    uint32_t n = p->n_clients;
    fp_secagg_member *sorted = malloc(sizeof *sorted * n);
    ctx->ids = malloc(sizeof *ctx->ids * n);
    ctx->sign_pk = malloc(sizeof *ctx->sign_pk * n);
    ctx->ring_pos = malloc(sizeof *ctx->ring_pos * n);
    ctx->at_pos = malloc(sizeof *ctx->at_pos * n);
    if (!sorted || !ctx->ids || !ctx->sign_pk || !ctx->ring_pos || !ctx->at_pos) {
        free(sorted);
        sa_ctx_free(ctx);
        return fp_seterr(FP_ENOMEM, "secagg: out of memory for %u clients", n);
    }
    memcpy(sorted, p->members, sizeof *sorted * n);
    qsort(sorted, n, sizeof *sorted, cmp_member);
    for (uint32_t i = 0; i < n; i++) {
        if (i && sorted[i].id == sorted[i - 1].id) {
            uint32_t dup = sorted[i].id;
            free(sorted);
            sa_ctx_free(ctx);
            return fp_seterr(FP_EINVAL, "secagg: client id %u appears twice in the roster", dup);
        }
        ctx->ids[i] = sorted[i].id;
        memcpy(ctx->sign_pk[i], sorted[i].sign_pk, 32);
    }
    free(sorted);
    memcpy(ctx->session, p->session_id, sizeof ctx->session);
    memcpy(ctx->graph_seed, p->graph_seed, sizeof ctx->graph_seed);
    ctx->round = p->round;
    ctx->n = n;
    ctx->t = p->threshold;
    ctx->k = p->degree ? p->degree : n - 1;
    ctx->d = p->vec_len;
    ctx->ring = p->ring;

    /* Fisher-Yates shuffle of the clients onto ring positions. */
    graph_rng g;
    crypto_generichash(g.key, sizeof g.key, p->graph_seed, FP_SECAGG_GRAPHSEEDBYTES,
                       (const uint8_t *)"fedproxy secagg graph v1", 24);
    g.used = 64;
    g.block = 0;
    for (uint32_t i = 0; i < n; i++)
        ctx->at_pos[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = rng_below(&g, i + 1);
        uint32_t tmp = ctx->at_pos[i];
        ctx->at_pos[i] = ctx->at_pos[j];
        ctx->at_pos[j] = tmp;
    }
    for (uint32_t p_ = 0; p_ < n; p_++)
        ctx->ring_pos[ctx->at_pos[p_]] = p_;
    return 0;
}

void sa_ctx_free(sa_ctx *ctx)
{
    if (!ctx)
        return;
    free(ctx->ids);
    free(ctx->sign_pk);
    free(ctx->ring_pos);
    free(ctx->at_pos);
    memset(ctx, 0, sizeof *ctx);
}

int64_t sa_index_of(const sa_ctx *ctx, uint32_t id)
{
    size_t lo = 0, hi = ctx->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ctx->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ctx->n && ctx->ids[lo] == id ? (int64_t)lo : -1;
}

int64_t sa_row_find(const uint32_t *row, size_t len, uint32_t idx)
{
    size_t lo = 0, hi = len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (row[mid] < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < len && row[lo] == idx ? (int64_t)lo : -1;
}

void sa_graph_row(const sa_ctx *ctx, uint32_t i, uint32_t *row)
{
    uint32_t n = ctx->n, k = ctx->k, m = 0;
    if (k == n - 1) {
        for (uint32_t j = 0; j < n; j++)
            if (j != i)
                row[m++] = j;
        return; /* already ascending */
    }
    uint32_t p = ctx->ring_pos[i];
    for (uint32_t off = 1; off <= k / 2; off++) {
        row[m++] = ctx->at_pos[(p + off) % n];
        row[m++] = ctx->at_pos[(p + n - off) % n];
    }
    if (k % 2) /* n is even here (k*n even) */
        row[m++] = ctx->at_pos[(p + n / 2) % n];
    qsort(row, m, sizeof *row, cmp_u32);
}

int fp_secagg_neighbours(uint32_t *nbrs, size_t cap, size_t *count, const fp_secagg_params *p,
                         uint32_t id)
{
    if (!nbrs || !count)
        return fp_seterr(FP_EINVAL, "fp_secagg_neighbours: NULL output");
    sa_ctx ctx;
    int rc = sa_ctx_init(&ctx, p);
    if (rc)
        return rc;
    int64_t i = sa_index_of(&ctx, id);
    if (i < 0) {
        sa_ctx_free(&ctx);
        return fp_seterr(FP_ENOTFOUND, "secagg: client %u is not in the roster", id);
    }
    if (cap < ctx.k) {
        uint32_t k = ctx.k;
        sa_ctx_free(&ctx);
        return fp_seterr(FP_EINVAL, "secagg: %u neighbours do not fit a buffer of %zu", k, cap);
    }
    sa_graph_row(&ctx, (uint32_t)i, nbrs);
    for (uint32_t j = 0; j < ctx.k; j++)
        nbrs[j] = ctx.ids[nbrs[j]];
    *count = ctx.k;
    sa_ctx_free(&ctx);
    return 0;
}
