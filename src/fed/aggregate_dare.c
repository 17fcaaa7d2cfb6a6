/* dare+<base> (DARE, Yu et al. 2024) as a pre-step: each client's update
 * drops every entry with probability p and rescales the survivors by
 * 1/(1-p), which keeps its expectation and thins the overlap between clients
 * before <base> merges them. The drop is client-side (so it composes with
 * secure aggregation exactly when <base> does) and deterministic in the
 * round seed and the client id: a ChaCha20 stream keyed by
 * BLAKE2b(seed, id) gives one u32 per entry; the entry is kept when
 * u32 >= p * 2^32. */
#include <string.h>

#include <sodium.h>

#include "agg_internal.h"
#include "agg_parallel.h"

/* The client's stream key, BLAKE2b(seed, id). */
static void dare_key(uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES], uint64_t seed, uint32_t id)
{
    uint8_t in[12];
    for (int i = 0; i < 8; i++)
        in[i] = (uint8_t)(seed >> (8 * i));
    for (int i = 0; i < 4; i++)
        in[8 + i] = (uint8_t)(id >> (8 * i));
    crypto_generichash(key, crypto_stream_chacha20_ietf_KEYBYTES, in, sizeof in, NULL, 0);
}

/* Words [i0, i0 + n) of the client's stream, i0 a multiple of 16 (the words
 * of one 64-byte ChaCha20 block): any run of the stream on its own, so a
 * mask can be made block by block, in any order, on any thread. */
static void dare_words(uint32_t *buf, size_t n, size_t i0, const uint8_t *key)
{
    static const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
    memset(buf, 0, n * 4);
    crypto_stream_chacha20_ietf_xor_ic((uint8_t *)buf, (const uint8_t *)buf, n * 4, nonce, (uint32_t)(i0 / 16), key);
}

/* an entry whose word is below the cut is dropped */
static uint64_t dare_cut(float p)
{
    return (uint64_t)((double)p * 4294967296.0);
}

int fp_agg_dare_mask(uint8_t *keep, size_t dim, float p, uint64_t seed, uint32_t id)
{
    if (!keep || !(p >= 0 && p < 1))
        return fp_seterr(FP_EINVAL, "dare: drop probability %g outside [0, 1)", p);
    uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES];
    dare_key(key, seed, id);
    uint32_t buf[1024];
    uint64_t cut = dare_cut(p);
    for (size_t i0 = 0; i0 < dim; i0 += 1024) {
        size_t n = dim - i0 < 1024 ? dim - i0 : 1024;
        dare_words(buf, n, i0, key);
        for (size_t j = 0; j < n; j++)
            keep[i0 + j] = (uint64_t)buf[j] >= cut;
    }
    sodium_memzero(key, sizeof key);
    return 0;
}

int agg_dare_apply(float *out, const float *u, size_t dim, float p, uint64_t seed, uint32_t id)
{
    uint8_t *keep = malloc(dim + 1);
    if (!keep)
        return fp_seterr(FP_ENOMEM, "dare: out of memory");
    int rc = fp_agg_dare_mask(keep, dim, p, seed, id);
    float s = 1.0f / (1.0f - p);
    for (size_t i = 0; !rc && i < dim; i++)
        out[i] = keep[i] ? u[i] * s : 0.0f;
    free(keep);
    return rc;
}

size_t agg_dare_secure_len(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass)
{
    return fp_agg_secure_len(self->base, c, pass);
}

int agg_dare_client(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass, const float *u,
                    const fp_agg_client *me, const float *const *prev)
{
    float *d = malloc(c->dim * sizeof *d + 1);
    if (!d)
        return fp_seterr(FP_ENOMEM, "dare: out of memory");
    int rc = agg_dare_apply(d, u, c->dim, agg_opts(c)->dare_p, c->seed, me->id);
    if (!rc)
        rc = fp_agg_client_vector(self->base, out, c, pass, d, me, prev);
    free(d);
    return rc;
}

int agg_dare_finish(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *sums)
{
    return fp_agg_finish_secure(self->base, delta, c, sums);
}

/* ---- dare+fedavg, dare+fednova: the drop fused into the weighted sum ---- */

typedef struct dare_rows {
    const float *const *x;
    uint8_t (*key)[crypto_stream_chacha20_ietf_KEYBYTES]; /* one per client */
    uint64_t cut;
    float scale;
} dare_rows;

