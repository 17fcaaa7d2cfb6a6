/* Distillation losses and their gradients (proxy.h), on the host in double:
 * the teacher's and student's logits and residuals come from the device, the
 * gradients go back as fp_model_backward_ex's extra terms. */
#include <math.h>
#include <stdlib.h>

#include "fedproxy/proxy.h"

/* log softmax(x / T) of one row into out */
static void log_softmax(double *out, const float *x, int64_t V, double T)
{
    double mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        mx = fmax(mx, (double)x[v] / T);
    double sum = 0;
    for (int64_t v = 0; v < V; v++)
        sum += exp((double)x[v] / T - mx);
    double lse = mx + log(sum);
    for (int64_t v = 0; v < V; v++)
        out[v] = (double)x[v] / T - lse;
}

double fp_proxy_kd_loss(float *dstudent, const float *student, const float *teacher, int64_t n, int64_t V, float T,
                        float scale)
{
    if (!student || !teacher || n < 1 || V < 1 || !(T > 0))
        return NAN;
    double *ls = malloc((size_t)V * sizeof *ls), *lt = malloc((size_t)V * sizeof *lt);
    if (!ls || !lt) {
        free(ls);
        free(lt);
        return NAN;
    }
    double total = 0, t = T;
    for (int64_t r = 0; r < n; r++) {
        log_softmax(ls, student + r * V, V, t);
        log_softmax(lt, teacher + r * V, V, t);
        double kl = 0;
        for (int64_t v = 0; v < V; v++) {
            double pt = exp(lt[v]);
            kl += pt * (lt[v] - ls[v]);
            /* d/ds of T^2 KL / n = T (p_s - p_t) / n */
            if (dstudent)
                dstudent[r * V + v] = (float)(scale * t * (exp(ls[v]) - pt) / (double)n);
        }
        total += kl;
    }
    free(ls);
    free(lt);
    return t * t * total / (double)n;
}

double fp_proxy_hidden_loss(float *ds, const float *s, const float *t, int64_t n, float scale)
{
    if (!s || !t || n < 1)
        return NAN;
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)s[i] - t[i];
        num += d * d;
        den += (double)t[i] * t[i];
    }
    if (!(den > 0))
        den = 1.0;
    for (int64_t i = 0; ds && i < n; i++)
        ds[i] = (float)(scale * 2.0 * ((double)s[i] - t[i]) / den);
    return num / den;
}
