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

int fp_agg_dare_mask(uint8_t *keep, size_t dim, float p, uint64_t seed, uint32_t id)
{
    if (!keep || !(p >= 0 && p < 1))
        return fp_seterr(FP_EINVAL, "dare: drop probability %g outside [0, 1)", p);
    uint8_t in[12], key[crypto_stream_chacha20_ietf_KEYBYTES];
    for (int i = 0; i < 8; i++)
        in[i] = (uint8_t)(seed >> (8 * i));
    for (int i = 0; i < 4; i++)
        in[8 + i] = (uint8_t)(id >> (8 * i));
    crypto_generichash(key, sizeof key, in, sizeof in, NULL, 0);
    uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
    uint32_t buf[1024];
    uint64_t cut = (uint64_t)((double)p * 4294967296.0);
    for (size_t i0 = 0; i0 < dim; i0 += 1024) {
        size_t n = dim - i0 < 1024 ? dim - i0 : 1024;
        /* block counter: each 1024-word chunk starts at its own 64-byte block */
        crypto_stream_chacha20_ietf_xor_ic((uint8_t *)buf, (const uint8_t *)memset(buf, 0, n * 4), n * 4, nonce,
                                           (uint32_t)(i0 / 16), key);
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

int agg_dare_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                   const fp_agg_client *cl, size_t K)
{
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
