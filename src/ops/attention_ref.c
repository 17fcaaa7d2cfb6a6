/* Plain-C references for RoPE and causal grouped-query attention: naive, in
 * double, with the T x T probability matrix materialised. Tests compare the
 * kernels against these, and check their backward against finite differences. */
#include <math.h>
#include <stdlib.h>

#include "error_internal.h"
#include "fedproxy/ops_attention.h"

void fp_rope_ref64(double *y, const double *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t start_pos,
                   double theta, int inverse)
{
    int64_t half = D / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++) {
                const double *xr = x + ((b * T + t) * H + h) * D;
                double *yr = y + ((b * T + t) * H + h) * D;
                for (int64_t i = 0; i < half; i++) {
                    double inv = pow(theta, -(double)(2 * i) / (double)D);
                    double a = (double)(start_pos + t) * inv;
                    double c = cos(a), s = inverse ? -sin(a) : sin(a);
                    double x0 = xr[i], x1 = xr[i + half];
                    yr[i] = x0 * c - x1 * s;
                    yr[i + half] = x1 * c + x0 * s;
                }
            }
}

void fp_rope_ref(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t start_pos,
                 double theta, int inverse)
{
    int64_t half = D / 2;
    for (int64_t r = 0; r < B * T * H; r++) {
        int64_t t = (r / H) % T;
        const float *xr = x + r * D;
        float *yr = y + r * D;
        for (int64_t i = 0; i < half; i++) {
            double inv = pow(theta, -(double)(2 * i) / (double)D);
            double a = (double)(start_pos + t) * inv;
            double c = cos(a), s = inverse ? -sin(a) : sin(a);
            double x0 = xr[i], x1 = xr[i + half];
            yr[i] = (float)(x0 * c - x1 * s);
            yr[i + half] = (float)(x1 * c + x0 * s);
        }
    }
}

static int dims_ok(const char *op, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D)
{
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || D < 1 || Hq % Hkv)
        return fp_seterr(FP_EINVAL, "%s: bad dims B=%lld T=%lld Hq=%lld Hkv=%lld D=%lld", op, (long long)B,
                         (long long)T, (long long)Hq, (long long)Hkv, (long long)D);
    return 0;
}

static double scale_of(const fp_attn_desc *d, int64_t D)
{
    return d && d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)D);
}

/* P[i][j] for one (b, h): softmax of scaled, masked scores (row i, keys j). */
static void probs(double *P, double *lse, const double *q, const double *k, int64_t T, int64_t Hq, int64_t Hkv,
                  int64_t D, int64_t b, int64_t h, double scale, int causal)
{
    int64_t kh = h / (Hq / Hkv);
    for (int64_t i = 0; i < T; i++) {
        const double *qi = q + ((b * T + i) * Hq + h) * D;
        int64_t n = causal ? i + 1 : T;
        double m = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            const double *kj = k + ((b * T + j) * Hkv + kh) * D;
            double s = 0;
            for (int64_t e = 0; e < D; e++)
                s += qi[e] * kj[e];
            P[i * T + j] = s * scale;
            if (P[i * T + j] > m)
                m = P[i * T + j];
        }
        double sum = 0;
        for (int64_t j = 0; j < n; j++) {
            P[i * T + j] = exp(P[i * T + j] - m);
            sum += P[i * T + j];
        }
        for (int64_t j = 0; j < T; j++)
            P[i * T + j] = j < n ? P[i * T + j] / sum : 0.0;
        if (lse)
            lse[i] = m + log(sum);
    }
}

int fp_attention_forward_ref64(double *o, double *lse, const double *q, const double *k, const double *v,
                               int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const fp_attn_desc *d)
{
    int rc = dims_ok("attention_forward_ref", B, T, Hq, Hkv, D);
    if (rc)
        return rc;
    int causal = d ? d->causal : 1;
    double scale = scale_of(d, D);
    double *P = malloc(sizeof(double) * (size_t)(T * T));
    double *L = malloc(sizeof(double) * (size_t)T);
    if (!P || !L) {
        free(P);
        free(L);
        return fp_seterr(FP_ENOMEM, "attention_forward_ref: %lld x %lld probabilities", (long long)T, (long long)T);
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t kh = h / (Hq / Hkv);
            probs(P, L, q, k, T, Hq, Hkv, D, b, h, scale, causal);
            for (int64_t i = 0; i < T; i++) {
                double *oi = o + ((b * T + i) * Hq + h) * D;
                for (int64_t e = 0; e < D; e++)
                    oi[e] = 0;
                for (int64_t j = 0; j < T; j++) {
                    double p = P[i * T + j];
                    if (p == 0.0)
                        continue;
                    const double *vj = v + ((b * T + j) * Hkv + kh) * D;
                    for (int64_t e = 0; e < D; e++)
                        oi[e] += p * vj[e];
                }
                if (lse)
                    lse[(b * Hq + h) * T + i] = L[i];
            }
        }
    free(P);
    free(L);
    return 0;
}

