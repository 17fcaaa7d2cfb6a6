/* The server's adaptive optimizers, FedAdam and FedYogi (server.json
 * "server_optimizer", Reddi et al. 2021): the step on a hand-sized vector
 * against values worked out by hand; whole federations, plain and secure, with
 * the server stopped and resumed mid-way, against the recurrence computed here
 * from the clients' known updates; a resume under the other optimizer (state
 * restarts at zero); a version-2 checkpoint still read; every bad key refused
 * with its name. */
#include <sodium.h>

#include "fed/fed_internal.h"
#include "fed_fixture.h"

static int all_in[4][FX_MAX] = {
    {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}};

static int near(double a, double b) { return fabs(a - b) <= 1e-6 * (1 + fabs(b)); }

/* Two steps on 3 coordinates, lr 0.5, b1 0.9, b2 0.99, tau 1e-3, worked by hand:
 * round 1, delta (0.5, -2, 0): m = (0.05, -0.2, 0), v = (0.0025, 0.04, 0) for
 * both; step 0.5 m / (sqrt v + tau) = (0.5*0.05/0.051, -0.5*0.2/0.201, 0).
 * round 2, delta (0.01, 1, 3): m = (0.046, -0.08, 0.3);
 *   adam v = 0.99 v + 0.01 d^2 = (0.002476, 0.0496, 0.09);
 *   yogi v = v - 0.01 d^2 sign(v - d^2) = (0.0025 - 0.000001, 0.04 + 0.01, 0.09)
 *        = (0.002499, 0.05, 0.09)  (coordinate 0: v > d^2, so v shrinks). */
static void test_hand(void)
{
    fp_fed_server_config c;
    fp_fed_server_config_default(&c);
    CHECK(c.server_optimizer == FP_FED_SERVER_SGD && c.server_beta1 == 0.9f && c.server_beta2 == 0.99f &&
          c.server_tau == 1e-3f);
    c.server_lr = 0.5f;
    const float d1[3] = {0.5f, -2.0f, 0.0f}, d2[3] = {0.01f, 1.0f, 3.0f};
    for (int yogi = 0; yogi <= 1; yogi++) {
        c.server_optimizer = yogi ? FP_FED_SERVER_YOGI : FP_FED_SERVER_ADAM;
        float g[3] = {1, 1, 1}, m[3] = {0}, v[3] = {0};
        fed_server_opt_step(&c, g, NULL, m, v, d1, 3);
        double s1[3] = {0.5 * 0.05 / 0.051, -0.5 * 0.2 / 0.201, 0};
        for (int i = 0; i < 3; i++)
            CHECKF(near(g[i], 1 + s1[i]), "%s round 1 [%d]: %.9g, by hand %.9g", yogi ? "yogi" : "adam", i, g[i],
                   1 + s1[i]);
        CHECK(near(m[0], 0.05) && near(m[1], -0.2) && m[2] == 0 && near(v[0], 0.0025) && near(v[1], 0.04) &&
              v[2] == 0);
        fed_server_opt_step(&c, g, NULL, m, v, d2, 3);
        double em[3] = {0.046, -0.08, 0.3};
        double ev[3] = {0.002476, 0.0496, 0.09}, ey[3] = {0.002499, 0.05, 0.09};
        const double *vv = yogi ? ey : ev;
        for (int i = 0; i < 3; i++) {
            double want = 1 + s1[i] + 0.5 * em[i] / (sqrt(vv[i]) + 1e-3);
            CHECKF(near(m[i], em[i]) && near(v[i], vv[i]), "%s round 2 [%d]: m %.9g v %.9g", yogi ? "yogi" : "adam",
                   i, m[i], v[i]);
            CHECKF(fabs(g[i] - want) <= 1e-5, "%s round 2 [%d]: global %.9g, by hand %.9g", yogi ? "yogi" : "adam", i,
                   g[i], want);
        }
    }
    /* sgd keeps FedAvg's step (and FedAvgM's) */
    c.server_optimizer = FP_FED_SERVER_SGD;
    float g[3] = {0}, vel[3] = {0};
    fed_server_opt_step(&c, g, NULL, NULL, NULL, d1, 3);
    CHECK(g[0] == 0.25f && g[1] == -1.0f && g[2] == 0);
    c.server_momentum = 0.5f;
    fed_server_opt_step(&c, g, vel, NULL, NULL, d1, 3);
    fed_server_opt_step(&c, g, vel, NULL, NULL, d1, 3); /* v = d1, then 1.5 d1: g = 0.5 (1 + 1 + 1.5) d1 */
    CHECK(near(g[0], 0.875) && near(g[1], -3.5));
}

