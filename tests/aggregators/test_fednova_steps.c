/* FedNova sees the local steps each client actually took. Four stand-in
 * clients over loopback CURVE (fed_fixture.h) are assigned 4 local steps,
 * but three have a smaller per-round budget ("max_steps" 1, 2, 3: a slower
 * device stops early); the trainer reports what it took (fp_fed_trainer
 * .last_steps), the UPDATE meta carries it, and the server's fednova
 * normalises by it. Asserted against the direct computation of FedNova's
 * formula from the stand-in's update rule with those step counts, plain and
 * secure (SecAgg+), and FedAvg likewise; the two results must differ by what
 * the formula says (and they would be equal if the server saw the assigned
 * steps). Also: a trainer that reports more steps than assigned is refused by its
 * client (it sends no update; no round completes); the stand-in's "max_steps" is range-checked. */
#include "../federation/fed_fixture.h"

#define N 4
#define DIM 257
#define STEPS 4
#define LR 0.3f

static const int budget[N] = {1, 2, 3, 0}; /* 0: no cap (takes STEPS) */

static int taken(int i)
{
    return budget[i] > 0 && budget[i] < STEPS ? budget[i] : STEPS;
}

/* One round of agg (plain or secure): the server's global. */
static float *run(const char *agg, int secure)
{
    fx f;
    char tag[64];
    snprintf(tag, sizeof tag, "nova-steps-%s-%d", agg, secure);
    fx_init(&f, tag, N, DIM, 0.5f);
    for (int i = 0; i < N; i++)
        f.c[i].data.max_steps = budget[i];
    snprintf(f.sc.aggregator, sizeof f.sc.aggregator, "%s", agg);
    f.sc.rounds = 1;
    f.sc.steps = STEPS;
    f.sc.lr = LR;
    f.sc.secagg = secure;
    f.sc.quorum = N;
    f.sc.clip = 1.0f;
    CHECK_OK(fx_run(&f));
    CHECKF(f.completed == 1, "%s secure %d: %u rounds", agg, secure, f.completed);
    float *g = f.global;
    f.global = NULL;
    fx_free(&f);
    return g;
}

/* The direct computation: every client's update with the steps it took from
 * the zero global, then fedavg (sample weights) or fednova's
 * tau_eff * sum_k p_k u_k / tau_k. */
static void expected(float *avg, float *nova, int nova_with_assigned)
{
    fx f;
    fx_init(&f, "nova-steps-direct", N, DIM, 0.5f);
    float *g0 = calloc(DIM, sizeof(float)), *u = malloc(sizeof(float) * DIM * N);
    double W = 0, teff = 0;
    for (int i = 0; i < N; i++) {
        fp_standin_update(u + (size_t)i * DIM, g0, f.c[i].data.target, DIM, taken(i), LR, 0, f.c[i].data.seed, 0);
        W += (double)f.c[i].data.samples;
    }
    for (int i = 0; i < N; i++)
        teff += (double)f.c[i].data.samples / W * (nova_with_assigned ? STEPS : taken(i));
    for (size_t d = 0; d < DIM; d++) {
        double sa = 0, sn = 0;
        for (int i = 0; i < N; i++) {
            double p = (double)f.c[i].data.samples / W, x = u[(size_t)i * DIM + d];
            sa += p * x;
            sn += p * x / (nova_with_assigned ? STEPS : taken(i));
        }
        avg[d] = (float)sa;
        nova[d] = (float)(teff * sn);
    }
    free(g0);
    free(u);
    fx_free(&f);
}

/* A trainer that claims a step count outside 1..assigned. */
typedef struct liar {
    fp_fed_trainer inner;
    int claim;
} liar;

static int liar_train(void *ctx, float *update, uint64_t *samples, float *loss, const float *global, size_t dim,
                      const fp_fed_task *task)
{
    liar *l = ctx;
    return l->inner.train(l->inner.ctx, update, samples, loss, global, dim, task);
}

static int liar_steps(void *ctx)
{
    return ((liar *)ctx)->claim;
}

/* A lying trainer in a real federation: its client's round fails by name and
 * the server, missing its quorum, completes no round. */
