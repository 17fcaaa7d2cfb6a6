/* The aggregator registry: names -> tables (bases and the dare+/cluster:
 * composites), the dispatchers that pick the context or legacy form, the
 * configuration check, and plain-mode screening of updates. */
#include <stdio.h>
#include <string.h>

#include "agg_internal.h"
#include "agg_parallel.h"

const fp_agg_opts fp_agg_opts_defaults = {
    .ties_keep = 0.2f,
    .ties_lambda = 1.0f,
    .dare_p = 0.5f,
    .trim_frac = 0.1f,
    .reject_k = 0.0f,
    .clip_norm = 0.0f,
    .clusters = 0,
    .cluster_threshold = 0.5f,
};

void fp_agg_opts_default(fp_agg_opts *o) { *o = fp_agg_opts_defaults; }

/* dare+<base>: secure exactly when the base is (the drop is client-side). */
#define DARE(nm, b, sec, sums)                                                                                 \
    {.name = nm,                                                                                               \
     .secure_ok = sec,                                                                                         \
     .secure_sums = sums,                                                                                      \
     .secure_len_x = agg_dare_secure_len,                                                                      \
     .client_vector_x = agg_dare_client,                                                                       \
     .finish_secure_x = agg_dare_finish,                                                                       \
     .aggregate_plain_x = agg_dare_plain,                                                                      \
     .base = b}
static const fp_aggregator dare_aggs[] = {
    DARE("dare+fedavg", &fp_agg_fedavg_def, 1, 1),   DARE("dare+fednova", &fp_agg_fednova_def, 1, 1),
    DARE("dare+hetlora", &fp_agg_hetlora_def, 1, 1), DARE("dare+ties", &fp_agg_ties_def, 1, 2),
};

/* cluster:<base>: needs the individual updates, so plain only. */
#define CLUSTER(nm, b) {.name = nm, .aggregate_plain_x = agg_cluster_plain, .base = b}
static const fp_aggregator cluster_aggs[] = {
    CLUSTER("cluster:fedavg", &fp_agg_fedavg_def),       CLUSTER("cluster:fednova", &fp_agg_fednova_def),
    CLUSTER("cluster:ties", &fp_agg_ties_def),           CLUSTER("cluster:dare+fedavg", &dare_aggs[0]),
    CLUSTER("cluster:dare+ties", &dare_aggs[3]),         CLUSTER("cluster:median", &fp_agg_median_def),
    CLUSTER("cluster:hetlora", &fp_agg_hetlora_def),
};

static const fp_aggregator *const bases[] = {
    &fp_agg_fedavg_def, &fp_agg_fednova_def, &fp_agg_hetlora_def, &fp_agg_flexlora_def, &fp_agg_ties_def,
    &fp_agg_median_def, &fp_agg_trimmed_def, &fp_agg_normclip_def,
};

int fp_aggregator_find(const fp_aggregator **out, const char *name)
{
    *out = NULL;
    for (size_t i = 0; name && i < sizeof bases / sizeof bases[0]; i++)
        if (!strcmp(bases[i]->name, name)) {
            *out = bases[i];
            return 0;
        }
    for (size_t i = 0; name && i < sizeof dare_aggs / sizeof dare_aggs[0]; i++)
        if (!strcmp(dare_aggs[i].name, name)) {
            *out = &dare_aggs[i];
            return 0;
        }
    for (size_t i = 0; name && i < sizeof cluster_aggs / sizeof cluster_aggs[0]; i++)
        if (!strcmp(cluster_aggs[i].name, name)) {
            *out = &cluster_aggs[i];
            return 0;
        }
    return fp_seterr(FP_ENOTFOUND,
                     "unknown aggregator '%s' (known: fedavg, fednova, hetlora, flexlora, ties, median, "
                     "trimmed-mean, normclip, dare+{fedavg,fednova,hetlora,ties}, "
                     "cluster:{fedavg,fednova,ties,hetlora,median,dare+fedavg,dare+ties})",
                     name ? name : "(null)");
}

