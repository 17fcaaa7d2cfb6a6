/* fedproxy: fixed-point quantisation of float updates into the ring Z_{2^32}.
 *
 * Secure aggregation sums integers modulo 2^32, so each client clips its update
 * to [-clip, clip], scales it by 2^scale_bits and rounds stochastically (up
 * with probability equal to the fractional part, so E[q] = x * 2^scale_bits
 * exactly and the rounding errors of many clients average out instead of
 * adding a bias). Negative values wrap (two's complement). The server
 * interprets the ring sum as a signed 32-bit integer and divides by the scale.
 *
 * That decoding is exact only if the true integer sum lies in
 * [-2^31, 2^31-1]. One client's value lies in [-M, M] with
 * M = ceil(clip * 2^scale_bits), so n clients need n * M <= 2^31 - 1;
 * fp_ring_check refuses any configuration that could wrap.
 *
 * Ownership: caller-provided buffers only. Threading: safe (no shared state).
 */
#ifndef FEDPROXY_RING_H
#define FEDPROXY_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_RING_SEEDBYTES 32u     /* key of the ChaCha20 stream for stochastic rounding */
#define FP_RING_MAX_SCALE_BITS 30u

typedef struct fp_ring_params {
    float clip;          /* > 0: inputs are clipped to [-clip, clip] */
    unsigned scale_bits; /* quantisation step is 2^-scale_bits, 0..FP_RING_MAX_SCALE_BITS */
} fp_ring_params;

/* 0 if n_clients clipped, quantised values can be summed without wrapping;
 * FP_EINVAL for a bad clip/scale, FP_EOVERFLOW (message gives n, M and the
 * limit, and the largest scale_bits that would fit) otherwise. */
int fp_ring_check(const fp_ring_params *p, uint32_t n_clients);

/* Largest scale_bits for which n_clients fit for this clip (FP_EOVERFLOW if
 * even scale_bits = 0 does not fit). */
int fp_ring_max_scale_bits(unsigned *scale_bits, float clip, uint32_t n_clients);

/* The quantisation step 2^-scale_bits. */
double fp_ring_step(const fp_ring_params *p);

/* Clips x[0..n) to [-clip, clip], scales and rounds stochastically into out.
 * seed: FP_RING_SEEDBYTES bytes keying a ChaCha20 stream, for reproducible
 * rounding; NULL draws the randomness from libsodium's CSPRNG. A NaN input is
 * refused (FP_EINVAL, naming the index); +-inf clip to +-clip. */
int fp_ring_quantize(uint32_t *out, const float *x, size_t n, const fp_ring_params *p,
                     const uint8_t *seed);

/* Decodes the ring sum of n_clients quantised vectors to floats: signed,
 * centred, times the step. Runs fp_ring_check(p, n_clients) first. */
int fp_ring_dequantize_sum(float *out, const uint32_t *sum, size_t n, const fp_ring_params *p,
                           uint32_t n_clients);

/* acc[i] = acc[i] + x[i] (mod 2^32), and acc[i] - x[i]. */
void fp_ring_add(uint32_t *acc, const uint32_t *x, size_t n);
void fp_ring_sub(uint32_t *acc, const uint32_t *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