int fp_attention_backward_ref64(double *dq, double *dk, double *dv, const double *dout, const double *q,
                                const double *k, const double *v, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                                int64_t D, const fp_attn_desc *d)
{
    int rc = dims_ok("attention_backward_ref", B, T, Hq, Hkv, D);
    if (rc)
        return rc;
    int causal = d ? d->causal : 1;
    double scale = scale_of(d, D);
    double *P = malloc(sizeof(double) * (size_t)(T * T));
    double *dP = malloc(sizeof(double) * (size_t)(T * T));
    if (!P || !dP) {
        free(P);
        free(dP);
        return fp_seterr(FP_ENOMEM, "attention_backward_ref: %lld x %lld probabilities", (long long)T, (long long)T);
    }
    for (int64_t i = 0; i < B * T * Hq * D; i++)
        dq[i] = 0;
    for (int64_t i = 0; i < B * T * Hkv * D; i++)
        dk[i] = dv[i] = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t kh = h / (Hq / Hkv);
            probs(P, NULL, q, k, T, Hq, Hkv, D, b, h, scale, causal);
            for (int64_t i = 0; i < T; i++) {
                const double *doi = dout + ((b * T + i) * Hq + h) * D;
                /* dV_j += P_ij dO_i ; dP_ij = dO_i . V_j */
                double rowsum = 0;
                for (int64_t j = 0; j < T; j++) {
                    const double *vj = v + ((b * T + j) * Hkv + kh) * D;
                    double *dvj = dv + ((b * T + j) * Hkv + kh) * D;
                    double p = P[i * T + j], s = 0;
                    for (int64_t e = 0; e < D; e++) {
                        dvj[e] += p * doi[e];
                        s += doi[e] * vj[e];
                    }
                    dP[i * T + j] = s;
                    rowsum += p * s;
                }
                /* dS_ij = P_ij (dP_ij - sum_j P_ij dP_ij) ; scores = scale q.k */
                const double *qi = q + ((b * T + i) * Hq + h) * D;
                double *dqi = dq + ((b * T + i) * Hq + h) * D;
                for (int64_t j = 0; j < T; j++) {
                    double ds = P[i * T + j] * (dP[i * T + j] - rowsum) * scale;
                    if (ds == 0.0)
                        continue;
                    const double *kj = k + ((b * T + j) * Hkv + kh) * D;
                    double *dkj = dk + ((b * T + j) * Hkv + kh) * D;
                    for (int64_t e = 0; e < D; e++) {
                        dqi[e] += ds * kj[e];
                        dkj[e] += ds * qi[e];
                    }
                }
            }
        }
    free(P);
    free(dP);
    return 0;
}

static double *to64(const float *x, int64_t n)
{
    double *y = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (y)
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i];
    return y;
}

static void to32(float *y, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)x[i];
}

int fp_attention_forward_ref(float *o, float *lse, const float *q, const float *k, const float *v, int64_t B,
                             int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const fp_attn_desc *d)
{
    int rc = dims_ok("attention_forward_ref", B, T, Hq, Hkv, D);
    if (rc)
        return rc;
    int64_t nq = B * T * Hq * D, nk = B * T * Hkv * D, nl = B * Hq * T;
    double *q64 = to64(q, nq), *k64 = to64(k, nk), *v64 = to64(v, nk);
    double *o64 = malloc(sizeof(double) * (size_t)nq), *l64 = malloc(sizeof(double) * (size_t)nl);
    rc = FP_ENOMEM;
    if (q64 && k64 && v64 && o64 && l64)
        rc = fp_attention_forward_ref64(o64, l64, q64, k64, v64, B, T, Hq, Hkv, D, d);
    else
        fp_seterr(rc, "attention_forward_ref: out of memory");
    if (!rc) {
        to32(o, o64, nq);
        if (lse)
            to32(lse, l64, nl);
    }
    free(q64);
    free(k64);
    free(v64);
    free(o64);
    free(l64);
    return rc;
}

int fp_attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                              const fp_attn_desc *d)
{
    int rc = dims_ok("attention_backward_ref", B, T, Hq, Hkv, D);
    if (rc)
        return rc;
    int64_t nq = B * T * Hq * D, nk = B * T * Hkv * D;
    double *q64 = to64(q, nq), *k64 = to64(k, nk), *v64 = to64(v, nk), *do64 = to64(dout, nq);
    double *dq64 = malloc(sizeof(double) * (size_t)nq), *dk64 = malloc(sizeof(double) * (size_t)nk),
           *dv64 = malloc(sizeof(double) * (size_t)nk);
    rc = FP_ENOMEM;
    if (q64 && k64 && v64 && do64 && dq64 && dk64 && dv64)
        rc = fp_attention_backward_ref64(dq64, dk64, dv64, do64, q64, k64, v64, B, T, Hq, Hkv, D, d);
    else
        fp_seterr(rc, "attention_backward_ref: out of memory");
    if (!rc) {
        to32(dq, dq64, nq);
        to32(dk, dk64, nk);
        to32(dv, dv64, nk);
    }
    free(q64);
    free(k64);
    free(v64);
    free(do64);
    free(dq64);
    free(dk64);
    free(dv64);
    return rc;
}