size_t fp_agg_secure_len(const fp_aggregator *a, const fp_agg_ctx *c, unsigned pass)
{
    if (!a->secure_ok || pass >= a->secure_sums)
        return 0;
    if (a->secure_len_x)
        return a->secure_len_x(a, c, pass);
    return a->secure_len ? a->secure_len(pass, c->dim) : 0;
}

int fp_agg_client_vector(const fp_aggregator *a, float *out, const fp_agg_ctx *c, unsigned pass,
                         const float *update, const fp_agg_client *me, const float *const *prev)
{
    if (!a->secure_ok || pass >= a->secure_sums)
        return fp_seterr(FP_EINVAL, "%s: no secure pass %u", a->name, pass);
    if (a->client_vector_x)
        return a->client_vector_x(a, out, c, pass, update, me, prev);
    return a->client_vector(out, pass, update, c->dim, me->weight, c->clip, prev);
}

int fp_agg_finish_secure(const fp_aggregator *a, float *delta, const fp_agg_ctx *c, const float *const *sums)
{
    if (!a->secure_ok)
        return fp_seterr(FP_EUNSUPPORTED, "%s does not compose with secure aggregation", a->name);
    if (a->finish_secure_x)
        return a->finish_secure_x(a, delta, c, sums);
    return a->finish_secure(delta, c->dim, sums, c->clip);
}

int fp_agg_broadcast(const fp_aggregator *a, float *out, const fp_agg_ctx *c, unsigned pass,
                     const float *const *sums)
{
    if (!a->secure_ok || pass < 1 || pass >= a->secure_sums || !sums || !sums[pass - 1])
        return fp_seterr(FP_EINVAL, "%s: nothing to broadcast before secure pass %u", a->name, pass);
    if (a->broadcast_x)
        return a->broadcast_x(a, out, c, pass, sums);
    if (a->base)
        return fp_agg_broadcast(a->base, out, c, pass, sums);
    memcpy(out, sums[pass - 1], c->dim * sizeof *out);
    return 0;
}

int fp_agg_aggregate_plain(const fp_aggregator *a, float *delta, const fp_agg_ctx *c,
                           const float *const *updates, const fp_agg_client *cl, size_t K)
{
    if (K == 0)
        return fp_seterr(FP_EABORT, "%s: no updates to aggregate", a->name);
    if (a->aggregate_plain_x)
        return a->aggregate_plain_x(a, delta, c, updates, cl, K);
    double *w = malloc(K * sizeof *w);
    if (!w)
        return fp_seterr(FP_ENOMEM, "%s: out of memory", a->name);
    for (size_t k = 0; k < K; k++)
        w[k] = cl[k].weight;
    int rc = a->aggregate_plain(delta, updates, w, K, c->dim);
    free(w);
    return rc;
}

static int needs_layout(const fp_aggregator *a)
{
    for (; a; a = a->base)
        if (a->needs_layout)
            return 1;
    return 0;
}

