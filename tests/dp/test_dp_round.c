/* Federated rounds with differential privacy on, over loopback sockets: the
 * stand-in trainer's target equals the global vector (all zeros), so every
 * update is zero and the new global vector is the noise alone. Its
 * per-coordinate variance must match what the mechanism promises, (zC)^2 on
 * the weighted sum, i.e. (zC / sum_k w_k)^2 on the average, in plain and
 * secure mode, distributed and central; and the epsilon the server reports
 * must equal an independent composition of the rounds it ran. A client with
 * its own noise floor (dp_min_noise) trains only under distributed DP whose
 * share for it is at least that, and otherwise refuses without training. */
#include "fed_fixture.h"
#include "fedproxy/dp.h"

typedef struct rep_log {
    int n;
    fp_fed_round_report last;
    char json[4096];
} rep_log;

static void on_report(void *ctx, const fp_fed_round_report *r)
{
    rep_log *l = ctx;
    l->n++;
    l->last = *r;
    char *s = NULL;
    if (fp_fed_round_report_json(&s, r) == 0) {
        snprintf(l->json, sizeof l->json, "%s", s);
        free(s);
    }
}

/* fx_run with a report callback (and resume). */
static int run_logged(fx *f, rep_log *log, int resume)
{
    fx_hooks h = {.resume = resume, .report = on_report, .report_ctx = log};
    return fx_run_with(f, &h);
}

