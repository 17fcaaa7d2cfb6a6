/* Secure vs plain: every aggregator that composes with secure aggregation,
 * run through the real SecAgg+ client and server state machines
 * (fp_secagg_sim_round: key agreement, masking, Shamir shares, unmasking),
 * one SecAgg+ instance per pass, equals its plain form within the
 * quantisation error. The server side only ever holds the pass sums. */
#include <stdio.h>

#include "agg_direct.h"
#include "fedproxy/ring.h"
#include "fedproxy/secagg.h"

#define N 5

static const double SAMPLES[N] = {120, 40, 300, 75, 10};

typedef struct sec_fixture {
    fp_identity id[N];
    fp_secagg_member mem[N];
    fp_agg_client cl[N];
    unsigned scale_bits;
} sec_fixture;

static void sf_init(sec_fixture *f, const int *rank, const int *steps)
{
    static const char *names[N] = {"alice", "bob", "carol", "dave", "erin"};
    memset(f, 0, sizeof *f);
    for (int k = 0; k < N; k++) {
        CHECK_OK(fp_identity_keygen(&f->id[k]));
        f->mem[k].id = 700u + 13u * (uint32_t)k;
        memcpy(f->mem[k].sign_pk, f->id[k].pk, 32);
        f->cl[k].weight = SAMPLES[k];
        f->cl[k].rank = rank ? rank[k] : 0;
        f->cl[k].steps = steps ? steps[k] : 0;
        f->cl[k].id = f->mem[k].id;
        f->cl[k].name = names[k];
    }
}

/* Runs every pass of a through SecAgg+; delta from the pass sums. drop (may
 * be NULL): each client's dropout point in every pass. */
static int run_secure(float *delta, const fp_aggregator *a, const fp_agg_ctx *c, sec_fixture *f, float *const *u,
                      const uint8_t *drop)
{
    double maxs = 0;
    for (int k = 0; k < N; k++)
        maxs = SAMPLES[k] > maxs ? SAMPLES[k] : maxs;
    float *sums[4] = {0}, *bc[4] = {0};
    const float *prev[4] = {0};
    int rc = 0;
    for (unsigned p = 0; p < a->secure_sums && !rc; p++) {
        if (p > 0) { /* what the server reveals to the clients of the earlier sums */
            bc[p - 1] = malloc(c->dim * sizeof **bc);
            rc = fp_agg_broadcast(a, bc[p - 1], c, p, (const float *const *)sums);
            prev[p - 1] = bc[p - 1];
            if (rc)
                break;
        }
        fp_secagg_params sp;
        memset(&sp, 0, sizeof sp);
        sp.session_id[0] = 0x5A;
        sp.round = 40 + p;
        sp.members = f->mem;
        sp.n_clients = N;
        sp.degree = 0;
        sp.threshold = 3;
        for (int i = 0; i < 32; i++)
            sp.graph_seed[i] = (uint8_t)(i * 7 + p);
        sp.vec_len = fp_agg_secure_len(a, c, p);
        sp.ring.clip = c->clip;
        CHECK_OK(fp_ring_max_scale_bits(&sp.ring.scale_bits, c->clip, N));
        if (sp.ring.scale_bits > 24)
            sp.ring.scale_bits = 24;
        f->scale_bits = sp.ring.scale_bits;
        float **in = calloc(N, sizeof *in);
        for (int k = 0; k < N && !rc; k++) {
            fp_agg_client me = f->cl[k];
            me.weight = SAMPLES[k] / maxs;
            in[k] = malloc(sp.vec_len * sizeof **in);
            rc = fp_agg_client_vector(a, in[k], c, p, u[k], &me, prev);
        }
        uint32_t *rsum = malloc(sp.vec_len * sizeof *rsum);
        sums[p] = malloc(sp.vec_len * sizeof **sums);
        fp_secagg_sim_stats st;
        if (!rc)
            rc = fp_secagg_sim_round(rsum, sums[p], &st, &sp, f->id, (const float *const *)in, drop);
        for (int k = 0; k < N; k++)
            free(in[k]);
        free(in);
        free(rsum);
    }
    if (!rc)
        rc = fp_agg_finish_secure(a, delta, c, (const float *const *)sums);
    for (int p = 0; p < 4; p++) {
        free(sums[p]);
        free(bc[p]);
    }
    return rc;
}

