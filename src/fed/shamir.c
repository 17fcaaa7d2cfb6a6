/* Shamir secret sharing over GF(2^8), constant-time field arithmetic. */
#include "fedproxy/shamir.h"
#include "error_internal.h"

#include <sodium.h>
#include <string.h>

/* Russian-peasant multiplication modulo x^8+x^4+x^3+x+1. Masks built from the
 * operand bits replace branches so the running time does not depend on secrets
 * (table lookups indexed by secret bytes would leak through the cache). */
uint8_t fp_gf256_mul(uint8_t a, uint8_t b)
{
    unsigned r = 0, x = a, y = b;
    for (int i = 0; i < 8; i++) {
        r ^= x & (0u - (y & 1u));
        y >>= 1;
        unsigned hi = 0u - ((x >> 7) & 1u);
        x = ((x << 1) ^ (0x1bu & hi)) & 0xffu;
    }
    return (uint8_t)r;
}

/* a^254 = a^-1 in GF(2^8)* (and 0 -> 0), by a fixed chain of squarings. */
uint8_t fp_gf256_inv(uint8_t a)
{
    uint8_t a2 = fp_gf256_mul(a, a);       /* a^2 */
    uint8_t a3 = fp_gf256_mul(a2, a);      /* a^3 */
    uint8_t a6 = fp_gf256_mul(a3, a3);     /* a^6 */
    uint8_t a12 = fp_gf256_mul(a6, a6);    /* a^12 */
    uint8_t a15 = fp_gf256_mul(a12, a3);   /* a^15 */
    uint8_t a30 = fp_gf256_mul(a15, a15);  /* a^30 */
    uint8_t a60 = fp_gf256_mul(a30, a30);  /* a^60 */
    uint8_t a120 = fp_gf256_mul(a60, a60); /* a^120 */
    uint8_t a127 = fp_gf256_mul(a120, fp_gf256_mul(a6, a)); /* a^127 */
    return fp_gf256_mul(a127, a127);       /* a^254 */
}

int fp_shamir_split(uint8_t *shares, size_t shares_cap, const uint8_t *secret, size_t secret_len,
                    unsigned t, unsigned n)
{
    if (!shares || !secret)
        return fp_seterr(FP_EINVAL, "fp_shamir_split: NULL argument");
    if (secret_len < 1 || secret_len > FP_SHAMIR_MAX_SECRET)
        return fp_seterr(FP_EINVAL, "shamir: secret of %zu bytes (allowed 1..%u)", secret_len,
                         FP_SHAMIR_MAX_SECRET);
    if (t < 1)
        return fp_seterr(FP_EINVAL, "shamir: threshold t=%u, must be at least 1", t);
    if (n > FP_SHAMIR_MAX_SHARES)
        return fp_seterr(FP_EINVAL, "shamir: %u shares requested, at most %u exist over GF(2^8)", n,
                         FP_SHAMIR_MAX_SHARES);
    if (t > n)
        return fp_seterr(FP_EINVAL, "shamir: threshold t=%u exceeds the number of shares n=%u", t,
                         n);
    size_t stride = FP_SHAMIR_SHARE_BYTES(secret_len);
    if (shares_cap < (size_t)n * stride)
        return fp_seterr(FP_EINVAL, "shamir: %u shares of %zu bytes need %zu bytes, buffer has %zu",
                         n, stride, (size_t)n * stride, shares_cap);
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");

    /* coef[j*len + b]: coefficient of x^(j+1) of byte b's polynomial. Generated
     * per 64-byte slice of the secret so the buffer stays on the stack. */
    uint8_t coef[(FP_SHAMIR_MAX_SHARES - 1) * 64];
    for (size_t off = 0; off < secret_len; off += 64) {
        size_t len = secret_len - off < 64 ? secret_len - off : 64;
        randombytes_buf(coef, (size_t)(t - 1) * len);
        for (unsigned i = 0; i < n; i++) {
            uint8_t x = (uint8_t)(i + 1);
            uint8_t *sh = shares + (size_t)i * stride;
            sh[0] = x;
            for (size_t b = 0; b < len; b++) {
                /* Horner from the highest coefficient down to the secret. */
                uint8_t y = 0;
                for (unsigned j = t - 1; j >= 1; j--)
                    y = fp_gf256_mul(y, x) ^ coef[(size_t)(j - 1) * len + b];
                y = fp_gf256_mul(y, x) ^ secret[off + b];
                sh[1 + off + b] = y;
            }
        }
    }
    sodium_memzero(coef, sizeof coef);
    return 0;
}

int fp_shamir_combine(uint8_t *secret, size_t secret_len, const uint8_t *shares, size_t nshares,
                      unsigned t)
{
    if (!secret || !shares)
        return fp_seterr(FP_EINVAL, "fp_shamir_combine: NULL argument");
    if (secret_len < 1 || secret_len > FP_SHAMIR_MAX_SECRET)
        return fp_seterr(FP_EINVAL, "shamir: secret of %zu bytes (allowed 1..%u)", secret_len,
                         FP_SHAMIR_MAX_SECRET);
    if (t < 1 || t > FP_SHAMIR_MAX_SHARES)
        return fp_seterr(FP_EINVAL, "shamir: threshold t=%u out of range 1..%u", t,
                         FP_SHAMIR_MAX_SHARES);
    if (nshares < t)
        return fp_seterr(FP_EINVAL, "shamir: %zu shares given, threshold needs %u", nshares, t);
    size_t stride = FP_SHAMIR_SHARE_BYTES(secret_len);

    /* The x's are public, so checking them with branches leaks nothing. */
    uint8_t seen[256] = {0};
    for (unsigned i = 0; i < t; i++) {
        uint8_t x = shares[(size_t)i * stride];
        if (x == 0)
            return fp_seterr(FP_EINVAL, "shamir: share %u has x=0 (that point is the secret)", i);
        if (seen[x])
            return fp_seterr(FP_EINVAL, "shamir: two shares have the same x=%u", x);
        seen[x] = 1;
    }

    /* Lagrange basis at 0: L_i = prod_{j!=i} x_j / (x_j - x_i); minus is xor. */
    uint8_t lag[FP_SHAMIR_MAX_SHARES];
    for (unsigned i = 0; i < t; i++) {
        uint8_t xi = shares[(size_t)i * stride];
        uint8_t num = 1, den = 1;
        for (unsigned j = 0; j < t; j++) {
            if (j == i)
                continue;
            uint8_t xj = shares[(size_t)j * stride];
            num = fp_gf256_mul(num, xj);
            den = fp_gf256_mul(den, (uint8_t)(xj ^ xi));
        }
        lag[i] = fp_gf256_mul(num, fp_gf256_inv(den));
    }
    for (size_t b = 0; b < secret_len; b++) {
        uint8_t acc = 0;
        for (unsigned i = 0; i < t; i++)
            acc ^= fp_gf256_mul(lag[i], shares[(size_t)i * stride + 1 + b]);
        secret[b] = acc;
    }
    return 0;
}
