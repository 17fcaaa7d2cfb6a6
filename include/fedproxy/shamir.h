/* fedproxy: t-of-n Shamir secret sharing of byte strings over GF(2^8).
 *
 * Each byte of the secret is the constant term of its own random polynomial of
 * degree t-1 over GF(2^8) (AES field, x^8+x^4+x^3+x+1); share i is the value of
 * every polynomial at a non-zero point x_i. Any t shares with distinct x give
 * the secret back by Lagrange interpolation at 0; t-1 shares carry no
 * information about it. Field arithmetic uses no tables and no secret-dependent
 * branches or indices (constant time).
 *
 * A share is FP_SHAMIR_SHARE_BYTES(secret_len) bytes: x (1 byte, 1..255), then
 * secret_len bytes of y. Arrays of shares are contiguous, one share after another.
 *
 * Ownership: caller-provided buffers only. Shares are secrets: wipe them
 * (sodium_memzero) when done. Threading: safe (no shared state).
 */
#ifndef FEDPROXY_SHAMIR_H
#define FEDPROXY_SHAMIR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_SHAMIR_MAX_SHARES 255u /* x ranges over the 255 non-zero field elements */
#define FP_SHAMIR_MAX_SECRET 4096u /* bytes; a bound on input sizes, not on the math */
#define FP_SHAMIR_SHARE_BYTES(secret_len) ((size_t)(secret_len) + 1u)

/* Splits secret into n shares with x = 1..n, any t of which reconstruct it.
 * shares must hold n * FP_SHAMIR_SHARE_BYTES(secret_len) bytes (shares_cap).
 * Needs 1 <= t <= n <= FP_SHAMIR_MAX_SHARES, 1 <= secret_len <= FP_SHAMIR_MAX_SECRET.
 * Coefficients come from libsodium's CSPRNG. */
int fp_shamir_split(uint8_t *shares, size_t shares_cap, const uint8_t *secret, size_t secret_len,
                    unsigned t, unsigned n);

/* Reconstructs the secret from the first t of nshares shares (each
 * FP_SHAMIR_SHARE_BYTES(secret_len) bytes, contiguous). Fails with FP_EINVAL if
 * nshares < t, or if those t shares have a zero or a repeated x. Given shares
 * of a polynomial of degree >= t, the result is a wrong value, not an error:
 * sharing has no integrity of its own. */
int fp_shamir_combine(uint8_t *secret, size_t secret_len, const uint8_t *shares, size_t nshares,
                      unsigned t);

/* GF(2^8) product and inverse (inverse of 0 is 0), exported for tests. */
uint8_t fp_gf256_mul(uint8_t a, uint8_t b);
uint8_t fp_gf256_inv(uint8_t a);

#ifdef __cplusplus
}
#endif
#endif