/* Entries [i0, i0 + n) of client k's dropped update, the values
 * agg_dare_apply writes (the same products, so the same sums). */
static const float *dare_row(void *user, size_t k, size_t i0, size_t n, float *buf, void *scratch)
{
    const dare_rows *r = user;
    uint32_t *w = scratch;
    dare_words(w, n, i0, r->key[k]);
    const float *u = r->x[k] + i0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint64_t)w[i] >= r->cut ? u[i] * r->scale : 0.0f;
    return buf;
}

/* The base's weighted sum over the dropped updates, made block by block on
 * the sum's threads instead of from a copy of every update: the same bits
 * as the base over agg_dare_apply's copies (test_aggregators checks it); at
 * fp bench fed --aggregators' 100 clients x 1M floats the copies were
 * 390 MiB. */
static int dare_weighted(float *delta, const fp_agg_ctx *c, const float *const *x, const fp_agg_client *cl,
                         const double *coef, size_t K, double mul, double div)
{
    float p = agg_opts(c)->dare_p;
    if (!(p >= 0 && p < 1))
        return fp_seterr(FP_EINVAL, "dare: drop probability %g outside [0, 1)", p);
    dare_rows r = {x, malloc(K * sizeof *r.key + 1), dare_cut(p), 1.0f / (1.0f - p)};
    if (!r.key)
        return fp_seterr(FP_ENOMEM, "dare: out of memory");
    for (size_t k = 0; k < K; k++)
        dare_key(r.key[k], c->seed, cl[k].id);
    int rc = agg_weighted_rows(delta, dare_row, &r, coef, K, c->dim, mul, div);
    sodium_memzero(r.key, K * sizeof *r.key);
    free(r.key);
    return rc;
}

typedef struct dare_job {
    float **d;
    const float *const *x;
    const fp_agg_ctx *c;
    const fp_agg_client *cl;
    size_t K;
} dare_job;

/* Clients [k0, k1) dropped and rescaled: each client's mask depends only on
 * (seed, id), so the worker threads give the same updates as one would. */
static int dare_clients(void *arg, unsigned t, size_t k0, size_t k1)
{
    (void)t;
    dare_job *j = arg;
    int rc = 0;
    for (size_t k = k0; !rc && k < k1; k++) {
        j->d[k] = malloc(j->c->dim * sizeof **j->d + 1);
        rc = j->d[k] ? agg_dare_apply(j->d[k], j->x[k], j->c->dim, agg_opts(j->c)->dare_p, j->c->seed, j->cl[k].id)
                     : fp_seterr(FP_ENOMEM, "dare: out of memory for %zu updates", j->K);
    }
    return rc;
}

/* The weighted-mean bases' coefficients (fedavg, fednova), whose drop is
 * fused into the sum: 0 with *coef set, a negative error, or 1 for every
 * other base, or with FP_AGG_DARE_COPY=1 (tests compare the two paths). */
static int dare_form(const fp_aggregator *base, double **coef, double *mul, double *div, const fp_agg_ctx *c,
                     const fp_agg_client *cl, size_t K)
{
    const char *e = getenv("FP_AGG_DARE_COPY");
    if (e && !strcmp(e, "1"))
        return 1;
    if (base == &fp_agg_fedavg_def)
        return agg_fedavg_form(coef, mul, div, cl, K);
    if (base == &fp_agg_fednova_def)
        return agg_nova_form(coef, mul, div, c, cl, K);
    return 1;
}

int agg_dare_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                   const fp_agg_client *cl, size_t K)
{
    double *coef = NULL, mul, div;
    int frc = dare_form(self->base, &coef, &mul, &div, c, cl, K);
    if (frc <= 0) {
        if (!frc)
            frc = dare_weighted(delta, c, x, cl, coef, K, mul, div);
        free(coef);
        return frc;
    }
    float **d = calloc(K, sizeof *d);
    int rc = d ? 0 : fp_seterr(FP_ENOMEM, "dare: out of memory");
    if (!rc) {
        dare_job j = {d, x, c, cl, K};
        rc = agg_parallel(agg_threads(K * c->dim, K), K, dare_clients, &j);
    }
    if (!rc)
        rc = fp_agg_aggregate_plain(self->base, delta, c, (const float *const *)d, cl, K);
    for (size_t k = 0; d && k < K; k++)
        free(d[k]);
    free(d);
    return rc;
}
