/* DP noise: the buffered byte source, the continuous Gaussian and L2 clipping.
 * Noise must be unpredictable to the server, so it comes from libsodium's
 * CSPRNG; the seeded ChaCha20 variant exists only so tests can be replayed. */
#include <math.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "fedproxy/dp.h"

void fp_dp_rng_init(fp_dp_rng *r)
{
    memset(r, 0, sizeof *r);
    r->pos = sizeof r->buf; /* empty: the first draw refills */
}

void fp_dp_rng_init_seeded(fp_dp_rng *r, const uint8_t seed[FP_DP_SEEDBYTES])
{
    fp_dp_rng_init(r);
    r->seeded = 1;
    memcpy(r->key, seed, FP_DP_SEEDBYTES);
}

void fp_dp_rng_wipe(fp_dp_rng *r) { sodium_memzero(r, sizeof *r); }

static void refill(fp_dp_rng *r)
{
    if (r->seeded) {
        /* ChaCha20 (IETF) with a 96-bit nonce made of the block counter: one
         * key, never the same nonce twice. */
        uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {0};
        for (int i = 0; i < 8; i++)
            nonce[i] = (uint8_t)(r->counter >> (8 * i));
        r->counter++;
        crypto_stream_chacha20_ietf(r->buf, sizeof r->buf, nonce, r->key);
    } else {
        randombytes_buf(r->buf, sizeof r->buf);
    }
    r->pos = 0;
}

uint64_t fp_dp_rng_u64(fp_dp_rng *r)
{
    if (r->pos + 8 > sizeof r->buf)
        refill(r);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->buf[r->pos + (size_t)i] << (8 * i);
    sodium_memzero(r->buf + r->pos, 8); /* used noise does not linger */
    r->pos += 8;
    return v;
}

uint64_t fp_dp_rng_below(fp_dp_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    /* Reject the top partial block of 2^64 so every residue is equally likely. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t v = fp_dp_rng_u64(r);
        if (v < lim)
            return v % n;
    }
}

/* Uniform in (0, 1]: 53 random bits, never 0 so that log() is finite. */
static double unit_open0(fp_dp_rng *r) { return ((double)(fp_dp_rng_u64(r) >> 11) + 1.0) * 0x1p-53; }

double fp_dp_normal(fp_dp_rng *r)
{
    /* Box-Muller; one of the pair is discarded to keep the state trivial. */
    double u1 = unit_open0(r), u2 = unit_open0(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

int fp_dp_add_gaussian(float *x, size_t n, double sigma, fp_dp_rng *r)
{
    if ((!x && n) || !r)
        return fp_seterr(FP_EINVAL, "fp_dp_add_gaussian: NULL argument");
    if (!(sigma >= 0) || !isfinite(sigma))
        return fp_seterr(FP_EINVAL, "fp_dp_add_gaussian: sigma must be finite and >= 0, got %g", sigma);
    if (sigma == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)x[i] + sigma * fp_dp_normal(r));
    return 0;
}

int fp_dp_clip_l2(float *x, size_t n, double clip, double *norm)
{
    if (norm)
        *norm = 0;
    if (!x && n)
        return fp_seterr(FP_EINVAL, "fp_dp_clip_l2: NULL vector");
    if (!(clip > 0) || !isfinite(clip))
        return fp_seterr(FP_EINVAL, "fp_dp_clip_l2: clip must be a positive finite number, got %g", clip);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            return fp_seterr(FP_EINVAL, "fp_dp_clip_l2: element %zu is %g: refusing to clip a non-finite update",
                             i, (double)x[i]);
        s += (double)x[i] * (double)x[i];
    }
    double nr = sqrt(s);
    if (norm)
        *norm = nr;
    if (nr > clip) {
        /* Shrink the factor by a few double ulps and round every product
         * toward zero, so the float result's norm cannot exceed clip through
         * rounding (the sensitivity the accountant assumes). */
        double f = clip / nr * (1.0 - 0x1p-50);
        for (size_t i = 0; i < n; i++) {
            double v = (double)x[i] * f;
            float fv = (float)v;
            if (fabs((double)fv) > fabs(v))
                fv = nextafterf(fv, 0.0f);
            x[i] = fv;
        }
    }
    return 0;
}