static void plain(float *delta, const fp_aggregator *a, const fp_agg_ctx *c, sec_fixture *f, float *const *u)
{
    CHECK_OK(fp_agg_aggregate_plain(a, delta, c, (const float *const *)u, f->cl, N));
}

static void free_ids(sec_fixture *f)
{
    for (int k = 0; k < N; k++)
        fp_identity_wipe(&f->id[k]);
}

static void check_linear(const char *name, fp_lora_vec_layout *l, const int *rank, const int *steps, float lim,
                         float clip)
{
    sec_fixture f;
    sf_init(&f, rank, steps);
    size_t dim = l ? l->dim : 257;
    float **u = ad_rows(N, dim, -lim, lim);
    float *dp = malloc(dim * 4), *ds = malloc(dim * 4);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, name));
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    o.dare_p = 0.3f;
    fp_agg_ctx c = {.dim = dim, .layout = l, .opts = &o, .clip = clip, .max_steps = 8, .seed = 4242};
    CHECK_OK(fp_agg_check(a, &c, 1));
    plain(dp, a, &c, &f, u);
    CHECK_OK(run_secure(ds, a, &c, &f, u, NULL));
    /* each client's entry is off by < 1 ring step; the sum by < N steps, then divided */
    double tol = 4.0 * N * ldexp(1.0, -(int)f.scale_bits) * 20 + 1e-6, err = fp_test_maxerr(ds, dp, dim);
    CHECKF(err < tol, "%s secure vs plain: max err %g (tol %g, scale bits %u)", name, err, tol, f.scale_bits);
    /* and the result is not trivially zero */
    double mx = 0;
    for (size_t i = 0; i < dim; i++)
        mx = fmax(mx, fabs(dp[i]));
    CHECKF(mx > 0.01, "%s: delta is ~0 (%g)", name, mx);
    printf("%-13s secure vs plain: max err %.3g (scale bits %u)\n", name, err, f.scale_bits);
    ad_free_rows(u, N);
    free(dp);
    free(ds);
    free_ids(&f);
}

static void test_ties(const char *name)
{
    sec_fixture f;
    sf_init(&f, NULL, NULL);
    size_t dim = 600;
    float **u = ad_rows(N, dim, -1, 1);
    float *dp = malloc(dim * 4), *ds = malloc(dim * 4);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, name));
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    o.ties_keep = 0.4f;
    o.ties_lambda = 1.2f;
    o.dare_p = 0.25f;
    fp_agg_ctx c = {.dim = dim, .opts = &o, .clip = 2.0f, .seed = 99};
    plain(dp, a, &c, &f, u);
    CHECK_OK(run_secure(ds, a, &c, &f, u, NULL));
    /* the elected sign can differ only where the plain total is within the
     * quantisation error of 0; with these data there is no such coordinate */
    double step = ldexp(1.0, -24), err = fp_test_maxerr(ds, dp, dim);
    CHECKF(err < 4 * N * step * 2, "%s secure vs plain: max err %g", name, err);
    size_t nz = 0;
    for (size_t i = 0; i < dim; i++)
        nz += dp[i] != 0;
    CHECKF(nz > dim / 2, "%s: only %zu nonzero entries", name, nz);
    printf("%-13s secure vs plain (2 secure sums): max err %.3g\n", name, err);
    ad_free_rows(u, N);
    free(dp);
    free(ds);
    free_ids(&f);
}

