/* Plain-C references of the training ops (include/fedproxy/ops_train.h):
 * f32 in and out, double accumulation. */
#include <math.h>
#include <string.h>

#include "fedproxy/ops_train.h"
#include "error_internal.h"

void fp_ref_embedding_fwd(float *out, const float *table, const int32_t *ids, int64_t N, int64_t C, int64_t V)
{
    for (int64_t i = 0; i < N; i++) {
        int32_t id = ids[i];
        for (int64_t c = 0; c < C; c++)
            out[i * C + c] = (id >= 0 && id < V) ? table[(int64_t)id * C + c] : 0.0f;
    }
}

void fp_ref_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int64_t N, int64_t C, int64_t V)
{
    for (int64_t i = 0; i < N; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= V)
            continue;
        for (int64_t c = 0; c < C; c++)
            dtable[(int64_t)id * C + c] += dout[i * C + c];
    }
}

void fp_ref_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t rows, int64_t C, float eps)
{
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * C;
        double s = 0;
        for (int64_t j = 0; j < C; j++)
            s += (double)xr[j] * xr[j];
        double r = 1.0 / sqrt(s / (double)C + eps);
        for (int64_t j = 0; j < C; j++)
            y[i * C + j] = (float)(xr[j] * r * w[j]);
        rstd[i] = (float)r;
    }
}

void fp_ref_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                        int64_t rows, int64_t C, int accumulate_dw)
{
    if (dx) {
        for (int64_t i = 0; i < rows; i++) {
            const float *xr = x + i * C, *dyr = dy + i * C;
            double r = rstd[i], s = 0;
            for (int64_t j = 0; j < C; j++)
                s += (double)w[j] * dyr[j] * xr[j];
            double k = r * r * r * s / (double)C;
            for (int64_t j = 0; j < C; j++)
                dx[i * C + j] = (float)(r * w[j] * dyr[j] - k * xr[j]);
        }
    }
    if (dw) {
        for (int64_t j = 0; j < C; j++) {
            double s = 0;
            for (int64_t i = 0; i < rows; i++)
                s += (double)dy[i * C + j] * x[i * C + j] * rstd[i];
            dw[j] = (float)(accumulate_dw ? dw[j] + s : s);
        }
    }
}

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

void fp_ref_swiglu_fwd(float *h, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)(gate[i] * sigmoid(gate[i]) * up[i]);
}

void fp_ref_swiglu_bwd(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i], sg = sigmoid(g);
        dgate[i] = (float)(dh[i] * up[i] * sg * (1.0 + g * (1.0 - sg)));
        dup[i] = (float)(dh[i] * g * sg);
    }
}

static int ce_valid(int32_t t, int64_t V) { return t != FP_IGNORE_INDEX && t >= 0 && t < V; }

float fp_ref_softmax_ce_fwd(float *losses, float *lse, int64_t *n_valid, const float *logits,
                            const int32_t *targets, int64_t rows, int64_t V)
{
    double sum = 0;
    int64_t nv = 0;
    for (int64_t i = 0; i < rows; i++) {
        const float *l = logits + i * V;
        double m = -INFINITY;
        for (int64_t j = 0; j < V; j++)
            m = l[j] > m ? l[j] : m;
        double s = 0;
        for (int64_t j = 0; j < V; j++)
            s += exp(l[j] - m);
        double z = m + log(s);
        lse[i] = (float)z;
        if (ce_valid(targets[i], V)) {
            double li = z - l[targets[i]];
            losses[i] = (float)li;
            sum += li;
            nv++;
        } else {
            losses[i] = 0.0f;
        }
    }
    if (n_valid)
        *n_valid = nv;
    return nv ? (float)(sum / (double)nv) : 0.0f;
}

void fp_ref_softmax_ce_bwd(float *dlogits, const float *logits, const int32_t *targets, const float *lse,
                           int64_t rows, int64_t V, float dloss, int64_t n_valid)
{
    double sc = (double)dloss / (double)(n_valid > 0 ? n_valid : 1);
    for (int64_t i = 0; i < rows; i++) {
        int valid = ce_valid(targets[i], V);
        for (int64_t j = 0; j < V; j++) {
            double g = 0;
            if (valid)
                g = (exp((double)logits[i * V + j] - lse[i]) - (j == targets[i] ? 1.0 : 0.0)) * sc;
            dlogits[i * V + j] = (float)g;
        }
    }
}

double fp_ref_grad_norm(const float *const *grads, const int64_t *n, int count)
{
    double s = 0;
    for (int k = 0; k < count; k++)
        for (int64_t i = 0; i < n[k]; i++)
            s += (double)grads[k][i] * grads[k][i];
    return sqrt(s);
}

void fp_ref_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, const fp_adamw_params *hp,
                       float gscale)
{
    double b1 = hp->beta1, b2 = hp->beta2;
    double bc1 = 1.0 - pow(b1, (double)hp->step), bc2 = 1.0 - pow(b2, (double)hp->step);
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gscale;
        double mi = b1 * m[i] + (1.0 - b1) * gi;
        double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        double pi = p[i];
        p[i] = (float)(pi - hp->lr * ((mi / bc1) / (sqrt(vi / bc2) + hp->eps) + hp->weight_decay * pi));
    }
}

void fp_ref_sgd_step(float *p, const float *g, int64_t n, float lr, float weight_decay, float gscale)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(p[i] - (double)lr * ((double)g[i] * gscale + (double)weight_decay * p[i]));
}

uint16_t fp_ref_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal half or zero */
        if (a < 0x33000000u) /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24: value = mant * 2^(e-150), half unit 2^-24 */
        uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((a >> 13) - (112u << 10)), rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float fp_ref_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        if (m == 0) {
            u = sign;
        } else {
            float f = (float)m * 0x1p-24f;
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t fp_ref_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float fp_ref_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int fp_ref_convert(void *dst, fp_dtype dt, const void *src, fp_dtype st, int64_t n)
{
    if ((dt != FP_F32 && dt != FP_F16 && dt != FP_BF16) || (st != FP_F32 && st != FP_F16 && st != FP_BF16))
        return fp_seterr(FP_EINVAL, "ref convert: %s -> %s is not supported", fp_dtype_name(st),
                         fp_dtype_name(dt));
    for (int64_t i = 0; i < n; i++) {
        float v;
        if (st == FP_F32)
            v = ((const float *)src)[i];
        else if (st == FP_F16)
            v = fp_ref_f16_to_f32(((const uint16_t *)src)[i]);
        else
            v = fp_ref_bf16_to_f32(((const uint16_t *)src)[i]);
        if (dt == FP_F32)
            ((float *)dst)[i] = v;
        else if (dt == FP_F16)
            ((uint16_t *)dst)[i] = fp_ref_f32_to_f16(v);
        else
            ((uint16_t *)dst)[i] = fp_ref_f32_to_bf16(v);
    }
    return 0;
}
