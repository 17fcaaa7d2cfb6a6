/* Clipping, stochastic-rounding quantisation into Z_{2^32}, and decoding of sums. */
#include "fedproxy/ring.h"
#include "error_internal.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

/* Randomness is generated in blocks of this many 32-bit words. */
#define RING_RAND_WORDS 1024u

static int check_params(const fp_ring_params *p)
{
    if (!p)
        return fp_seterr(FP_EINVAL, "ring: NULL parameters");
    if (!(p->clip > 0.0f) || !isfinite(p->clip))
        return fp_seterr(FP_EINVAL, "ring: clip must be a positive finite number, got %g",
                         (double)p->clip);
    if (p->scale_bits > FP_RING_MAX_SCALE_BITS)
        return fp_seterr(FP_EINVAL, "ring: scale_bits=%u, at most %u", p->scale_bits,
                         FP_RING_MAX_SCALE_BITS);
    return 0;
}

/* M = ceil(clip * 2^bits): the largest |q| one client can produce. */
static double client_range(float clip, unsigned bits) { return ceil(ldexp((double)clip, (int)bits)); }

int fp_ring_check(const fp_ring_params *p, uint32_t n_clients)
{
    int rc = check_params(p);
    if (rc)
        return rc;
    if (n_clients < 1)
        return fp_seterr(FP_EINVAL, "ring: need at least one client");
    double m = client_range(p->clip, p->scale_bits);
    double total = m * (double)n_clients; /* exact: both factors < 2^53 / 2^32 */
    if (total > 2147483647.0) {
        unsigned fit = 0;
        int have = fp_ring_max_scale_bits(&fit, p->clip, n_clients) == 0;
        return fp_seterr(FP_EOVERFLOW,
                         "ring: %u clients x max |value| %.0f (clip %g at scale 2^%u) = %.0f "
                         "exceeds 2^31-1 = 2147483647, so the sum could wrap 2^32; %s%u",
                         n_clients, m, (double)p->clip, p->scale_bits, total,
                         have ? "use scale_bits <= " : "no scale fits this clip; scale_bits=",
                         have ? fit : 0u);
    }
    return 0;
}

int fp_ring_max_scale_bits(unsigned *scale_bits, float clip, uint32_t n_clients)
{
    if (!scale_bits)
        return fp_seterr(FP_EINVAL, "fp_ring_max_scale_bits: NULL output");
    if (!(clip > 0.0f) || !isfinite(clip) || n_clients < 1)
        return fp_seterr(FP_EINVAL, "ring: bad clip %g or client count %u", (double)clip,
                         n_clients);
    for (int b = (int)FP_RING_MAX_SCALE_BITS; b >= 0; b--) {
        if (client_range(clip, (unsigned)b) * (double)n_clients <= 2147483647.0) {
            *scale_bits = (unsigned)b;
            return 0;
        }
    }
    return fp_seterr(FP_EOVERFLOW, "ring: %u clients with clip %g overflow 2^31 at any scale",
                     n_clients, (double)clip);
}

double fp_ring_step(const fp_ring_params *p) { return p ? ldexp(1.0, -(int)p->scale_bits) : 0.0; }

int fp_ring_quantize(uint32_t *out, const float *x, size_t n, const fp_ring_params *p,
                     const uint8_t *seed)
{
    if ((!out || !x) && n)
        return fp_seterr(FP_EINVAL, "fp_ring_quantize: NULL buffer");
    int rc = fp_ring_check(p, 1); /* one client's range must fit, or the casts below overflow */
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]))
            return fp_seterr(FP_EINVAL, "ring: input element %zu is NaN", i);
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");

    static const uint8_t zeros[RING_RAND_WORDS * 4];
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {'f', 'p', 'r', 'i', 'n', 'g',
                                                                     'q', '1'};
    uint8_t rnd[RING_RAND_WORDS * 4];
    const double scale = ldexp(1.0, (int)p->scale_bits);
    const double c = (double)p->clip;
    for (size_t base = 0; base < n; base += RING_RAND_WORDS) {
        size_t len = n - base < RING_RAND_WORDS ? n - base : RING_RAND_WORDS;
        if (seed) /* counter in 64-byte blocks: 16 words each, RING_RAND_WORDS is a multiple */
            crypto_stream_chacha20_xor_ic(rnd, zeros, len * 4, nonce, (uint64_t)(base / 16), seed);
        else
            randombytes_buf(rnd, len * 4);
        for (size_t i = 0; i < len; i++) {
            double v = (double)x[base + i];
            v = v > c ? c : (v < -c ? -c : v);
            double s = v * scale;
            double fl = floor(s);
            const uint8_t *r = rnd + 4 * i;
            uint32_t u = (uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 |
                         (uint32_t)r[3] << 24;
            /* Round up with probability frac: P(u * 2^-32 < frac) = frac
             * (to 2^-32 resolution), so E[q] = s. */
            int64_t q = (int64_t)fl + ((double)u * 0x1p-32 < s - fl ? 1 : 0);
            out[base + i] = (uint32_t)q; /* two's complement wrap is the ring embedding */
        }
    }
    sodium_memzero(rnd, sizeof rnd);
    return 0;
}

int fp_ring_dequantize_sum(float *out, const uint32_t *sum, size_t n, const fp_ring_params *p,
                           uint32_t n_clients)
{
    if ((!out || !sum) && n)
        return fp_seterr(FP_EINVAL, "fp_ring_dequantize_sum: NULL buffer");
    int rc = fp_ring_check(p, n_clients);
    if (rc)
        return rc;
    const double step = fp_ring_step(p);
    for (size_t i = 0; i < n; i++) {
        /* Centred interpretation without implementation-defined casts. */
        int64_t v = sum[i] >= 0x80000000u ? (int64_t)sum[i] - 0x100000000ll : (int64_t)sum[i];
        out[i] = (float)((double)v * step);
    }
    return 0;
}

void fp_ring_add(uint32_t *acc, const uint32_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

void fp_ring_sub(uint32_t *acc, const uint32_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] -= x[i];
}
