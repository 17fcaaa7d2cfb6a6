/* SecAgg+ key derivation, signed and associated data, and mask expansion. */
#include "secagg_internal.h"
#include "error_internal.h"
#include "agg_parallel.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sa_signed_bytes(uint8_t out[SA_SIGNED_BYTES], const sa_ctx *ctx, uint32_t id,
                     const uint8_t c_pk[32], const uint8_t s_pk[32])
{
    /* A fixed 32-byte label keeps these signatures from being valid for any
     * other message the same identity signs. */
    static const char label[32] = "fedproxy secagg advertise v1";
    uint8_t *p = out;
    memcpy(p, label, 32);
    p += 32;
    memcpy(p, ctx->session, FP_SECAGG_SESSIONBYTES);
    p += FP_SECAGG_SESSIONBYTES;
    sa_put64(p, ctx->round);
    p += 8;
    sa_put32(p, id);
    p += 4;
    memcpy(p, c_pk, 32);
    memcpy(p + 32, s_pk, 32);
}

int sa_pair_key(uint8_t key[32], const sa_ctx *ctx, const char *label, const uint8_t my_sk[32],
                uint32_t my_id, const uint8_t my_pk[32], uint32_t peer_id,
                const uint8_t peer_pk[32])
{
    uint8_t dh[32];
    if (crypto_scalarmult(dh, my_sk, peer_pk) != 0) {
        sodium_memzero(dh, sizeof dh);
        return fp_seterr(FP_ECRYPTO, "secagg: X25519 agreement with client %u failed (bad key)",
                         peer_id);
    }
    /* Both ends hash the same bytes: the pair is ordered by id. */
    uint32_t lo_id = my_id < peer_id ? my_id : peer_id;
    uint32_t hi_id = my_id < peer_id ? peer_id : my_id;
    const uint8_t *lo_pk = my_id < peer_id ? my_pk : peer_pk;
    const uint8_t *hi_pk = my_id < peer_id ? peer_pk : my_pk;
    uint8_t hdr[32 + FP_SECAGG_SESSIONBYTES + 8 + 8];
    memset(hdr, 0, 32);
    snprintf((char *)hdr, 32, "fedproxy secagg %s v1", label);
    memcpy(hdr + 32, ctx->session, FP_SECAGG_SESSIONBYTES);
    sa_put64(hdr + 32 + FP_SECAGG_SESSIONBYTES, ctx->round);
    sa_put32(hdr + 40 + FP_SECAGG_SESSIONBYTES, lo_id);
    sa_put32(hdr + 44 + FP_SECAGG_SESSIONBYTES, hi_id);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, hdr, sizeof hdr);
    crypto_generichash_update(&st, lo_pk, 32);
    crypto_generichash_update(&st, hi_pk, 32);
    crypto_generichash_update(&st, dh, 32);
    crypto_generichash_final(&st, key, 32);
    sodium_memzero(dh, sizeof dh);
    sodium_memzero(&st, sizeof st);
    return 0;
}

void sa_share_ad(uint8_t ad[SA_AD_BYTES], const sa_ctx *ctx, uint32_t from, uint32_t to)
{
    static const char label[16] = "fp secagg share";
    memcpy(ad, label, 16);
    memcpy(ad + 16, ctx->session, FP_SECAGG_SESSIONBYTES);
    sa_put64(ad + 16 + FP_SECAGG_SESSIONBYTES, ctx->round);
    sa_put32(ad + 24 + FP_SECAGG_SESSIONBYTES, from);
    sa_put32(ad + 28 + FP_SECAGG_SESSIONBYTES, to);
    ad[32 + FP_SECAGG_SESSIONBYTES] = FP_SECAGG_MSG_SHARES; /* the stage */
}

/* Elements per chunk: 16 KiB of accumulator, a whole number of 64-byte blocks. */
#define MASK_CHUNK 4096u
/* Below this many keystream words in total, threads cost more than they save. */
#define MASK_MT_MIN_WORDS (1u << 21)

/* acc[i] +-= little-endian word i of ks. On little-endian hosts memcpy is a
 * plain load and the loop vectorises; elsewhere the bytes are assembled. */
static void add_words(uint32_t *restrict a, const uint8_t *restrict ks, size_t n, int neg)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (neg) {
        for (size_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, ks + 4 * i, 4);
            a[i] -= v;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, ks + 4 * i, 4);
            a[i] += v;
        }
    }
#else
    if (neg)
        for (size_t i = 0; i < n; i++)
            a[i] -= sa_get32(ks + 4 * i);
    else
        for (size_t i = 0; i < n; i++)
            a[i] += sa_get32(ks + 4 * i);
#endif
}

void sa_add_le32(uint32_t *acc, const uint8_t *bytes, size_t n) { add_words(acc, bytes, n, 0); }

/* Applies every mask to acc[begin, end); begin is a multiple of MASK_CHUNK. */
static void apply_range(uint32_t *acc, size_t begin, size_t end, const sa_mask *masks, size_t m)
{
    static const uint8_t zeros[MASK_CHUNK * 4];
    static const uint8_t nonce_self[8] = {'F', 'P', 'S', 'A', 's', 'e', 'l', 'f'};
    static const uint8_t nonce_pair[8] = {'F', 'P', 'S', 'A', 'p', 'a', 'i', 'r'};
    uint8_t ks[MASK_CHUNK * 4];
    for (size_t base = begin; base < end; base += MASK_CHUNK) {
        size_t len = end - base < MASK_CHUNK ? end - base : MASK_CHUNK;
        for (size_t j = 0; j < m; j++) {
            /* Word w of the stream sits in 64-byte block w/16. */
            crypto_stream_chacha20_xor_ic(ks, zeros, len * 4,
                                          masks[j].self ? nonce_self : nonce_pair,
                                          (uint64_t)(base / 16), masks[j].key);
            add_words(acc + base, ks, len, masks[j].neg);
        }
    }
    sodium_memzero(ks, sizeof ks);
}

typedef struct mask_job {
    uint32_t *acc;
    size_t d, m;
    const sa_mask *masks;
} mask_job;

/* Chunks [c0, c1) of the accumulator: threads own disjoint, chunk-aligned
 * ranges, so no synchronisation is needed beyond the joins. */
static int mask_chunks(void *arg, unsigned t, size_t c0, size_t c1)
{
    (void)t;
    mask_job *j = arg;
    size_t end = c1 * MASK_CHUNK < j->d ? c1 * MASK_CHUNK : j->d;
    apply_range(j->acc, c0 * MASK_CHUNK, end, j->masks, j->m);
    return 0;
}

/* FP_SECAGG_THREADS if set (1 = no threads), else the online CPUs, at most 16. */
static unsigned mask_threads(void)
{
    const char *e = getenv("FP_SECAGG_THREADS");
    long v = e && e[0] ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (v < 1)
        v = 1;
    return v > AGG_MAX_THREADS ? AGG_MAX_THREADS : (unsigned)v;
}

void sa_apply_masks(uint32_t *acc, size_t d, const sa_mask *masks, size_t m)
{
    size_t chunks = (d + MASK_CHUNK - 1) / MASK_CHUNK;
    unsigned nt = (uint64_t)d * m < MASK_MT_MIN_WORDS ? 1u : mask_threads();
    if (nt > chunks)
        nt = (unsigned)chunks;
    mask_job j = {acc, d, m, masks};
    agg_parallel(nt ? nt : 1, chunks, mask_chunks, &j); /* cannot fail */
}
