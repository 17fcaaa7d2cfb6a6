/* The server's coordinate-wise trimmed mean (median as a special case) on the
 * CPU by a sorting network run across columns. Why not the reference's shell
 * sort: at 100 clients x 1M floats it took 5.4 s of one core (fp bench fed
 * --aggregators --only median), one data-dependent branch per comparison; a
 * network's compare-exchanges are fixed, so one of them is a min and a max
 * over AGG_ORDER_LANES columns at once, which the compiler vectorizes.
 *
 * The network is Batcher's odd-even merge sort on the next power of two P >=
 * K. Wires past K hold an implicit +infinity "pad" that is never stored: an
 * exchange with a pad as the larger wire does nothing and is dropped, one
 * with a pad as the smaller wire only swaps which storage slot each wire
 * names, so every exchange left runs on the K stored values (1104 at K =
 * 100, against 1471 for P = 128).
 *
 * The kept ranks are summed in ascending order from 0.0f, as the reference
 * sums them, so the result is the reference's bit for bit for any finite
 * input (a network may turn a +0/-0 pair into two zeros of one sign, which no
 * sum can tell apart). A lane group holding a NaN or an infinity, which the
 * server's screen normally rejects first, is handed to the reference, so
 * even then the bits are the reference's. */
#include <stdlib.h>
#include <string.h>

#include "agg_internal.h"
#include "order_net.h"
#include "fedproxy/ops_aggregate.h"

void agg_order_net_free(agg_order_net *net)
{
    if (!net)
        return;
    free(net->ce);
    free(net->rank_slot);
    memset(net, 0, sizeof *net);
}

static int want_wide(void);

int agg_order_net_build(agg_order_net *net, size_t K)
{
    memset(net, 0, sizeof *net);
    if (K < 1 || K > AGG_ORDER_NET_MAX)
        return fp_seterr(FP_EINVAL, "order network: %zu clients (1 to %d)", K, AGG_ORDER_NET_MAX);
    size_t P = 1;
    while (P < K)
        P *= 2;
    /* log2(P) (log2(P) + 1) / 2 stages of at most P / 2 exchanges each */
    size_t lg = 0;
    while (((size_t)1 << lg) < P)
        lg++;
    size_t cap = (lg * (lg + 1) / 2) * (P / 2) + 1;
    uint16_t *slot = malloc(P * sizeof *slot);
    net->ce = malloc(cap * 2 * sizeof *net->ce);
    net->rank_slot = malloc(K * sizeof *net->rank_slot);
    if (!slot || !net->ce || !net->rank_slot) {
        free(slot);
        agg_order_net_free(net);
        return fp_seterr(FP_ENOMEM, "order network: out of memory for %zu clients", K);
    }
    for (size_t w = 0; w < P; w++)
        slot[w] = (uint16_t)w; /* slot >= K: the wire holds a pad */
    size_t n = 0;
    for (size_t p = 1; p < P; p *= 2)
        for (size_t k = p; k >= 1; k /= 2)
            for (size_t j = k % p; j + k < P; j += 2 * k)
                for (size_t i = 0; i < k && i + j + k < P; i++) {
                    size_t a = i + j, b = i + j + k;
                    if (a / (2 * p) != b / (2 * p))
                        continue;
                    if (slot[b] >= K) /* the pad is already the larger */
                        continue;
                    if (slot[a] >= K) { /* the stored value moves down, the pad up */
                        uint16_t t = slot[a];
                        slot[a] = slot[b];
                        slot[b] = t;
                        continue;
                    }
                    net->ce[2 * n] = slot[a];
                    net->ce[2 * n + 1] = slot[b];
                    n++;
                }
    for (size_t r = 0; r < K; r++)
        net->rank_slot[r] = slot[r];
    free(slot);
    net->K = K;
    net->nce = n;
    net->wide = want_wide();
    return 0;
}

/* The network over one lane group: each compare-exchange puts the smaller
 * of each lane pair in a. GCC does not if-convert the float ternary (it must
 * keep its NaN and signed-zero behaviour), so the vector forms are written
 * out: _mm_min_ps(v, u) is exactly v < u ? v : u. x86-64 runs 256-bit AVX
 * where the CPU has it (chosen once at run time; the build keeps its
 * baseline ISA), SSE2 otherwise; aarch64 NEON; others the plain loop. */
