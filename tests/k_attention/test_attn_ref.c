/* The C references themselves: attention backward against central differences
 * of the forward (double), RoPE backward against differences of RoPE forward,
 * RoPE's HF convention on a hand-checked case, and lse/o consistency. */
#include <math.h>

#include "attn_common.h"

/* loss = sum(w * o) */
static double loss(const double *q, const double *k, const double *v, const double *w, double *o, int64_t B,
                   int64_t T, int64_t Hq, int64_t Hkv, int64_t D, const fp_attn_desc *d)
{
    fp_attention_forward_ref64(o, NULL, q, k, v, B, T, Hq, Hkv, D, d);
    double s = 0;
    for (int64_t i = 0; i < B * T * Hq * D; i++)
        s += w[i] * o[i];
    return s;
}

static double *rnd64(int64_t n)
{
    double *x = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        x[i] = fp_test_normal();
    return x;
}

static void fd_attention(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int causal)
{
    fp_attn_desc d = {0.0f, causal};
    int64_t nq = B * T * Hq * D, nk = B * T * Hkv * D;
    double *q = rnd64(nq), *k = rnd64(nk), *v = rnd64(nk), *w = rnd64(nq);
    double *o = malloc(sizeof(double) * (size_t)nq);
    double *dq = malloc(sizeof(double) * (size_t)nq), *dk = malloc(sizeof(double) * (size_t)nk),
           *dv = malloc(sizeof(double) * (size_t)nk);
    CHECK_OK(fp_attention_backward_ref64(dq, dk, dv, w, q, k, v, B, T, Hq, Hkv, D, &d));
    double *xs[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
    int64_t ns[3] = {nq, nk, nk};
    const double h = 1e-5;
    double worst = 0;
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < ns[a]; i++) {
            double keep = xs[a][i];
            xs[a][i] = keep + h;
            double lp = loss(q, k, v, w, o, B, T, Hq, Hkv, D, &d);
            xs[a][i] = keep - h;
            double lm = loss(q, k, v, w, o, B, T, Hq, Hkv, D, &d);
            xs[a][i] = keep;
            double num = (lp - lm) / (2 * h);
            double err = fabs(num - gs[a][i]) / (1e-6 + fabs(num) + fabs(gs[a][i]));
            if (err > worst)
                worst = err;
        }
    printf("fd attention B=%lld T=%lld Hq=%lld Hkv=%lld D=%lld causal=%d: worst rel err %.3g\n", (long long)B,
           (long long)T, (long long)Hq, (long long)Hkv, (long long)D, causal, worst);
    CHECKF(worst < 1e-6, "attention reference backward vs finite differences: %.3g", worst);
    free(q), free(k), free(v), free(w), free(o), free(dq), free(dk), free(dv);
}

static void fd_rope(int64_t B, int64_t T, int64_t H, int64_t D, int64_t p0, double theta)
{
    int64_t n = B * T * H * D;
    double *x = rnd64(n), *w = rnd64(n), *y = malloc(sizeof(double) * (size_t)n),
           *g = malloc(sizeof(double) * (size_t)n);
    fp_rope_ref64(g, w, B, T, H, D, p0, theta, 1); /* backward: inverse rotation of dy = w */
    const double h = 1e-4;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i], lp = 0, lm = 0;
        x[i] = keep + h;
        fp_rope_ref64(y, x, B, T, H, D, p0, theta, 0);
        for (int64_t j = 0; j < n; j++)
            lp += w[j] * y[j];
        x[i] = keep - h;
        fp_rope_ref64(y, x, B, T, H, D, p0, theta, 0);
        for (int64_t j = 0; j < n; j++)
            lm += w[j] * y[j];
        x[i] = keep;
        double num = (lp - lm) / (2 * h);
        double err = fabs(num - g[i]) / (1e-8 + fabs(num) + fabs(g[i]));
        if (err > worst)
            worst = err;
    }
    printf("fd rope T=%lld H=%lld D=%lld pos0=%lld: worst rel err %.3g\n", (long long)T, (long long)H, (long long)D,
           (long long)p0, worst);
    CHECKF(worst < 1e-8, "rope backward vs finite differences: %.3g", worst);
    free(x), free(w), free(y), free(g);
}

int main(void)
{
    fp_test_seed(11);
    fd_attention(1, 1, 2, 1, 4, 1);
    fd_attention(2, 5, 4, 2, 6, 1);
    fd_attention(1, 4, 3, 1, 5, 1);
    fd_attention(1, 3, 2, 2, 4, 0);
    fd_rope(1, 3, 2, 8, 0, 10000.0);
    fd_rope(2, 2, 1, 6, 17, 500000.0);

    /* HF convention, by hand: D = 4, half = 2, inv_freq = {1, theta^-1/2}; pos = 3 */
    {
        double theta = 100.0, x[4] = {1, 2, 3, 4}, y[4];
        fp_rope_ref64(y, x, 1, 1, 1, 4, 3, theta, 0);
        double a0 = 3.0, a1 = 3.0 / 10.0;
        double want[4] = {1 * cos(a0) - 3 * sin(a0), 2 * cos(a1) - 4 * sin(a1), 3 * cos(a0) + 1 * sin(a0),
                          4 * cos(a1) + 2 * sin(a1)};
        for (int i = 0; i < 4; i++)
            CHECKF(fabs(y[i] - want[i]) < 1e-12, "rope[%d] %g vs %g", i, y[i], want[i]);
        /* position 0 is the identity; inverse undoes forward */
        fp_rope_ref64(y, x, 1, 1, 1, 4, 0, theta, 0);
        for (int i = 0; i < 4; i++)
            CHECK(fabs(y[i] - x[i]) < 1e-15);
        float xf[4] = {1, 2, 3, 4}, yf[4], zf[4];
        fp_rope_ref(yf, xf, 1, 1, 1, 4, 7, theta, 0);
        fp_rope_ref(zf, yf, 1, 1, 1, 4, 7, theta, 1);
        for (int i = 0; i < 4; i++)
            CHECK(fabsf(zf[i] - xf[i]) < 1e-5f);
    }

    /* T = 1 causal: o is v itself, lse = scaled q.k; float and double agree */
    {
        float q[4] = {1, 0, 2, 0}, k[4] = {0.5f, 1, 0, 0}, v[4] = {3, -1, 2, 7}, o[4], lse[1];
        fp_attn_desc d = {0.0f, 1};
        CHECK_OK(fp_attention_forward_ref(o, lse, q, k, v, 1, 1, 1, 1, 4, &d));
        for (int i = 0; i < 4; i++)
            CHECK(o[i] == v[i]);
        CHECK(fabsf(lse[0] - 0.25f) < 1e-7f);
        CHECK_ERR(fp_attention_forward_ref(o, lse, q, k, v, 1, 1, 3, 2, 4, &d), FP_EINVAL);
    }
    return fp_test_report("test_attn_ref");
}