static void test_flexlora(void)
{
    const int R = 4;
    fp_lora_vec_layout l;
    ad_layout(&l, R);
    int rank[N] = {4, 2, 3, 1, 4};
    sec_fixture f;
    sf_init(&f, rank, NULL);
    size_t dim = l.dim;
    float **u = ad_rows(N, dim, -0.4f, 0.4f);
    float *g = malloc(dim * 4), *dp = malloc(dim * 4), *ds = malloc(dim * 4);
    for (size_t i = 0; i < dim; i++)
        g[i] = fp_test_uniform(-0.4f, 0.4f);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "flexlora"));
    fp_agg_ctx c = {.dim = dim, .layout = &l, .global = g, .clip = 4.0f};
    CHECK_OK(fp_agg_check(a, &c, 1));
    plain(dp, a, &c, &f, u);
    CHECK_OK(run_secure(ds, a, &c, &f, u, NULL));
    /* singular vectors are defined up to sign (and rotation within equal
     * values): compare the products the factors stand for */
    double worst = 0;
    for (size_t s = 0; s < l.n; s++) {
        size_t n = (size_t)(l.slots[s].out * l.slots[s].in);
        double *P = malloc(n * sizeof *P), *S = malloc(n * sizeof *S), e = 0, mx = 0;
        ad_slot_product(P, &l.slots[s], R, g, dp);
        ad_slot_product(S, &l.slots[s], R, g, ds);
        for (size_t i = 0; i < n; i++) {
            e = fmax(e, fabs(P[i] - S[i]));
            mx = fmax(mx, fabs(P[i]));
        }
        CHECKF(e < 1e-4 * (1 + mx), "flexlora slot %zu: secure vs plain product err %g (max %g)", s, e, mx);
        worst = fmax(worst, e);
        free(P);
        free(S);
    }
    printf("flexlora      secure vs plain: max product err %.3g\n", worst);
    ad_free_rows(u, N);
    free(g);
    free(dp);
    free(ds);
    free_ids(&f);
    fp_lora_vec_layout_free(&l);
}

/* A client dropping out before its masked input: the secure result equals
 * the plain one over the survivors (hetlora: coverage counts follow). */
static void test_dropout(void)
{
    fp_lora_vec_layout l;
    ad_layout(&l, 4);
    int rank[N] = {4, 2, 3, 1, 2};
    sec_fixture f;
    sf_init(&f, rank, NULL);
    size_t dim = l.dim;
    float **u = ad_rows(N, dim, -1, 1);
    float *dp = malloc(dim * 4), *ds = malloc(dim * 4);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "hetlora"));
    fp_agg_ctx c = {.dim = dim, .layout = &l, .clip = 1.0f};
    uint8_t drop[N] = {0, 0, FP_SECAGG_DROP_BEFORE_MASKED, 0, 0};
    CHECK_OK(run_secure(ds, a, &c, &f, u, drop));
    /* plain over the four survivors */
    fp_agg_client cl4[N - 1];
    const float *u4[N - 1];
    for (int k = 0, j = 0; k < N; k++)
        if (k != 2) {
            cl4[j] = f.cl[k];
            u4[j++] = u[k];
        }
    CHECK_OK(fp_agg_aggregate_plain(a, dp, &c, u4, cl4, N - 1));
    double err = fp_test_maxerr(ds, dp, dim);
    CHECKF(err < 1e-4, "hetlora with a dropout: secure vs plain over the survivors: %g", err);
    ad_free_rows(u, N);
    free(dp);
    free(ds);
    free_ids(&f);
    fp_lora_vec_layout_free(&l);
}

int main(void)
{
    fp_test_seed(777);
    fp_lora_vec_layout l;
    ad_layout(&l, 4);
    int rank[N] = {4, 1, 3, 2, 2};
    int steps[N] = {1, 4, 2, 8, 3};
    check_linear("fedavg", NULL, NULL, NULL, 1.0f, 1.0f);
    check_linear("fednova", NULL, NULL, steps, 1.0f, 1.0f);
    check_linear("hetlora", &l, rank, NULL, 1.0f, 1.0f);
    check_linear("dare+fedavg", NULL, NULL, NULL, 0.5f, 1.0f);
    check_linear("dare+hetlora", &l, rank, NULL, 0.5f, 1.0f);
    fp_lora_vec_layout_free(&l);
    test_ties("ties");
    test_ties("dare+ties");
    test_flexlora();
    test_dropout();
    return fp_test_report("test_aggregators_secure");
}