#define CE_A(e) (w + (size_t)net->ce[2 * (e)] * AGG_ORDER_LANES)
#define CE_B(e) (w + (size_t)net->ce[2 * (e) + 1] * AGG_ORDER_LANES)
#if defined(__SSE2__)
#include <emmintrin.h>
static void net_apply_base(const agg_order_net *net, float *w)
{
    for (size_t e = 0; e < net->nce; e++) {
        float *a = CE_A(e), *b = CE_B(e);
        for (int l = 0; l < AGG_ORDER_LANES; l += 4) {
            __m128 u = _mm_loadu_ps(a + l), v = _mm_loadu_ps(b + l);
            _mm_storeu_ps(a + l, _mm_min_ps(v, u));
            _mm_storeu_ps(b + l, _mm_max_ps(u, v));
        }
    }
}
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
static void net_apply_base(const agg_order_net *net, float *w)
{
    for (size_t e = 0; e < net->nce; e++) {
        float *a = CE_A(e), *b = CE_B(e);
        for (int l = 0; l < AGG_ORDER_LANES; l += 4) {
            float32x4_t u = vld1q_f32(a + l), v = vld1q_f32(b + l);
            vst1q_f32(a + l, vminq_f32(u, v));
            vst1q_f32(b + l, vmaxq_f32(u, v));
        }
    }
}
#else
static void net_apply_base(const agg_order_net *net, float *w)
{
    for (size_t e = 0; e < net->nce; e++) {
        float *a = CE_A(e), *b = CE_B(e);
        for (int l = 0; l < AGG_ORDER_LANES; l++) {
            float u = a[l], v = b[l];
            a[l] = v < u ? v : u;
            b[l] = v < u ? u : v;
        }
    }
}
#endif

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__AVX__)
#include <immintrin.h>
#define ORDER_NET_AVX 1
__attribute__((target("avx"))) static void net_apply_avx(const agg_order_net *net, float *w)
{
    for (size_t e = 0; e < net->nce; e++) {
        float *a = CE_A(e), *b = CE_B(e);
        for (int l = 0; l < AGG_ORDER_LANES; l += 8) {
            __m256 u = _mm256_loadu_ps(a + l), v = _mm256_loadu_ps(b + l);
            _mm256_storeu_ps(a + l, _mm256_min_ps(v, u));
            _mm256_storeu_ps(b + l, _mm256_max_ps(u, v));
        }
    }
}
#endif

/* AVX where the CPU has it, unless FP_AGG_SIMD=base asks for the baseline
 * (so tests run both paths on one machine). */
static int want_wide(void)
{
#ifdef ORDER_NET_AVX
    return !agg_baseline_paths() && __builtin_cpu_supports("avx");
#else
    return 0;
#endif
}

static void net_apply(const agg_order_net *net, float *w)
{
#ifdef ORDER_NET_AVX
    if (net->wide) {
        net_apply_avx(net, w);
        return;
    }
#endif
    net_apply_base(net, w);
}

#define PREFETCH_AHEAD 4

int agg_order_net_run(const agg_order_net *net, float *out, const float *const *x, size_t i0, size_t n, uint32_t b,
                      float *w)
{
    const size_t K = net->K, L = AGG_ORDER_LANES;
    if (2 * (size_t)b >= K)
        return fp_seterr(FP_EINVAL, "order network: trimming %u from each end of %zu clients leaves nothing", b, K);
    const size_t lo = b, hi = K - 1 - b;
    const float cnt = (float)(hi - lo + 1);
    for (size_t c = 0; c < n; c += L) {
        size_t m = n - c < L ? n - c : L;
        /* x * 0 is NaN for a NaN or an infinity and 0 otherwise: a
         * lane-wise check the compiler vectorizes */
        float chk[AGG_ORDER_LANES] = {0};
        for (size_t k = 0; k < K; k++) {
            float *row = w + k * L;
            /* K rows are K streams, more than a hardware prefetcher follows:
             * ask for each row's line a few groups ahead */
            if (c + PREFETCH_AHEAD * L < n)
                __builtin_prefetch(x[k] + i0 + c + PREFETCH_AHEAD * L);
            memcpy(row, x[k] + i0 + c, m * sizeof *row);
            for (size_t l = m; l < L; l++)
                row[l] = 0.0f; /* unused lanes: any finite number */
            for (size_t l = 0; l < L; l++)
                chk[l] += row[l] * 0.0f;
        }
        int nan = 0;
        for (size_t l = 0; l < L; l++)
            nan |= chk[l] != chk[l];
        if (nan) { /* the reference's bits, whatever it makes of a NaN (an infinity too, needlessly) */
            float t[AGG_ORDER_LANES];
            int rc = fp_agg_trimmed_mean_ref(t, w, (int64_t)K, (int64_t)L, b);
            if (rc)
                return rc;
            memcpy(out + c, t, m * sizeof *t);
            continue;
        }
        net_apply(net, w);
        float s[AGG_ORDER_LANES] = {0};
        for (size_t r = lo; r <= hi; r++) {
            const float *row = w + (size_t)net->rank_slot[r] * L;
            for (size_t l = 0; l < L; l++)
                s[l] += row[l];
        }
        for (size_t l = 0; l < m; l++)
            out[c + l] = s[l] / cnt;
    }
    return 0;
}
