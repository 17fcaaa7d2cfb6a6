/* The server's part of differential privacy (dp_internal.h): plan each
 * round's noise, keep the secure sum from wrapping, central noise, and the
 * accountant (persisted next to the checkpoint). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dp_internal.h"
#include "error_internal.h"
#include "server_internal.h"

/* Tail allowance of the noisy secure sum: 20 standard deviations (probability
 * about 1e-88 per coordinate of exceeding it). */
#define DP_RING_TAILS 20.0
#define DP_MAX_TAU 1e-12

typedef struct dp_srv {
    fp_dp_accountant *acc;
    char path[FP_FED_PATH_MAX + 32];
    /* this round */
    double q, maxs, wsq_sel; /* sampling rate, largest samples, sum of selected w^2 */
    uint32_t nsel;
    double sigma;            /* per client, float domain (0 in central mode) */
    double z_eff, round_eps;
    int done;
} dp_srv;

int fed_dp_config_parse(fp_fed_server_config *c, const cJSON *dp)
{
    char *t = cJSON_PrintUnformatted(dp);
    if (!t)
        return fp_seterr(FP_ENOMEM, "server config: out of memory");
    int rc = fp_dp_config_parse(&c->dp, t, strlen(t));
    free(t);
    if (rc)
        return rc;
    const fp_aggregator *a = NULL;
    rc = fp_aggregator_find(&a, c->aggregator);
    if (!rc && !a->dp_ok) /* aggregator.h: one secure sum of weighted, norm-nonincreasing images of the update */
        rc = fp_seterr(FP_EFORMAT,
                       "server config: \"dp\" needs an aggregator that is one weighted sum of the clipped updates "
                       "(fedavg, fednova, hetlora); \"%s\" is not, so the noise would not calibrate",
                       c->aggregator);
    return rc;
}

int dp_srv_open(fp_fed_server *s, int resume)
{
    if (s->cfg.dp.mode == FP_DP_OFF)
        return 0;
    dp_srv *d = calloc(1, sizeof *d);
    if (!d)
        return fp_seterr(FP_ENOMEM, "dp: out of memory");
    s->dp = d;
    int n = snprintf(d->path, sizeof d->path, "%s/dp_accountant.json", s->cfg.state_dir);
    if (n < 0 || (size_t)n >= sizeof d->path)
        return fp_seterr(FP_EINVAL, "dp: state_dir too long");
    int rc = fp_dp_accountant_create(&d->acc, s->cfg.dp.delta);
    if (!rc && resume) {
        rc = fp_dp_accountant_load(d->acc, d->path);
        if (rc == FP_ENOTFOUND || rc == FP_EIO) {
            /* A checkpoint without accountant state: no DP round completed
             * before (the state is written before the checkpoint). */
            fp_warn("fp serve: no DP accountant state in %s: starting from epsilon 0", s->cfg.state_dir);
            rc = 0;
        }
    }
    return rc;
}

void dp_srv_close(fp_fed_server *s)
{
    if (!s->dp)
        return;
    fp_dp_accountant_destroy(s->dp->acc);
    free(s->dp);
    s->dp = NULL;
}

int dp_srv_plan(fp_fed_server *s, double maxs)
{
    dp_srv *d = s->dp;
    if (!d)
        return 0;
    d->done = 0;
    d->z_eff = d->round_eps = 0;
    uint32_t navail = 0, nsel = 0;
    double wsq = 0;
    for (size_t i = 0; i < s->ncl; i++) {
        const srv_client *c = &s->cl[i];
        navail += c->registered && c->active;
        if (c->selected) {
            nsel++;
            double w = (double)c->samples / maxs;
            wsq += w * w;
        }
    }
    if (!nsel || !navail)
        return fp_seterr(FP_EABORT, "dp: no clients selected");
    d->q = (double)nsel / (double)navail;
    d->maxs = maxs;
    d->nsel = nsel;
    d->wsq_sel = wsq;
    const fp_dp_config *c = &s->cfg.dp;
    double zc = c->noise_multiplier * c->clip;
    if (c->mode == FP_DP_CENTRAL)
        d->sigma = 0;
    else if (s->cfg.secagg) /* on the weighted vectors: n equal shares of (zC)^2 */
        d->sigma = zc / sqrt((double)nsel);
    else /* on the updates before weighting: sum_k w_k^2 sigma^2 = (zC)^2 */
        d->sigma = zc / sqrt(wsq);
    return 0;
}