/* A federation of 4 clients for `rounds` rounds under `opt` (plain or secure),
 * stopped after `split` rounds and resumed under `opt2` for the rest. */
static void run_split(fx *f, const char *tag, int secure, int opt, int opt2, int split, int rounds)
{
    fx_init(f, tag, 4, 96, 0.4f);
    f->sc.secagg = secure;
    f->sc.server_optimizer = opt;
    f->sc.server_lr = 0.05f;
    f->sc.server_tau = 0.01f; /* a secure round's quantisation error moves the step by at most lr (1-b1)/tau */
    f->sc.lr = 0.5f;
    f->sc.rounds = (uint32_t)split;
    CHECK_OK(fx_run(f));
    CHECK(f->completed == (uint32_t)split);
    free(f->global);
    f->global = NULL;
    f->sc.rounds = (uint32_t)rounds;
    f->sc.server_optimizer = opt2;
    f->stop = 0; /* the first run stopped its client threads; the second starts new ones */
    for (int i = 0; i < f->n; i++)
        f->c[i].done = 0;
    fx_hooks h = {.resume = 1};
    CHECK_OK(fx_run_with(f, &h));
    CHECK(f->completed == (uint32_t)rounds);
}

/* adam / yogi, 4 rounds, stopped after 2 and resumed: the global matches the
 * recurrence with m and v carried across the restart, and not the one where
 * they restart at zero (so the checkpoint must have carried them), nor
 * server_lr SGD. */
static void test_federation(int opt, int secure)
{
    const char *name = opt == FP_FED_SERVER_YOGI ? "yogi" : "adam";
    char tag[64];
    snprintf(tag, sizeof tag, "fed-%s%s", name, secure ? "-sa" : "");
    fx f;
    run_split(&f, tag, secure, opt, opt, 2, 4);
    int ops[4] = {opt, opt, opt, opt};
    float *g = malloc(f.dim * sizeof(float)), *g0 = malloc(f.dim * sizeof(float)),
          *gs = malloc(f.dim * sizeof(float));
    fx_expected_adaptive(g, &f, 4, all_in, 0.5f, 1, 0.05f, ops, 0.9, 0.99, 0.01, -1);
    fx_expected_adaptive(g0, &f, 4, all_in, 0.5f, 1, 0.05f, ops, 0.9, 0.99, 0.01, 2);
    fx_expected_slr(gs, &f, 4, all_in, 0.5f, 1, 0.05f);
    double e = fx_maxdiff(f.global, g, f.dim), e0 = fx_maxdiff(g, g0, f.dim), es = fx_maxdiff(g, gs, f.dim);
    CHECKF(e <= (secure ? 1e-4 : 1e-5), "%s %s, resumed: max |global - recurrence| = %g", name,
           secure ? "secure" : "plain", e);
    CHECKF(e0 > 1e-3, "%s: m and v restarting at zero would change the global (max diff %g)", name, e0);
    CHECKF(es > 1e-2, "%s differs from server SGD (max diff %g)", name, es);
    /* the checkpoint carries the state of the optimizer that wrote it */
    fed_ckpt ck;
    CHECK_OK(fed_ckpt_read(&ck, f.sc.state_dir));
    CHECK(ck.adaptive == opt && ck.m && ck.v && !ck.velocity && ck.completed == 4);
    CHECK(ck.global && memcmp(ck.global, f.global, f.dim * sizeof(float)) == 0);
    fed_ckpt_free(&ck);
    free(g);
    free(g0);
    free(gs);
    fx_free(&f);
}

