/* Shamir t-of-n over GF(2^8): field laws, every t-subset reconstructs, t-1 do not,
 * and the argument errors callers rely on. */
#include <sodium.h>
#include <string.h>

#include "fedproxy/shamir.h"
#include "fp_test.h"

#define SECRET 32
#define STRIDE FP_SHAMIR_SHARE_BYTES(SECRET)

static void field_laws(void)
{
    int ok_inv = 1, ok_comm = 1, ok_dist = 1, ok_ref = 1;
    for (unsigned a = 0; a < 256; a++) {
        uint8_t inv = fp_gf256_inv((uint8_t)a);
        if (a && fp_gf256_mul((uint8_t)a, inv) != 1)
            ok_inv = 0;
        for (unsigned b = 0; b < 256; b++) {
            uint8_t ab = fp_gf256_mul((uint8_t)a, (uint8_t)b);
            if (ab != fp_gf256_mul((uint8_t)b, (uint8_t)a))
                ok_comm = 0;
            /* Schoolbook carry-less multiply then reduce: an independent reference. */
            unsigned p = 0;
            for (int i = 0; i < 8; i++)
                if (b >> i & 1)
                    p ^= a << i;
            for (int i = 14; i >= 8; i--)
                if (p >> i & 1)
                    p ^= 0x11bu << (i - 8);
            if (ab != p)
                ok_ref = 0;
            unsigned c = (a * 7 + b * 13) & 0xff;
            if (fp_gf256_mul((uint8_t)a, (uint8_t)(b ^ c)) !=
                (fp_gf256_mul((uint8_t)a, (uint8_t)b) ^ fp_gf256_mul((uint8_t)a, (uint8_t)c)))
                ok_dist = 0;
        }
    }
    CHECK(ok_inv);
    CHECK(ok_comm);
    CHECK(ok_dist);
    CHECK(ok_ref);
    CHECK(fp_gf256_inv(0) == 0);
    CHECK(fp_gf256_mul(0x57, 0x83) == 0xc1); /* FIPS-197 example */
}

/* Reconstructs from every t-subset of n shares (n <= 8), and from every (t-1)-subset with
 * threshold t-1, which must not give the secret. */
static void all_subsets(unsigned t, unsigned n)
{
    uint8_t secret[SECRET], shares[8 * STRIDE], pick[8 * STRIDE], out[SECRET];
    randombytes_buf(secret, sizeof secret);
    CHECK_OK(fp_shamir_split(shares, sizeof shares, secret, SECRET, t, n));
    for (unsigned i = 0; i < n; i++)
        CHECK(shares[i * STRIDE] == i + 1);
    int good = 0, subsets = 0, leaks = 0, small = 0;
    for (unsigned mask = 1; mask < (1u << n); mask++) {
        unsigned cnt = (unsigned)__builtin_popcount(mask);
        if (cnt != t && cnt != t - 1)
            continue;
        unsigned m = 0;
        for (unsigned i = 0; i < n; i++)
            if (mask >> i & 1)
                memcpy(pick + (m++) * STRIDE, shares + i * STRIDE, STRIDE);
        if (cnt == t) {
            subsets++;
            if (fp_shamir_combine(out, SECRET, pick, m, t) == 0 && memcmp(out, secret, SECRET) == 0)
                good++;
        } else if (cnt >= 1) {
            small++;
            if (fp_shamir_combine(out, SECRET, pick, m, cnt) == 0 &&
                memcmp(out, secret, SECRET) == 0)
                leaks++;
            /* And asking for t from t-1 shares is an error. */
            if (fp_shamir_combine(out, SECRET, pick, m, t) != FP_EINVAL)
                leaks++;
        }
    }
    CHECKF(good == subsets, "t=%u n=%u: %d of %d subsets reconstruct", t, n, good, subsets);
    CHECKF(leaks == 0, "t=%u n=%u: %d of %d (t-1)-subsets gave the secret", t, n, leaks, small);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    field_laws();
    for (unsigned n = 1; n <= 8; n++)
        for (unsigned t = 1; t <= n; t++)
            all_subsets(t, n);

    /* More shares than t: the first t are used; order does not matter. */
    uint8_t secret[SECRET], out[SECRET];
    static uint8_t big[255 * STRIDE];
    randombytes_buf(secret, sizeof secret);
    CHECK_OK(fp_shamir_split(big, sizeof big, secret, SECRET, 100, 255));
    CHECK_OK(fp_shamir_combine(out, SECRET, big + 155 * STRIDE, 100, 100));
    CHECK(memcmp(out, secret, SECRET) == 0);
    CHECK_OK(fp_shamir_combine(out, SECRET, big, 120, 100));
    CHECK(memcmp(out, secret, SECRET) == 0);

    /* Long secrets go through several coefficient slices. */
    uint8_t long_secret[200], long_out[200];
    static uint8_t long_shares[5 * 201];
    randombytes_buf(long_secret, sizeof long_secret);
    CHECK_OK(fp_shamir_split(long_shares, sizeof long_shares, long_secret, 200, 3, 5));
    CHECK_OK(fp_shamir_combine(long_out, 200, long_shares + 2 * 201, 3, 3));
    CHECK(memcmp(long_out, long_secret, 200) == 0);

    /* Two splits of the same secret differ (fresh coefficients). */
    uint8_t s1[3 * STRIDE], s2[3 * STRIDE];
    CHECK_OK(fp_shamir_split(s1, sizeof s1, secret, SECRET, 2, 3));
    CHECK_OK(fp_shamir_split(s2, sizeof s2, secret, SECRET, 2, 3));
    CHECK(memcmp(s1, s2, sizeof s1) != 0);

    /* Errors. */
    uint8_t sh[5 * STRIDE];
    CHECK_ERR(fp_shamir_split(sh, sizeof sh, secret, SECRET, 4, 3), FP_EINVAL);  /* t > n */
    CHECK_ERR(fp_shamir_split(sh, sizeof sh, secret, SECRET, 0, 3), FP_EINVAL);  /* t < 1 */
    CHECK_ERR(fp_shamir_split(big, sizeof big, secret, SECRET, 2, 256), FP_EINVAL); /* n > 255 */
    CHECK_ERR(fp_shamir_split(sh, 2 * STRIDE, secret, SECRET, 2, 3), FP_EINVAL); /* small buffer */
    CHECK_ERR(fp_shamir_split(sh, sizeof sh, secret, 0, 2, 3), FP_EINVAL);
    CHECK_OK(fp_shamir_split(sh, sizeof sh, secret, SECRET, 3, 5));
    CHECK_ERR(fp_shamir_combine(out, SECRET, sh, 2, 3), FP_EINVAL); /* too few */
    memcpy(sh + STRIDE, sh, STRIDE);                                 /* duplicate x */
    CHECK_ERR(fp_shamir_combine(out, SECRET, sh, 3, 3), FP_EINVAL);
    CHECK_OK(fp_shamir_split(sh, sizeof sh, secret, SECRET, 3, 5));
    sh[2 * STRIDE] = 0; /* x = 0 */
    CHECK_ERR(fp_shamir_combine(out, SECRET, sh, 3, 3), FP_EINVAL);
    /* Shares 4 and 5 with a fixed third still work after the bad ones. */
    CHECK_OK(fp_shamir_combine(out, SECRET, sh + 3 * STRIDE, 2, 2));
    CHECK(memcmp(out, secret, SECRET) != 0); /* only 2 of a 3-threshold: wrong value */
    return fp_test_report("test_shamir");
}
