/* Direct computations of the aggregators for the tests, written from their
 * definitions (walking the LoRA slots themselves, sorting for TIES
 * thresholds, Gram-Schmidt subspace iteration for the truncated SVD), never
 * by calling the code under test. Plus a small LoRA layout and random data. */
#ifndef AGG_DIRECT_H
#define AGG_DIRECT_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/aggregator.h"
#include "fp_test.h"

static const fp_llama_config AD_CFG = {.hidden = 12, .layers = 2, .heads = 3, .kv_heads = 1, .head_dim = 4,
                                       .intermediate = 20, .vocab = 17, .rms_eps = 1e-5f, .rope_theta = 10000.0f};

/* The given modules of both layers at rank R. */
static inline void ad_layout_of(fp_lora_vec_layout *l, int R, unsigned targets)
{
    fp_lora_config lc = {.rank = R, .alpha = 2.0f * (float)R, .targets = targets};
    CHECK_OK(fp_lora_vec_layout_build(l, &AD_CFG, &lc));
}

/* q (12x12), v (4x12), down (12x20) in 2 layers at rank R. */
static inline void ad_layout(fp_lora_vec_layout *l, int R) { ad_layout_of(l, R, FP_LORA_Q | FP_LORA_V | FP_LORA_DOWN); }

static inline float **ad_rows(size_t K, size_t dim, float lo, float hi)
{
    float **x = calloc(K, sizeof *x);
    for (size_t k = 0; k < K; k++) {
        x[k] = malloc(dim * sizeof **x);
        for (size_t i = 0; i < dim; i++)
            x[k][i] = fp_test_uniform(lo, hi);
    }
    return x;
}

static inline void ad_free_rows(float **x, size_t K)
{
    for (size_t k = 0; k < K; k++)
        free(x[k]);
    free(x);
}

/* ---- fedavg / fednova ---- */
static inline void ad_fedavg(float *out, float *const *x, const double *w, size_t K, size_t dim)
{
    double W = 0;
    for (size_t k = 0; k < K; k++)
        W += w[k];
    for (size_t i = 0; i < dim; i++) {
        double s = 0;
        for (size_t k = 0; k < K; k++)
            s += w[k] / W * x[k][i];
        out[i] = (float)s;
    }
}

static inline void ad_fednova(float *out, float *const *x, const double *w, const int *tau, size_t K, size_t dim)
{
    double W = 0, teff = 0;
    for (size_t k = 0; k < K; k++)
        W += w[k];
    for (size_t k = 0; k < K; k++)
        teff += w[k] / W * tau[k];
    for (size_t i = 0; i < dim; i++) {
        double s = 0;
        for (size_t k = 0; k < K; k++)
            s += (w[k] / W) * (x[k][i] / tau[k]);
        out[i] = (float)(teff * s);
    }
}

/* ---- hetlora: per slot, A row j / B column j averaged over clients with rank > j ---- */
static inline void ad_hetlora(float *out, float *const *x, const double *w, const int *rank, size_t K,
                              const fp_lora_vec_layout *l)
{
    int R = l->lc.rank;
    memset(out, 0, l->dim * sizeof *out);
    for (size_t s = 0; s < l->n; s++) {
        const fp_lora_slot *sl = &l->slots[s];
        for (int j = 0; j < R; j++) {
            double cov = 0;
            for (size_t k = 0; k < K; k++)
                cov += rank[k] > j ? w[k] : 0;
            if (cov == 0)
                continue;
            for (int64_t i = 0; i < sl->in; i++) {
                size_t at = sl->a_off + (size_t)j * (size_t)sl->in + (size_t)i;
                double v = 0;
                for (size_t k = 0; k < K; k++)
                    v += rank[k] > j ? w[k] * x[k][at] : 0;
                out[at] = (float)(v / cov);
            }
            for (int64_t o = 0; o < sl->out; o++) {
                size_t at = sl->b_off + (size_t)o * (size_t)R + (size_t)j;
                double v = 0;
                for (size_t k = 0; k < K; k++)
                    v += rank[k] > j ? w[k] * x[k][at] : 0;
                out[at] = (float)(v / cov);
            }
        }
    }
}

/* ---- ties ---- */
static inline int ad_cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* t = u with entries below the ceil(keep*dim)-th largest magnitude zeroed. */
static inline void ad_trim(float *t, const float *u, size_t dim, float keep)
{
    float *m = malloc(dim * sizeof *m);
    for (size_t i = 0; i < dim; i++)
        m[i] = fabsf(u[i]);
    qsort(m, dim, sizeof *m, ad_cmp_desc);
    size_t n = (size_t)ceil((double)keep * (double)dim - 1e-4);
    if (n < 1)
        n = 1;
    float thr = m[n - 1];
    for (size_t i = 0; i < dim; i++)
        t[i] = fabsf(u[i]) >= thr ? u[i] : 0.0f;
    free(m);
}