/* adam for 2 rounds, resumed as yogi: yogi's m and v start at zero (the
 * checkpoint's are adam's), and the global is the two recurrences chained. */
static void test_switch(void)
{
    fx f;
    run_split(&f, "fed-adam-yogi", 0, FP_FED_SERVER_ADAM, FP_FED_SERVER_YOGI, 2, 3);
    int ops[3] = {FP_FED_SERVER_ADAM, FP_FED_SERVER_ADAM, FP_FED_SERVER_YOGI};
    float *g = malloc(f.dim * sizeof(float)), *gc = malloc(f.dim * sizeof(float));
    fx_expected_adaptive(g, &f, 3, all_in, 0.5f, 1, 0.05f, ops, 0.9, 0.99, 0.01, -1);
    fx_expected_adaptive(gc, &f, 3, all_in, 0.5f, 1, 0.05f, ops, 0.9, 0.99, 0.01, -2);
    double e = fx_maxdiff(f.global, g, f.dim), ec = fx_maxdiff(g, gc, f.dim);
    CHECKF(e <= 1e-5, "adam then yogi: max |global - recurrence| = %g", e);
    CHECKF(ec > 1e-3, "yogi continuing adam's m and v would change the global (max diff %g)", ec);
    free(g);
    free(gc);
    fx_free(&f);
}

/* A version-2 checkpoint (FedAvgM's velocity, no m/v) is still read. Made from
 * a version-3 one without optimizer state: the same bytes but the version,
 * rehashed. */
static void test_v2_read(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/state", fp_test_tmpdir("fed-ck-v2"));
    fed_ckpt c;
    memset(&c, 0, sizeof c);
    float gl[5] = {1, 2, 3, 4, 5}, ve[5] = {-1, -2, -3, -4, -5};
    c.dim = 5;
    c.completed = 7;
    c.next_round = 9;
    c.global = gl;
    c.velocity = ve;
    CHECK_OK(fed_ckpt_write(dir, &c));
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
    void *d = NULL;
    size_t n = 0;
    CHECK_OK(fp_read_file(&d, &n, path, 1 << 20));
    uint8_t *b = d;
    CHECK(n > 40 && b[4] == 3);
    b[4] = 2;
    crypto_generichash(b + n - 32, 32, b, n - 32, NULL, 0);
    CHECK_OK(fp_write_file_atomic(path, b, n, 0600));
    fed_ckpt r;
    CHECK_OK(fed_ckpt_read(&r, dir));
    CHECK(r.dim == 5 && r.completed == 7 && r.next_round == 9 && r.velocity && !r.m && !r.v && r.adaptive == 0);
    CHECK(r.global && !memcmp(r.global, gl, sizeof gl) && !memcmp(r.velocity, ve, sizeof ve));
    fed_ckpt_free(&r);
    /* version 2 never had m and v: flag bit 1 in a version-2 file is refused */
    b[84] |= 2;
    crypto_generichash(b + n - 32, 32, b, n - 32, NULL, 0);
    CHECK_OK(fp_write_file_atomic(path, b, n, 0600));
    CHECK_ERR(fed_ckpt_read(&r, dir), FP_EFORMAT);
    free(d);
}

static void bad(const char *json, const char *key)
{
    fp_fed_server_config c;
    int rc = fp_fed_server_config_parse(&c, json, strlen(json), ".");
    CHECKF(rc == FP_EFORMAT, "%s accepted (%d)", json, rc);
    CHECKF(rc && strstr(fp_errmsg(), key) != NULL, "%s: message \"%s\" does not name %s", json, fp_errmsg(), key);
}

