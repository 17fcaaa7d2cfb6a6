/* fedproxy: differential privacy for federated rounds — clipping, Gaussian and
 * discrete Gaussian noise drawn from libsodium's CSPRNG, and a Rényi-DP
 * accountant for the subsampled Gaussian mechanism.
 *
 * What is protected. The DP quantity of a round is the sum over the included
 * clients of w_k * clip_C(u_k) (u_k: client k's update, clip_C: scaled to L2
 * norm at most C, w_k = samples_k / max samples in (0, 1]). Adding or removing
 * one client changes that sum by at most C in L2, so Gaussian noise of
 * standard deviation z*C per coordinate on the sum is the Gaussian mechanism
 * with noise multiplier z. The server divides by sum w_k afterwards (the
 * sample counts are declared at registration and are not protected). Each
 * round samples a fraction q of the clients; the accountant treats that as
 * Poisson subsampling with rate q (the usual approximation for fixed-size
 * sampling without replacement, as in DP-FedAvg, McMahan et al. 2018).
 *
 * Where the noise comes from (fp_dp_mode):
 *  - distributed: every selected client adds its share, so the sum carries
 *    N(0, (zC)^2). Trust: the clients are honest (they clip and add their
 *    noise); the guarantee holds against anyone who sees only the aggregate.
 *    With secure aggregation that includes the server; without it the server
 *    sees each update with only a 1/sqrt(n) share of the noise, so plain
 *    distributed DP protects the released model, not the updates in transit.
 *    If clients drop out, the sum carries less noise than planned: the server
 *    accounts the round with the noise multiplier actually achieved.
 *  - central: clients clip only; the server (trusted) adds N(0, (zC)^2) to the
 *    sum. In plain mode the server also re-clips every update it receives.
 *
 * Secure mode noise lives in the integer ring: each client adds discrete
 * Gaussian noise N_Z(0, s^2 / n) with s = z * C * 2^scale_bits after
 * quantisation. A sum of discrete Gaussians is not exactly a discrete
 * Gaussian; Kairouz, Liu, Steinke 2021 ("The Distributed Discrete Gaussian
 * Mechanism for Federated Learning with Secure Aggregation", Thm. 4) bound the
 * difference by tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k/(k+1)) for
 * per-client variance sigma^2; fp_dp_ddg_tau computes it and the server
 * refuses a round where tau > 1e-12 (it is below 1e-40 for sigma >= 3, and
 * sigma is in the thousands at our ring scales). Stochastic rounding can grow a
 * client's quantised L2 norm by at most sqrt(dim) ring units; the server
 * accounts with that larger sensitivity.
 *
 * Ownership: caller buffers; fp_dp_accountant has create/destroy. Threading:
 * an fp_dp_rng or accountant belongs to one thread; everything else is pure.
 */
#ifndef FEDPROXY_DP_H
#define FEDPROXY_DP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- randomness ------------------------------------------------------------
 * A buffered byte source: libsodium's CSPRNG (randombytes_buf) for real use,
 * or a ChaCha20 keystream from a 32-byte seed so that tests are reproducible.
 * The buffer holds secret noise material and is wiped by fp_dp_rng_wipe. */
#define FP_DP_SEEDBYTES 32u

typedef struct fp_dp_rng {
    uint8_t buf[512];
    size_t pos;          /* next unused byte in buf */
    int seeded;          /* 0: randombytes_buf; 1: ChaCha20(key, counter) */
    uint8_t key[FP_DP_SEEDBYTES];
    uint64_t counter;
} fp_dp_rng;

void fp_dp_rng_init(fp_dp_rng *r);
void fp_dp_rng_init_seeded(fp_dp_rng *r, const uint8_t seed[FP_DP_SEEDBYTES]);
void fp_dp_rng_wipe(fp_dp_rng *r);
uint64_t fp_dp_rng_u64(fp_dp_rng *r);
/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint64_t fp_dp_rng_below(fp_dp_rng *r, uint64_t n);

/* ---- samplers --------------------------------------------------------------- */

/* A standard normal draw (Box-Muller on two 53-bit uniforms). */
double fp_dp_normal(fp_dp_rng *r);

/* x[i] += N(0, sigma^2), sigma >= 0 and finite. */
int fp_dp_add_gaussian(float *x, size_t n, double sigma, fp_dp_rng *r);

/* Discrete Laplace on Z with scale t >= 1: P(x) proportional to exp(-|x|/t).
 * Canonne, Kamath, Steinke 2020 ("The Discrete Gaussian for Differential
 * Privacy"), Algorithm 2: exact, from uniform bits only. */
int fp_dp_discrete_laplace(int64_t *out, size_t n, uint64_t t, fp_dp_rng *r);

/* Discrete Gaussian N_Z(0, sigma2): P(x) proportional to exp(-x^2 / (2 sigma2)),
 * by rejection from the discrete Laplace (CKS 2020, Algorithm 3). Every
 * Bernoulli(exp(-gamma)) is exact for a rational gamma (CKS Algorithm 1 with
 * integer arithmetic), with sigma2 rounded UP to a rational a/2^k, a in
 * [2^55, 2^56] (relative change below 2^-55, so the noise is never smaller
 * than asked). Candidates beyond 128 sigma, whose acceptance probability is
 * below exp(-8000), are rejected outright. sigma2 in [1/4, 2^56]. */