int fp_agg_check(const fp_aggregator *a, const fp_agg_ctx *c, int secure)
{
    const fp_agg_opts *o = agg_opts(c);
    if (secure && !a->secure_ok)
        return fp_seterr(FP_EUNSUPPORTED, "aggregator %s does not compose with secure aggregation", a->name);
    if (needs_layout(a) && !c->layout)
        return fp_seterr(FP_EUNSUPPORTED,
                         "aggregator %s needs the LoRA layout of the vector (server.json \"lora\"); this "
                         "federation's vector has none",
                         a->name);
    if (c->layout && c->layout->dim != c->dim)
        return fp_seterr(FP_ESHAPE, "aggregator %s: LoRA layout has %zu elements, the vector %zu", a->name,
                         c->layout->dim, c->dim);
    if (!(o->ties_keep > 0 && o->ties_keep <= 1) || !(o->ties_lambda > 0 && isfinite(o->ties_lambda)) ||
        !(o->dare_p >= 0 && o->dare_p < 1) || !(o->trim_frac >= 0 && o->trim_frac < 0.5f) ||
        !(o->reject_k >= 0 && isfinite(o->reject_k)) || !(o->clip_norm >= 0 && isfinite(o->clip_norm)) ||
        !(o->cluster_threshold >= -1 && o->cluster_threshold <= 1))
        return fp_seterr(FP_EINVAL,
                         "aggregator options out of range: ties_keep %g (0,1], ties_lambda %g > 0, dare_p %g "
                         "[0,1), trim_frac %g [0,0.5), reject_k %g >= 0, clip_norm %g >= 0, "
                         "cluster_threshold %g [-1,1]",
                         o->ties_keep, o->ties_lambda, o->dare_p, o->trim_frac, o->reject_k, o->clip_norm,
                         o->cluster_threshold);
    if (secure && a == &fp_agg_flexlora_def && c->layout &&
        agg_flex_products(c->layout) > (size_t)64 * c->dim)
        return fp_seterr(FP_EUNSUPPORTED,
                         "flexlora under secure aggregation sums every module's full product B*A: %zu floats "
                         "per client, %.0fx the adapter (limit 64x); use hetlora, or flexlora without secagg",
                         agg_flex_products(c->layout), (double)agg_flex_products(c->layout) / (double)c->dim);
    if (secure && !(c->clip > 0 && isfinite(c->clip)))
        return fp_seterr(FP_EINVAL, "aggregator %s: secure clip %g must be positive", a->name, c->clip);
    return 0;
}