static void test_config(void)
{
    fp_fed_server_config c;
    const char *ok = "{\"server_optimizer\": \"yogi\", \"server_beta1\": 0, \"server_beta2\": 0.5, "
                     "\"server_tau\": 1e-6, \"server_momentum\": 0, \"server_lr\": 0.01}";
    CHECK_OK(fp_fed_server_config_parse(&c, ok, strlen(ok), "."));
    CHECK(c.server_optimizer == FP_FED_SERVER_YOGI && c.server_beta1 == 0 && c.server_beta2 == 0.5f &&
          c.server_tau == 1e-6f && c.server_lr == 0.01f);
    const char *dflt = "{\"server_optimizer\": \"adam\"}";
    CHECK_OK(fp_fed_server_config_parse(&c, dflt, strlen(dflt), "."));
    CHECK(c.server_optimizer == FP_FED_SERVER_ADAM && c.server_beta1 == 0.9f && c.server_beta2 == 0.99f &&
          c.server_tau == 1e-3f);
    CHECK_OK(fp_fed_server_config_parse(&c, "{}", 2, "."));
    CHECK(c.server_optimizer == FP_FED_SERVER_SGD);
    const char *sgd = "{\"server_optimizer\": \"sgd\", \"server_momentum\": 0.9}";
    CHECK_OK(fp_fed_server_config_parse(&c, sgd, strlen(sgd), "."));
    CHECK(c.server_optimizer == FP_FED_SERVER_SGD && c.server_momentum == 0.9f);
    bad("{\"server_optimizer\": \"adagrad\"}", "server_optimizer");
    bad("{\"server_optimizer\": \"Adam\"}", "server_optimizer");
    bad("{\"server_optimizer\": 1}", "server_optimizer");
    bad("{\"server_optimizer\": \"adam\", \"server_momentum\": 0.9}", "server_momentum");
    bad("{\"server_optimizer\": \"yogi\", \"server_beta1\": 1}", "server_beta1");
    bad("{\"server_optimizer\": \"adam\", \"server_beta1\": -0.1}", "server_beta1");
    bad("{\"server_optimizer\": \"adam\", \"server_beta1\": \"0.9\"}", "server_beta1");
    bad("{\"server_optimizer\": \"adam\", \"server_beta2\": 1}", "server_beta2");
    bad("{\"server_optimizer\": \"adam\", \"server_beta2\": 0.99999999999}", "server_beta2");
    bad("{\"server_optimizer\": \"yogi\", \"server_beta2\": -1}", "server_beta2");
    bad("{\"server_optimizer\": \"adam\", \"server_tau\": 0}", "server_tau");
    bad("{\"server_optimizer\": \"adam\", \"server_tau\": -1e-3}", "server_tau");
    bad("{\"server_optimizer\": \"adam\", \"server_tau\": 1e-50}", "server_tau"); /* 0 as a float */
    bad("{\"server_beta1\": 0.9}", "server_beta1");          /* sgd: would be ignored */
    bad("{\"server_beta2\": 0.99}", "server_beta2");
    bad("{\"server_optimizer\": \"sgd\", \"server_tau\": 0.1}", "server_tau");
    /* a config built in code gets the same checks at create */
    fp_fed_server_config_default(&c);
    c.server_optimizer = FP_FED_SERVER_ADAM;
    c.server_beta2 = 1.0f;
    snprintf(c.state_dir, sizeof c.state_dir, "%s/state", fp_test_tmpdir("fed-opt-bad"));
    fp_identity id;
    CHECK_OK(fp_identity_keygen(&id));
    fp_fed_server *s = NULL;
    CHECK_ERR(fp_fed_server_create(&s, &c, &id, 0), FP_EINVAL);
    CHECK(s == NULL && strstr(fp_errmsg(), "server_beta2") != NULL);
    fp_identity_wipe(&id);
}

int main(void)
{
    setenv("FP_QUIET", "1", 0);
    test_hand();
    test_config();
    test_v2_read();
    test_federation(FP_FED_SERVER_ADAM, 0);
    test_federation(FP_FED_SERVER_YOGI, 0);
    test_federation(FP_FED_SERVER_ADAM, 1);
    test_federation(FP_FED_SERVER_YOGI, 1);
    test_switch();
    return fp_test_report("test_fed_server_opt");
}