int fp_dp_discrete_gaussian(int64_t *out, size_t n, double sigma2, fp_dp_rng *r);

/* Adds discrete Gaussian noise of variance sigma2 to ring elements q[0..n)
 * modulo 2^32 (the ring of ring.h). */
int fp_dp_add_ring_noise(uint32_t *q, size_t n, double sigma2, fp_dp_rng *r);

/* Scales x[0..n) to L2 norm at most clip (> 0): x *= min(1, clip/||x||), the
 * norm computed in double. *norm (may be NULL): the norm before clipping. A
 * NaN or infinity in x is FP_EINVAL (naming the index). */
int fp_dp_clip_l2(float *x, size_t n, double clip, double *norm);

/* Kairouz et al. 2021's tau for n clients each adding N_Z(0, sigma2). */
double fp_dp_ddg_tau(uint32_t n, double sigma2);

/* ---- Rényi DP accounting ----------------------------------------------------
 * RDP of the Poisson-subsampled Gaussian mechanism (sampling rate q, noise
 * multiplier z = sigma / sensitivity) at order alpha > 1, Mironov, Talwar,
 * Zhang 2019 ("Rényi Differential Privacy of the Sampled Gaussian
 * Mechanism"): A_alpha = E_{x~N(0,z^2)} [(1 - q + q exp((2x - 1)/(2z^2)))^alpha],
 * rdp = log(A_alpha)/(alpha - 1); a finite binomial sum for integer alpha and
 * their two-sided series for fractional alpha. q = 1 gives alpha/(2 z^2). */
int fp_dp_rdp_sampled_gaussian(double *rdp, double q, double z, double alpha);

/* The orders the accountant tracks (1.1..10.9 by 0.1, integers to 64, then
 * up to 1024). */
size_t fp_dp_orders(const double **orders);

/* (alpha, rdp) -> epsilon at delta, Canonne, Kamath, Steinke 2020 Prop. 12
 * (also Balle et al. 2020 Thm. 21): eps = rdp + log((alpha-1)/alpha)
 * - (log delta + log alpha)/(alpha - 1), never more than the classic
 * rdp + log(1/delta)/(alpha-1) (Mironov 2017 Prop. 3), minimised over the
 * orders; *order (may be NULL) gets the minimising order. */
int fp_dp_rdp_to_epsilon(double *eps, double *order, const double *orders, const double *rdp, size_t n,
                         double delta);
/* The classic conversion alone (for comparison with older published figures). */
int fp_dp_rdp_to_epsilon_classic(double *eps, double *order, const double *orders, const double *rdp,
                                 size_t n, double delta);

/* epsilon after `steps` identical rounds (q, z) at delta. */
int fp_dp_epsilon(double *eps, double q, double z, uint64_t steps, double delta);

/* The smallest noise multiplier (to 0.1% relative) whose epsilon after
 * `steps` rounds at (q, delta) is at most target_eps; bisection on the
 * monotone epsilon(z). FP_EINVAL if even z = 1e4 does not reach it. */
int fp_dp_noise_for_epsilon(double *z, double q, uint64_t steps, double delta, double target_eps);

/* The accountant: composes rounds with possibly different (q, z). */
typedef struct fp_dp_accountant fp_dp_accountant;

int fp_dp_accountant_create(fp_dp_accountant **out, double delta);
void fp_dp_accountant_destroy(fp_dp_accountant *a);
/* Adds `steps` rounds of the subsampled Gaussian (q in (0,1], z > 0). */
int fp_dp_accountant_step(fp_dp_accountant *a, double q, double z, uint64_t steps);
/* epsilon so far at the accountant's delta (0 before any step). */
int fp_dp_accountant_epsilon(const fp_dp_accountant *a, double *eps, double *order);
uint64_t fp_dp_accountant_steps(const fp_dp_accountant *a);
double fp_dp_accountant_delta(const fp_dp_accountant *a);
/* State as JSON ({"delta","steps","orders":[...],"rdp":[...]}), written
 * atomically; load checks that delta and the orders match. */
int fp_dp_accountant_save(const fp_dp_accountant *a, const char *path);
int fp_dp_accountant_load(fp_dp_accountant *a, const char *path);

/* ---- configuration ----------------------------------------------------------- */

typedef enum fp_dp_mode { FP_DP_OFF = 0, FP_DP_DISTRIBUTED = 1, FP_DP_CENTRAL = 2 } fp_dp_mode;

typedef struct fp_dp_config {
    fp_dp_mode mode;
    double clip;             /* C: L2 bound of one client's update */
    double noise_multiplier; /* z */
    double delta;
} fp_dp_config;

/* server.json "dp": {"clip": C, "noise_multiplier": z, "delta": 1e-5,
 * "mode": "distributed" | "central"}; clip and noise_multiplier required,
 * delta defaults to 1e-5, mode to distributed. Strict: unknown keys and
 * out-of-range values are FP_EFORMAT naming the field. json: the object text. */
int fp_dp_config_parse(fp_dp_config *out, const char *json, size_t len);
const char *fp_dp_mode_name(fp_dp_mode m);

#ifdef __cplusplus
}
#endif
#endif