static inline void ad_ties(float *out, float *const *x, size_t K, size_t dim, float keep, float lambda)
{
    float *t = malloc(K * dim * sizeof *t);
    for (size_t k = 0; k < K; k++)
        ad_trim(t + k * dim, x[k], dim, keep);
    for (size_t i = 0; i < dim; i++) {
        double tot = 0;
        for (size_t k = 0; k < K; k++)
            tot += t[k * dim + i];
        double s = 0;
        int n = 0;
        for (size_t k = 0; k < K; k++) {
            float v = t[k * dim + i];
            if ((v > 0 && tot > 0) || (v < 0 && tot < 0)) {
                s += v;
                n++;
            }
        }
        out[i] = n ? (float)(lambda * s / n) : 0.0f;
    }
    free(t);
}

/* ---- flexlora: dense products and the best rank-R approximation ---- */

/* M (out x in) = sum_k p_k B_k[:, :r_k] A_k[:r_k, :], factors of global + x_k. */
static inline void ad_flex_product(double *M, const fp_lora_slot *sl, int R, const float *g, float *const *x,
                                   const double *w, const int *rank, size_t K)
{
    double W = 0;
    for (size_t k = 0; k < K; k++)
        W += w[k];
    size_t out = (size_t)sl->out, in = (size_t)sl->in;
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++) {
            double s = 0;
            for (size_t k = 0; k < K; k++)
                for (int j = 0; j < rank[k]; j++) {
                    size_t bi = sl->b_off + o * (size_t)R + (size_t)j, ai = sl->a_off + (size_t)j * in + i;
                    s += w[k] / W * ((double)g[bi] + x[k][bi]) * ((double)g[ai] + x[k][ai]);
                }
            M[o * in + i] = s;
        }
}

/* ||M - P M||_F where P projects on the top-R left singular subspace of M,
 * found by subspace iteration with Gram-Schmidt (no LAPACK). */
static inline double ad_best_residual(const double *M, size_t out, size_t in, int R)
{
    size_t r = (size_t)R < out ? (size_t)R : out;
    double *Y = malloc(out * r * sizeof *Y), *Z = malloc(out * r * sizeof *Z), *T = malloc(in * r * sizeof *T);
    for (size_t i = 0; i < out * r; i++)
        Y[i] = fp_test_uniform(-1, 1);
    for (int it = 0; it < 400; it++) {
        /* orthonormalise the columns of Y */
        for (size_t c = 0; c < r; c++) {
            for (size_t p = 0; p < c; p++) {
                double d = 0;
                for (size_t i = 0; i < out; i++)
                    d += Y[i * r + c] * Y[i * r + p];
                for (size_t i = 0; i < out; i++)
                    Y[i * r + c] -= d * Y[i * r + p];
            }
            double n = 0;
            for (size_t i = 0; i < out; i++)
                n += Y[i * r + c] * Y[i * r + c];
            n = sqrt(n) + 1e-300;
            for (size_t i = 0; i < out; i++)
                Y[i * r + c] /= n;
        }
        if (it == 399)
            break;
        /* Y = M M^T Y */
        for (size_t j = 0; j < in; j++)
            for (size_t c = 0; c < r; c++) {
                double s = 0;
                for (size_t i = 0; i < out; i++)
                    s += M[i * in + j] * Y[i * r + c];
                T[j * r + c] = s;
            }
        for (size_t i = 0; i < out; i++)
            for (size_t c = 0; c < r; c++) {
                double s = 0;
                for (size_t j = 0; j < in; j++)
                    s += M[i * in + j] * T[j * r + c];
                Z[i * r + c] = s;
            }
        memcpy(Y, Z, out * r * sizeof *Y);
    }
    /* residual = ||M||^2 - ||Y^T M||^2 */
    double mm = 0, pm = 0;
    for (size_t i = 0; i < out * in; i++)
        mm += M[i] * M[i];
    for (size_t c = 0; c < r; c++)
        for (size_t j = 0; j < in; j++) {
            double s = 0;
            for (size_t i = 0; i < out; i++)
                s += Y[i * r + c] * M[i * in + j];
            pm += s * s;
        }
    free(Y);
    free(Z);
    free(T);
    return sqrt(fmax(mm - pm, 0));
}

/* The product B A of one slot of (g + delta), in double: P [out, in]. */
static inline void ad_slot_product(double *P, const fp_lora_slot *sl, int R, const float *g, const float *delta)
{
    size_t out = (size_t)sl->out, in = (size_t)sl->in;
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++) {
            double s = 0;
            for (int j = 0; j < R; j++) {
                size_t bi = sl->b_off + o * (size_t)R + (size_t)j, ai = sl->a_off + (size_t)j * in + i;
                s += ((double)g[bi] + delta[bi]) * ((double)g[ai] + delta[ai]);
            }
            P[o * in + i] = s;
        }
}

#endif