int dp_srv_ring(fp_fed_server *s, fp_secagg_params *p)
{
    dp_srv *d = s->dp;
    if (!d)
        return 0;
    const fp_dp_config *c = &s->cfg.dp;
    /* Room for n clipped values plus the noise of the sum (distributed: the
     * clients' discrete Gaussians; the weight column carries none). */
    double noise = c->mode == FP_DP_DISTRIBUTED ? DP_RING_TAILS * c->noise_multiplier * c->clip : 0;
    unsigned b = p->ring.scale_bits;
    for (;;) {
        double m = ceil(ldexp((double)p->ring.clip, (int)b)) * p->n_clients + ldexp(noise, (int)b) + 1;
        if (m <= 2147483647.0)
            break;
        if (b == 0 || s->cfg.scale_bits)
            return fp_seterr(FP_EOVERFLOW,
                             "dp: %u clients with ring clip %g and noise %g (20 sigma) do not fit the 32-bit ring "
                             "at scale_bits %u",
                             p->n_clients, (double)p->ring.clip, noise, b);
        b--;
    }
    p->ring.scale_bits = b;
    if (c->mode == FP_DP_DISTRIBUTED) {
        double si = ldexp(d->sigma, (int)b);
        double tau = fp_dp_ddg_tau(p->n_clients, si * si);
        if (si * si < 0.25 || tau > DP_MAX_TAU)
            return fp_seterr(FP_EINVAL,
                             "dp: per-client ring noise sigma %g (scale 2^%u) is too small for the sum of discrete "
                             "Gaussians to be one (tau %g); raise scale_bits or the noise",
                             si, b, tau);
    }
    return 0;
}

void dp_srv_start_json(const fp_fed_server *s, cJSON *o)
{
    const dp_srv *d = s->dp;
    if (!d)
        return;
    cJSON *j = cJSON_AddObjectToObject(o, "dp");
    cJSON_AddStringToObject(j, "mode", fp_dp_mode_name(s->cfg.dp.mode));
    cJSON_AddNumberToObject(j, "clip", s->cfg.dp.clip);
    cJSON_AddNumberToObject(j, "sigma", d->sigma);
}

int dp_srv_plain_rows(fp_fed_server *s, float *const *rows, size_t K)
{
    if (!s->dp || s->cfg.dp.mode != FP_DP_CENTRAL)
        return 0;
    for (size_t k = 0; k < K; k++) {
        int rc = fp_dp_clip_l2(rows[k], s->cfg.dim, s->cfg.dp.clip, NULL);
        if (rc)
            return fp_adderr(rc, "dp: clipping update %zu", k);
    }
    return 0;
}

int dp_srv_finish(fp_fed_server *s, float *delta, const fp_secagg_params *sp)
{
    dp_srv *d = s->dp;
    if (!d)
        return 0;
    const fp_dp_config *c = &s->cfg.dp;
    double wsum = 0, wsq = 0;
    uint32_t ninc = 0;
    for (size_t i = 0; i < s->ncl; i++)
        if (s->cl[i].selected && s->cl[i].in_sum) {
            double w = (double)s->cl[i].samples / d->maxs;
            wsum += w;
            wsq += w * w;
            ninc++;
        }
    if (!(wsum > 0))
        return fp_seterr(FP_EABORT, "dp: no client in the sum");
    int rc = 0;
    if (c->mode == FP_DP_CENTRAL) {
        /* N(0, (zC)^2) on the weighted sum is N(0, (zC / sum w)^2) on the average. */
        fp_dp_rng r;
        fp_dp_rng_init(&r);
        rc = fp_dp_add_gaussian(delta, s->cfg.dim, c->noise_multiplier * c->clip / wsum, &r);
        fp_dp_rng_wipe(&r);
        if (rc)
            return rc;
    }
    /* The noise multiplier achieved: noise std of the sum over the
     * sensitivity. Secure rounds: stochastic rounding may lengthen a client's
     * quantised vector by up to sqrt(dim) ring units. */
    double sens = c->clip, noise;
    if (sp)
        sens += sqrt((double)s->cfg.dim) * ldexp(1.0, -(int)sp->ring.scale_bits);
    if (c->mode == FP_DP_CENTRAL)
        noise = c->noise_multiplier * c->clip;
    else if (sp)
        noise = d->sigma * sqrt((double)ninc);
    else
        noise = d->sigma * sqrt(wsq);
    d->z_eff = noise / sens;
    rc = fp_dp_accountant_step(d->acc, d->q, d->z_eff, 1);
    if (!rc)
        rc = fp_dp_epsilon(&d->round_eps, d->q, d->z_eff, 1, c->delta);
    /* Saved before the round's checkpoint: a crash in between counts the
     * round twice, never zero times. */
    if (!rc)
        rc = fp_dp_accountant_save(d->acc, d->path);
    if (!rc)
        d->done = 1;
    return rc;
}

void dp_srv_report(const fp_fed_server *s, fp_fed_round_report *rep, int ok)
{
    const dp_srv *d = s->dp;
    if (!d)
        return;
    rep->dp_on = 1;
    rep->dp_delta = s->cfg.dp.delta;
    rep->dp_q = d->q;
    rep->dp_z = ok && d->done ? d->z_eff : 0;
    rep->dp_round_epsilon = ok && d->done ? d->round_eps : 0;
    double e = 0;
    if (fp_dp_accountant_epsilon(d->acc, &e, NULL) == 0)
        rep->dp_epsilon = e;
}
