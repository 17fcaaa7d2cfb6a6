/* fednova (Wang et al., NeurIPS 2020): clients that take more local steps
 * move further; plain averaging lets them dominate and biases the objective.
 * FedNova averages the per-step directions instead and rescales by the
 * effective number of steps:
 *     p_k = w_k / sum w,   tau_eff = sum_k p_k tau_k,
 *     delta = tau_eff * sum_k p_k u_k / tau_k.
 * Secure: one sum of [w_k clip(u_k / tau_k), w_k clip, w_k clip tau_k / T]
 * (T = ctx.max_steps bounds tau_k so every entry stays within the ring clip);
 * the server gets sum w, sum w tau and sum w u / tau, nothing per client. */
#include "agg_internal.h"
#include "agg_parallel.h"

static int steps_of(const fp_agg_ctx *c, const fp_agg_client *k, int *tau)
{
    int t = k->steps > 0 ? k->steps : (c->max_steps > 0 ? (int)c->max_steps : 1);
    if (c->max_steps > 0 && (uint32_t)t > c->max_steps)
        return fp_seterr(FP_EINVAL, "fednova: client %s took %d local steps, more than the round's %u",
                         k->name ? k->name : "?", t, c->max_steps);
    *tau = t;
    return 0;
}

int agg_nova_form(double **coef, double *mul, double *div, const fp_agg_ctx *c, const fp_agg_client *cl, size_t K)
{
    double W = 0, teff = 0;
    int rc = agg_total_weight(&W, cl, K, "fednova");
    *coef = rc ? NULL : malloc(K * sizeof **coef + 1);
    if (!rc && !*coef)
        rc = fp_seterr(FP_ENOMEM, "fednova: out of memory");
    for (size_t k = 0; !rc && k < K; k++) {
        int tau = 1;
        rc = steps_of(c, &cl[k], &tau);
        teff += cl[k].weight / W * tau;
        (*coef)[k] = cl[k].weight / W / tau;
    }
    if (rc) {
        free(*coef);
        *coef = NULL;
    }
    *mul = teff;
    *div = 1.0;
    return rc;
}

static int nova_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                      const fp_agg_client *cl, size_t K)
{
    (void)self;
    double *coef, mul, div;
    int rc = agg_nova_form(&coef, &mul, &div, c, cl, K);
    if (!rc)
        rc = agg_weighted_columns(delta, x, coef, K, c->dim, mul, div);
    free(coef);
    return rc;
}

static size_t nova_len(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass)
{
    (void)self;
    return pass == 0 ? c->dim + 2 : 0;
}

static int nova_client(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass,
                       const float *u, const fp_agg_client *me, const float *const *prev)
{
    (void)self;
    (void)prev;
    int tau = 1;
    if (pass != 0 || !(me->weight > 0) || me->weight > 1 || !(c->clip > 0) || c->max_steps < 1)
        return fp_seterr(FP_EINVAL, "fednova: bad pass %u, weight %g, clip %g or max steps %u", pass,
                         me->weight, c->clip, c->max_steps);
    int rc = steps_of(c, me, &tau);
    if (rc)
        return rc;
    for (size_t i = 0; i < c->dim; i++) {
        if (isnan(u[i]))
            return fp_seterr(FP_EINVAL, "fednova: NaN in the update at %zu", i);
        out[i] = (float)(me->weight * agg_clampf(u[i] / (float)tau, c->clip));
    }
    out[c->dim] = (float)(me->weight * c->clip);
    out[c->dim + 1] = (float)(me->weight * c->clip * tau / c->max_steps);
    return 0;
}

static int nova_finish(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *sums)
{
    (void)self;
    const float *s = sums[0];
    double W = (double)s[c->dim] / c->clip, WT = (double)s[c->dim + 1] / c->clip * c->max_steps;
    if (!(W > 1e-6) || !(WT > 0))
        return fp_seterr(FP_EABORT, "fednova: secure sums of weights %g and steps %g: nothing to average", W, WT);
    double scale = WT / W / W; /* tau_eff / W */
    for (size_t i = 0; i < c->dim; i++)
        delta[i] = (float)(scale * s[i]);
    return 0;
}

const fp_aggregator fp_agg_fednova_def = {.name = "fednova",
                                          .secure_ok = 1,
                                          .secure_sums = 1,
                                          .secure_len_x = nova_len,
                                          .client_vector_x = nova_client,
                                          .finish_secure_x = nova_finish,
                                          .aggregate_plain_x = nova_plain,
                                          .dp_ok = 1};