static void run_case(const char *tag, int secure, fp_dp_mode mode, int equal, uint32_t rounds)
{
    const int n = 5;
    const size_t dim = 20000;
    const double z = 1.3, C = 0.5;
    fx f;
    fx_init(&f, tag, n, dim, 0.0f); /* targets zero = the initial global: no signal */
    f.sc.rounds = rounds;
    f.sc.secagg = secure;
    f.sc.quorum = (uint32_t)n;
    f.sc.stage_timeout_ms = 5000;
    f.sc.dp.mode = mode;
    f.sc.dp.clip = C;
    f.sc.dp.noise_multiplier = z;
    f.sc.dp.delta = 1e-5;
    double maxs = 0, wsum = 0;
    for (int i = 0; i < n; i++) {
        if (equal)
            f.c[i].cfg.samples = f.c[i].data.samples = 100;
        if ((double)f.c[i].cfg.samples > maxs)
            maxs = (double)f.c[i].cfg.samples;
    }
    for (int i = 0; i < n; i++)
        wsum += (double)f.c[i].cfg.samples / maxs;
    rep_log log;
    memset(&log, 0, sizeof log);
    CHECK_OK(run_logged(&f, &log, 0));
    CHECK(f.completed == rounds);
    /* Each round adds independent N(0, (zC / sum w)^2) per coordinate. */
    double expect = rounds * (z * C / wsum) * (z * C / wsum), m = 0, v = 0;
    for (size_t i = 0; i < dim; i++)
        m += f.global[i];
    m /= (double)dim;
    for (size_t i = 0; i < dim; i++)
        v += (f.global[i] - m) * (f.global[i] - m);
    v /= (double)(dim - 1);
    /* sample variance: relative standard error sqrt(2/dim) = 1%; 6 of them */
    CHECKF(fabs(v / expect - 1) < 6 * sqrt(2.0 / (double)dim), "%s: variance %.6g, expected %.6g (ratio %.4f)", tag,
           v, expect, v / expect);
    CHECKF(fabs(m) < 6 * sqrt(expect / (double)dim), "%s: mean %.3g", tag, m);
    /* The report: epsilon of `rounds` rounds at q = 1 with the achieved z. */
    CHECK(log.last.dp_on && log.last.dp_delta == 1e-5 && log.last.dp_q == 1.0);
    double zr = log.last.dp_z;
    /* secure: the stochastic-rounding allowance lowers z a little */
    CHECKF(secure ? (zr < z && zr > 0.99 * z) : fabs(zr - z) < 1e-9 * z, "%s: achieved z %.6g", tag, zr);
    double e = 0, e1 = 0;
    CHECK_OK(fp_dp_epsilon(&e, 1.0, zr, rounds, 1e-5));
    CHECK_OK(fp_dp_epsilon(&e1, 1.0, zr, 1, 1e-5));
    CHECKF(fabs(log.last.dp_epsilon - e) < 1e-9 * e, "%s: reported epsilon %.6g, composed %.6g", tag,
           log.last.dp_epsilon, e);
    CHECK(fabs(log.last.dp_round_epsilon - e1) < 1e-9 * e1);
    CHECK(strstr(log.json, "\"dp\":{") != NULL && strstr(log.json, "\"epsilon\":") != NULL);
    /* The accountant's state file says the same. */
    fp_dp_accountant *a = NULL;
    char path[FP_FED_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/dp_accountant.json", f.sc.state_dir);
    CHECK_OK(fp_dp_accountant_create(&a, 1e-5));
    CHECK_OK(fp_dp_accountant_load(a, path));
    double ea = 0;
    CHECK_OK(fp_dp_accountant_epsilon(a, &ea, NULL));
    CHECKF(ea == log.last.dp_epsilon && fp_dp_accountant_steps(a) == rounds, "%s: state file epsilon %.17g steps %llu, reported %.17g", tag, ea, (unsigned long long)fp_dp_accountant_steps(a), log.last.dp_epsilon);
    fp_dp_accountant_destroy(a);
    printf("%s: variance %.6g (expected %.6g), z %.5f, epsilon %.4f after %u rounds\n", tag, v, expect, zr,
           log.last.dp_epsilon, rounds);
    fx_free(&f);
}

/* A resumed server continues the privacy budget instead of starting over. */
static void test_resume(void)
{
    fx f;
    fx_init(&f, "dp_resume", 3, 256, 0.0f);
    f.sc.rounds = 1;
    f.sc.quorum = 3;
    f.sc.dp.mode = FP_DP_DISTRIBUTED;
    f.sc.dp.clip = 1;
    f.sc.dp.noise_multiplier = 2;
    f.sc.dp.delta = 1e-5;
    rep_log log;
    memset(&log, 0, sizeof log);
    CHECK_OK(run_logged(&f, &log, 0));
    double e1 = log.last.dp_epsilon;
    free(f.global);
    f.global = NULL;
    f.stop = 0;
    for (int i = 0; i < f.n; i++)
        f.c[i].done = 0;
    f.sc.rounds = 2;
    memset(&log, 0, sizeof log);
    CHECK_OK(run_logged(&f, &log, 1));
    CHECK(f.completed == 2 && log.n == 1);
    double e2 = 0, e1r = 0;
    CHECK_OK(fp_dp_epsilon(&e2, 1.0, 2.0, 2, 1e-5));
    CHECK_OK(fp_dp_epsilon(&e1r, 1.0, 2.0, 1, 1e-5));
    CHECKF(fabs(e1 - e1r) < 1e-9 * e1r && fabs(log.last.dp_epsilon - e2) < 1e-9 * e2,
           "resume: epsilon %.6g then %.6g, expected %.6g then %.6g", e1, log.last.dp_epsilon, e1r, e2);
    fx_free(&f);
}

static void test_dp_off_is_exact(void)
{
    fx f;
    fx_init(&f, "dp_off", 3, 64, 0.0f);
    f.sc.rounds = 1;
    CHECK_OK(fx_run(&f));
    int zero = 1;
    for (size_t i = 0; i < f.dim; i++)
        zero &= f.global[i] == 0.0f;
    CHECK(zero);
    fx_free(&f);
}

static void test_config(void)
{
    fp_fed_server_config c;
    const char *ok = "{\"dp\": {\"clip\": 1, \"noise_multiplier\": 0.8, \"mode\": \"central\"}}";
    CHECK_OK(fp_fed_server_config_parse(&c, ok, strlen(ok), "."));
    CHECK(c.dp.mode == FP_DP_CENTRAL && c.dp.clip == 1 && c.dp.noise_multiplier == 0.8 && c.dp.delta == 1e-5);
    const char *off = "{}";
    CHECK_OK(fp_fed_server_config_parse(&c, off, strlen(off), "."));
    CHECK(c.dp.mode == FP_DP_OFF);
    const char *robust = "{\"aggregator\": \"median\", \"dp\": {\"clip\": 1, \"noise_multiplier\": 1}}";
    CHECK_ERR(fp_fed_server_config_parse(&c, robust, strlen(robust), "."), FP_EFORMAT);
    const char *bad = "{\"dp\": {\"clip\": -1, \"noise_multiplier\": 1}}";
    CHECK_ERR(fp_fed_server_config_parse(&c, bad, strlen(bad), "."), FP_EFORMAT);
}

/* Counts a client's local training calls (the refusing client must make none). */
typedef struct counted {
    fp_fed_trainer inner;
    int calls;
} counted;

static int counted_train(void *ctx, float *update, uint64_t *samples, float *loss, const float *global, size_t dim,
                         const fp_fed_task *task)
{
    counted *k = ctx;
    k->calls++;
    return k->inner.train(k->inner.ctx, update, samples, loss, global, dim, task);
}

static int counted_last_steps(void *ctx)
{
    counted *k = ctx;
    return k->inner.last_steps ? k->inner.last_steps(k->inner.ctx) : 0;
}

static void wrap_count(void *ctx, int i, fx_client *c)
{
    counted *k = &((counted *)ctx)[i];
    k->inner = c->cfg.trainer;
    k->calls = 0;
    c->cfg.trainer.ctx = k;
    c->cfg.trainer.train = counted_train;
    c->cfg.trainer.last_steps = counted_last_steps;
    c->cfg.trainer.destroy = NULL; /* the fixture destroys the inner one */
}

/* Five equal clients, z 1.3 at clip 0.5: each client's share is sigma = zC / sqrt(5), noise
 * multiplier 1.3 / sqrt(5) = 0.5814 on its own. Client 0 has floor `floor0`; want: a part of
 * its refusal message ("" = it must train). The other four train; the round completes. */
static void floor_case(const char *tag, fp_dp_mode mode, double floor0, const char *want)
{
    const int n = 5;
    fx f;
    fx_init(&f, tag, n, 1000, 0.5f);
    f.sc.rounds = 1;
    f.sc.quorum = (uint32_t)n - 1;
    f.sc.stage_timeout_ms = 1500;
    if (mode != FP_DP_OFF) {
        f.sc.dp.mode = mode;
        f.sc.dp.clip = 0.5;
        f.sc.dp.noise_multiplier = 1.3;
        f.sc.dp.delta = 1e-5;
    }
    for (int i = 0; i < n; i++)
        f.c[i].cfg.samples = f.c[i].data.samples = 100;
    f.c[0].cfg.dp_min_noise = floor0;
    counted k[5];
    fx_hooks h = {.wrap = wrap_count, .wrap_ctx = k};
    CHECK_OK(fx_run_with(&f, &h));
    CHECKF(f.completed == 1, "%s: %u rounds completed", tag, f.completed);
    if (want[0]) {
        CHECKF(f.c[0].rc == FP_EPOLICY && k[0].calls == 0, "%s: client 0 rc %d after %d trainings (%s)", tag,
               f.c[0].rc, k[0].calls, f.c[0].err);
        CHECKF(strstr(f.c[0].err, want) != NULL, "%s: message '%s' lacks '%s'", tag, f.c[0].err, want);
    } else {
        CHECKF(f.c[0].rc == 0 && k[0].calls == 1, "%s: client 0 rc %d after %d trainings (%s)", tag, f.c[0].rc,
               k[0].calls, f.c[0].err);
    }
    for (int i = 1; i < n; i++)
        CHECKF(f.c[i].rc == 0 && k[i].calls == 1, "%s: client %d rc %d after %d trainings", tag, i, f.c[i].rc,
               k[i].calls);
    printf("%s: client 0 (floor %g): %s\n", tag, floor0, want[0] ? f.c[0].err : "trained");
    fx_free(&f);
}

int main(void)
{
    test_config();
    test_dp_off_is_exact();
    test_resume();
    run_case("dp_plain_distributed", 0, FP_DP_DISTRIBUTED, 1, 1);
    run_case("dp_plain_distributed_weighted", 0, FP_DP_DISTRIBUTED, 0, 2);
    run_case("dp_plain_central", 0, FP_DP_CENTRAL, 1, 1);
    run_case("dp_secure_distributed", 1, FP_DP_DISTRIBUTED, 1, 1);
    run_case("dp_secure_distributed_weighted", 1, FP_DP_DISTRIBUTED, 0, 2);
    run_case("dp_secure_central", 1, FP_DP_CENTRAL, 1, 1);
    floor_case("dp_floor_met", FP_DP_DISTRIBUTED, 0.55, "");
    floor_case("dp_floor_short", FP_DP_DISTRIBUTED, 0.6, "noise multiplier 0.5814, below this client's floor 0.6");
    floor_case("dp_floor_central", FP_DP_CENTRAL, 0.1, "central mode");
    floor_case("dp_floor_no_dp", FP_DP_OFF, 0.1, "without differential privacy");
    return fp_test_report("dp_round");
}