float fp_agg_reject_k(const fp_aggregator *a, const fp_agg_opts *o)
{
    if (!o)
        o = &fp_agg_opts_defaults;
    if (o->reject_k > 0)
        return o->reject_k;
    for (; a; a = a->base)
        if (a == &fp_agg_normclip_def)
            return 10.0f;
    return 0.0f;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void refuse(char *refused, size_t cap, const fp_agg_client *k, const char *why)
{
    fp_warn("aggregate: update of client %s (id %u) refused: %s", k->name ? k->name : "?", k->id, why);
    if (!refused || !cap)
        return;
    size_t n = strlen(refused);
    if (n + 4 < cap)
        snprintf(refused + n, cap - n, "%s%s: %s", n ? ";" : "", k->name ? k->name : "?", why);
}

/* Each update's first non-finite element (dim: none) and L2 norm, on
 * worker threads over clients (one client's sum is one thread's, in element
 * order: the same bits whatever the count). */
typedef struct screen_job {
    const float *const *x;
    const size_t *lens;
    size_t dim;
    double *norm;
    size_t *first_bad;
} screen_job;

static int screen_rows(void *arg, unsigned t, size_t k0, size_t k1)
{
    (void)t;
    screen_job *j = arg;
    for (size_t k = k0; k < k1; k++) {
        j->first_bad[k] = j->dim;
        j->norm[k] = 0;
        if (j->lens && j->lens[k] != j->dim)
            continue; /* refused for its shape; its row may be shorter */
        double s = 0;
        for (size_t i = 0; i < j->dim; i++) {
            float v = j->x[k][i];
            if (!isfinite(v)) {
                j->first_bad[k] = i;
                break;
            }
            s += (double)v * v;
        }
        j->norm[k] = sqrt(s);
    }
    return 0;
}

int fp_agg_screen(uint8_t *keep, size_t *n_kept, char *refused, size_t refused_cap, const fp_agg_ctx *c,
                  const float *const *x, const size_t *lens, const fp_agg_client *cl, size_t K, float reject_k)
{
    if (!keep || !n_kept || !c || (K && (!x || !cl)))
        return fp_seterr(FP_EINVAL, "aggregate screen: NULL argument");
    double *norm = malloc((K + 1) * sizeof *norm), *sorted = malloc((K + 1) * sizeof *sorted);
    if (!norm || !sorted) {
        free(norm);
        free(sorted);
        return fp_seterr(FP_ENOMEM, "aggregate screen: out of memory");
    }
    size_t nf = 0, *first_bad = malloc((K + 1) * sizeof *first_bad);
    if (!first_bad) {
        free(norm);
        free(sorted);
        return fp_seterr(FP_ENOMEM, "aggregate screen: out of memory");
    }
    screen_job sj = {x, lens, c->dim, norm, first_bad};
    agg_parallel(agg_threads(K * c->dim, K), K, screen_rows, &sj); /* cannot fail */
    char why[160];
    for (size_t k = 0; k < K; k++) {
        keep[k] = 0;
        if (lens && lens[k] != c->dim) {
            snprintf(why, sizeof why, "wrong shape: %zu elements, expected %zu", lens[k], c->dim);
            refuse(refused, refused_cap, &cl[k], why);
            continue;
        }
        size_t bad = first_bad[k];
        if (bad < c->dim) {
            snprintf(why, sizeof why, "non-finite value (%s) at element %zu", isnan(x[k][bad]) ? "NaN" : "Inf",
                     bad);
            refuse(refused, refused_cap, &cl[k], why);
            continue;
        }
        keep[k] = 1;
        sorted[nf++] = norm[k];
    }
    if (reject_k > 0 && nf > 0) {
        qsort(sorted, nf, sizeof *sorted, cmp_double);
        double med = nf % 2 ? sorted[nf / 2] : 0.5 * (sorted[nf / 2 - 1] + sorted[nf / 2]);
        for (size_t k = 0; k < K; k++)
            if (keep[k] && norm[k] > reject_k * med) {
                snprintf(why, sizeof why, "norm %.4g above %g x the cohort's median norm %.4g", norm[k],
                         (double)reject_k, med);
                refuse(refused, refused_cap, &cl[k], why);
                keep[k] = 0;
            }
    }
    size_t n = 0;
    for (size_t k = 0; k < K; k++)
        n += keep[k];
    *n_kept = n;
    free(norm);
    free(sorted);
    free(first_bad);
    return 0;
}

int agg_total_weight(double *W, const fp_agg_client *cl, size_t K, const char *who)
{
    double s = 0;
    for (size_t k = 0; k < K; k++) {
        if (!(cl[k].weight > 0) || !isfinite(cl[k].weight))
            return fp_seterr(FP_EINVAL, "%s: client %s has weight %g", who, cl[k].name ? cl[k].name : "?",
                             cl[k].weight);
        s += cl[k].weight;
    }
    if (!(s > 0))
        return fp_seterr(FP_EABORT, "%s: no updates to aggregate", who);
    *W = s;
    return 0;
}

int agg_rank_index(uint16_t **ridx, const fp_agg_ctx *c)
{
    const fp_lora_vec_layout *l = c->layout;
    *ridx = NULL;
    if (!l || l->dim != c->dim)
        return fp_seterr(FP_EINVAL, "aggregate: no LoRA layout of %zu elements", c->dim);
    if (l->lc.rank < 1 || l->lc.rank > 65535)
        return fp_seterr(FP_EINVAL, "aggregate: LoRA rank %d out of range", l->lc.rank);
    uint16_t *r = malloc(c->dim * sizeof *r + 1);
    if (!r)
        return fp_seterr(FP_ENOMEM, "aggregate: out of memory for %zu rank indices", c->dim);
    size_t R = (size_t)l->lc.rank, covered = 0;
    for (size_t s = 0; s < l->n; s++) {
        const fp_lora_slot *sl = &l->slots[s];
        if (sl->a_off + R * (size_t)sl->in > c->dim || sl->b_off + (size_t)sl->out * R > c->dim) {
            free(r);
            return fp_seterr(FP_EFORMAT, "aggregate: LoRA slot %zu lies outside the vector", s);
        }
        for (size_t j = 0; j < R; j++)
            for (int64_t i = 0; i < sl->in; i++)
                r[sl->a_off + j * (size_t)sl->in + (size_t)i] = (uint16_t)j;
        for (int64_t o = 0; o < sl->out; o++)
            for (size_t j = 0; j < R; j++)
                r[sl->b_off + (size_t)o * R + j] = (uint16_t)j;
        covered += R * (size_t)(sl->in + sl->out);
    }
    if (covered != c->dim) {
        free(r);
        return fp_seterr(FP_EFORMAT, "aggregate: LoRA slots cover %zu of %zu elements", covered, c->dim);
    }
    *ridx = r;
    return 0;
}