static void test_liar_network(void)
{
    fx f;
    fx_init(&f, "nova-steps-liar-net", 2, 16, 0.5f);
    snprintf(f.sc.aggregator, sizeof f.sc.aggregator, "fednova");
    f.sc.rounds = 1;
    f.sc.steps = STEPS;
    f.sc.quorum = 2;
    f.sc.stage_timeout_ms = 1500;
    fx_write_allowlist(&f);
    fp_fed_server *s = NULL;
    CHECK_OK(fp_fed_server_create(&s, &f.sc, &f.sid, 0));
    if (!s)
        return;
    char ep[256];
    fp_fed_server_endpoint(s, ep, sizeof ep);
    liar l[2];
    for (int i = 0; i < 2; i++) {
        fx_client *c = &f.c[i];
        CHECK_OK(fp_standin_trainer(&c->tr, &c->data));
        l[i] = (liar){c->tr, i == 1 ? STEPS + 1 : STEPS};
        c->cfg.trainer = (fp_fed_trainer){&l[i], liar_train, NULL, liar_steps};
        c->cfg.stop = &f.stop;
        c->cfg.give_up_ms = 5000;
        snprintf(c->cfg.endpoint, sizeof c->cfg.endpoint, "%s", ep);
        pthread_create(&c->th, NULL, fx_client_main, c);
    }
    f.server_rc = fp_fed_server_run(s);
    f.stop = 1;
    for (int i = 0; i < 2; i++) {
        pthread_join(f.c[i].th, NULL);
        f.c[i].tr.destroy(f.c[i].tr.ctx);
    }
    uint32_t done = 0;
    float g[16];
    fp_fed_server_global(s, g, 16, &done);
    CHECKF(done == 0, "a round completed with a client reporting %d of %d steps", STEPS + 1, STEPS);
    CHECKF(f.c[1].res.rounds == 0, "the lying client took part in %u rounds", f.c[1].res.rounds);
    fp_fed_server_destroy(s);
    fx_free(&f);
}

static void test_parse(void)
{
    fp_standin_data d;
    const char *ok = "{\"samples\": 5, \"target\": [1, 2], \"max_steps\": 3}";
    CHECK_OK(fp_standin_data_parse(&d, ok, strlen(ok), "t"));
    CHECK(d.max_steps == 3);
    fp_standin_data_free(&d);
    const char *neg = "{\"samples\": 5, \"target\": [1, 2], \"max_steps\": -1}";
    CHECK_ERR(fp_standin_data_parse(&d, neg, strlen(neg), "t"), FP_EFORMAT);
    const char *big = "{\"samples\": 5, \"target\": [1, 2], \"max_steps\": 2000000}";
    CHECK_ERR(fp_standin_data_parse(&d, big, strlen(big), "t"), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "max_steps") != NULL);
}

int main(void)
{
    test_parse();
    test_liar_network();

    float *want_avg = malloc(DIM * sizeof(float)), *want_nova = malloc(DIM * sizeof(float)),
          *nova_assigned = malloc(DIM * sizeof(float)), *avg2 = malloc(DIM * sizeof(float));
    expected(want_avg, want_nova, 0);
    expected(avg2, nova_assigned, 1);
    /* the premise: with the assigned steps fednova would be fedavg; with the taken ones it is not */
    double same = fx_maxdiff(nova_assigned, want_avg, DIM), apart = fx_maxdiff(want_nova, want_avg, DIM);
    CHECKF(same < 1e-6 && apart > 0.02, "direct: nova(assigned) - avg %g, nova(taken) - avg %g", same, apart);
    for (int sec = 0; sec < 2; sec++) {
        float *ga = run("fedavg", sec), *gn = run("fednova", sec);
        /* plain: float sums of doubles; secure: ring quantisation (scale bits 20 by default) per client */
        double tol = sec ? 1e-4 : 1e-6;
        double ea = fx_maxdiff(ga, want_avg, DIM), en = fx_maxdiff(gn, want_nova, DIM),
               d = fx_maxdiff(ga, gn, DIM);
        printf("%s: fedavg vs direct %.3g, fednova vs direct %.3g, fednova - fedavg max %.4f (direct %.4f)\n",
               sec ? "secure" : "plain", ea, en, d, apart);
        CHECKF(ea < tol, "%s fedavg vs its direct computation: %g", sec ? "secure" : "plain", ea);
        CHECKF(en < tol, "%s fednova vs its direct computation with the steps taken: %g", sec ? "secure" : "plain",
               en);
        CHECKF(fabs(d - apart) < 2 * tol, "%s: fednova - fedavg %g, formula %g", sec ? "secure" : "plain", d, apart);
        free(ga);
        free(gn);
    }
    free(want_avg);
    free(want_nova);
    free(nova_assigned);
    free(avg2);
    return fp_test_report("test_fednova_steps");
}
