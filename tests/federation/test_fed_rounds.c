/* Federation rounds in one process over real loopback sockets: plain and
 * secure FedAvg against the directly computed weighted mean, SecAgg+ dropouts
 * at every stage, t-1 survivors (round retried, then aborted) against t
 * (success), an unknown client key, and a client sending garbage, replays,
 * forged senders and wrong stages. */
#include "fed_fixture.h"

static int all_in[3][FX_MAX] = {{1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}};

static void test_plain(void)
{
    fx f;
    fx_init(&f, "fed-plain", 5, 300, 1.0f);
    f.sc.lr = 0.5f;
    f.sc.steps = 2;
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 3);
    float *g = malloc(f.dim * sizeof(float));
    fx_expected(g, &f, 3, all_in, 0.5f, 2);
    double e = fx_maxdiff(f.global, g, f.dim);
    CHECKF(e <= 1e-6, "plain: max |global - direct| = %g", e);
    /* The checkpoint holds the same vector and the round count. */
    float *ck = NULL;
    size_t dim = 0;
    uint32_t done = 0, next = 0;
    CHECK_OK(fp_fed_checkpoint_read(&ck, &dim, &done, &next, f.sc.state_dir));
    CHECK(dim == f.dim && done == 3 && next == 4);
    CHECK(ck && memcmp(ck, f.global, dim * sizeof(float)) == 0);
    for (int i = 0; i < f.n; i++) {
        CHECKF(f.c[i].rc == 0 && f.c[i].res.rounds == 3, "client %d rc %d rounds %u", i, f.c[i].rc,
               f.c[i].res.rounds);
        CHECK(f.c[i].res.rank >= 4 && f.c[i].res.batch >= 1 && f.c[i].res.seq >= 32);
    }
    CHECK(f.st.rejected == 0);
    free(ck);
    free(g);
    fx_free(&f);
}

static void test_secure(void)
{
    fx f;
    fx_init(&f, "fed-secure", 5, 200, 0.4f);
    f.sc.secagg = 1;
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 3);
    float *g = malloc(f.dim * sizeof(float));
    fx_expected(g, &f, 3, all_in, 1.0f, 1);
    double e = fx_maxdiff(f.global, g, f.dim);
    CHECKF(e <= 1e-4, "secure: max |global - direct| = %g", e);
    free(g);
    fx_free(&f);
}

/* "server_lr": the global moves by server_lr times the clients' weighted mean
 * update every round (plain and secure); 0 and beyond 100 are refused. */
static void test_server_lr(int secure)
{
    fx f;
    fx_init(&f, secure ? "fed-slr-sa" : "fed-slr", 4, 96, 0.4f);
    f.sc.secagg = secure;
    f.sc.server_lr = 2.5f;
    f.sc.lr = 0.5f;
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 3);
    float *g = malloc(f.dim * sizeof(float)), *g1 = malloc(f.dim * sizeof(float));
    fx_expected_slr(g, &f, 3, all_in, 0.5f, 1, 2.5f);
    fx_expected(g1, &f, 3, all_in, 0.5f, 1);
    double e = fx_maxdiff(f.global, g, f.dim), e1 = fx_maxdiff(f.global, g1, f.dim);
    CHECKF(e <= (secure ? 1e-4 : 1e-6), "server_lr 2.5 %s: max |global - direct| = %g", secure ? "secure" : "plain", e);
    CHECKF(e1 > 1e-2, "server_lr 2.5 differs from FedAvg's global (max diff %g)", e1);
    free(g);
    free(g1);
    fx_free(&f);
    if (!secure) {
        fp_fed_server_config c;
        CHECK_ERR(fp_fed_server_config_parse(&c, "{\"server_lr\": 0}", 16, "."), FP_EFORMAT);
        CHECK(strstr(fp_errmsg(), "server_lr") != NULL);
        CHECK_ERR(fp_fed_server_config_parse(&c, "{\"server_lr\": 101}", 18, "."), FP_EFORMAT);
        CHECK_OK(fp_fed_server_config_parse(&c, "{\"server_lr\": 3}", 16, "."));
        CHECK(c.server_lr == 3.0f);
    }
}

/* "server_momentum" (FedAvgM): v = m v + mean update, global += server_lr v,
 * plain and secure; the server is stopped after two rounds and resumed from its
 * checkpoint for the third, so the velocity must survive the checkpoint (a
 * restart from zero velocity gives a different third step). [0, 1) only. */
static void test_server_momentum(int secure)
{
    fx f;
    fx_init(&f, secure ? "fed-mom-sa" : "fed-mom", 4, 96, 0.4f);
    f.sc.secagg = secure;
    f.sc.server_lr = 1.5f;
    f.sc.server_momentum = 0.6f;
    f.sc.lr = 0.5f;
    f.sc.rounds = 2;
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 2);
    free(f.global);
    f.global = NULL;
    f.sc.rounds = 3;
    f.stop = 0; /* the first run stopped its client threads; the second starts new ones */
    for (int i = 0; i < f.n; i++)
        f.c[i].done = 0;
    fx_hooks h = {.resume = 1};
    CHECK_OK(fx_run_with(&f, &h));
    CHECK(f.completed == 3);
    float *g = malloc(f.dim * sizeof(float)), *g0 = malloc(f.dim * sizeof(float));
    fx_expected_opt(g, &f, 3, all_in, 0.5f, 1, 1.5f, 0.6f);
    fx_expected_slr(g0, &f, 3, all_in, 0.5f, 1, 1.5f);
    double e = fx_maxdiff(f.global, g, f.dim), e0 = fx_maxdiff(g, g0, f.dim);
    CHECKF(e <= (secure ? 1e-4 : 1e-6), "momentum 0.6 %s, resumed: max |global - direct| = %g",
           secure ? "secure" : "plain", e);
    CHECKF(e0 > 1e-2, "momentum changes the global (max diff to server_lr alone %g)", e0);
    free(g);
    free(g0);
    fx_free(&f);
    if (!secure) {
        fp_fed_server_config c;
        const char *one = "{\"server_momentum\": 1}", *neg = "{\"server_momentum\": -0.1}",
                   *ok = "{\"server_momentum\": 0.9}";
        CHECK_ERR(fp_fed_server_config_parse(&c, one, strlen(one), "."), FP_EFORMAT);
        CHECK(strstr(fp_errmsg(), "server_momentum") != NULL);
        CHECK_ERR(fp_fed_server_config_parse(&c, neg, strlen(neg), "."), FP_EFORMAT);
        CHECK_OK(fp_fed_server_config_parse(&c, ok, strlen(ok), "."));
        CHECK(c.server_momentum == 0.9f);
    }
}

/* One client drops at `stage` in round 0 (index 0); one round, lr 1, E 1:
 * the result is the weighted mean of the targets of those whose masked input
 * made it into the sum. */
static void test_drop(int stage, int counted)
{
    fx f;
    char tag[64];
    snprintf(tag, sizeof tag, "fed-drop-%d", stage);
    fx_init(&f, tag, 5, 64, 0.4f);
    f.sc.secagg = 1;
    f.sc.rounds = 1;
    f.c[2].cfg.fault.drop_stage = stage;
    f.c[2].cfg.fault.drop_index = 0;
    CHECK_OK(fx_run(&f));
    int in[1][FX_MAX] = {{1, 1, counted, 1, 1}};
    float *g = malloc(f.dim * sizeof(float));
    fx_expected(g, &f, 1, in, 1.0f, 1);
    double e = fx_maxdiff(f.global, g, f.dim);
    CHECKF(f.completed == 1 && e <= 1e-4, "drop at %s: completed %u, err %g", fp_msg_stage_name((unsigned)stage),
           f.completed, e);
    free(g);
    fx_free(&f);
}

/* n 5, t 3: `drops` clients drop before sending masked input. */
static void test_threshold(int drops, int expect_ok)
{
    fx f;
    char tag[64];
    snprintf(tag, sizeof tag, "fed-thr-%d", drops);
    fx_init(&f, tag, 5, 32, 0.4f);
    f.sc.secagg = 1;
    f.sc.rounds = 1;
    f.sc.max_attempts = 1;
    f.sc.threshold = 3;
    for (int i = 0; i < drops; i++) {
        f.c[i].cfg.fault.drop_stage = FP_STAGE_MASKED;
        f.c[i].cfg.fault.drop_index = -1;
    }
    int rc = fx_run(&f);
    if (expect_ok) {
        CHECKF(rc == 0 && f.completed == 1, "t survivors: rc %d completed %u", rc, f.completed);
        int in[1][FX_MAX] = {{0, 0, 1, 1, 1}};
        float *g = malloc(f.dim * sizeof(float));
        fx_expected(g, &f, 1, in, 1.0f, 1);
        CHECK(fx_maxdiff(f.global, g, f.dim) <= 1e-4);
        free(g);
    } else {
        CHECKF(rc == FP_EABORT && f.completed == 0 && f.st.rounds_failed == 1,
               "t-1 survivors: rc %d completed %u failed %llu", rc, f.completed,
               (unsigned long long)f.st.rounds_failed);
        /* Nothing changed: the global is still the initial zeros. */
        float z[32] = {0};
        CHECK(memcmp(f.global, z, sizeof z) == 0);
    }
    fx_free(&f);
}

/* A round that keeps failing its quorum: client 0 crashes for good at TRAIN,
 * client 1 skips round index 0 (the index stays 0 while no round completes),
 * so 3 updates < quorum 4 every time: each attempt is retried with a fresh
 * wire round until max_attempts, then the server gives up with FP_EABORT. */
static void test_retry(void)
{
    fx f;
    fx_init(&f, "fed-retry", 5, 32, 0.4f);
    f.sc.rounds = 1;
    f.sc.quorum = 4;
    f.sc.min_clients = 4;
    f.sc.max_attempts = 3;
    f.c[0].cfg.fault.drop_stage = FP_STAGE_TRAIN;
    f.c[0].cfg.fault.crash = 1;
    f.c[1].cfg.fault.drop_stage = FP_STAGE_TRAIN;
    f.c[1].cfg.fault.drop_index = 0;
    f.c[1].cfg.fault.crash = 0;
    int rc = fx_run(&f);
    /* Client 1 skips index 0 every time it is asked (drop_index 0 stays the
     * index until a round completes), so only 3 updates arrive: the round is
     * retried until max_attempts, then the server gives up. */
    CHECKF(rc == FP_EABORT && f.completed == 0 && f.st.rounds_failed == 3, "retry: rc %d completed %u failed %llu",
           rc, f.completed, (unsigned long long)f.st.rounds_failed);
    CHECK(f.c[0].rc == FP_EABORT); /* the crash */
    fx_free(&f);
}

/* Envelopes above FP_FED_DIRECT_MAX travel chunked both ways (model down,
 * update and masked input up). */
static void test_chunked(int secure)
{
    fx f;
    fx_init(&f, secure ? "fed-chunk-sa" : "fed-chunk", 3, 300000, 0.4f);
    f.sc.rounds = 1;
    f.sc.secagg = secure;
    f.sc.stage_timeout_ms = 20000;
    CHECK_OK(fx_run(&f));
    /* Who was included, as each client was told: on a starved machine a client can
     * miss a stage and the round completes without it (seen once under load). */
    int in[1][FX_MAX] = {{0}}, nin = 0;
    for (int i = 0; i < f.n; i++)
        nin += in[0][i] = f.c[i].res.rounds > 0;
    CHECKF(nin >= 2, "chunked (secure %d): %d clients included", secure, nin);
    float *g = malloc(f.dim * sizeof(float));
    fx_expected(g, &f, 1, in, 1.0f, 1);
    double e = fx_maxdiff(f.global, g, f.dim);
    CHECKF(f.completed == 1 && e <= (secure ? 1e-4 : 1e-6), "chunked (secure %d): err %g", secure, e);
    CHECK(f.c[0].res.bytes_recv > f.dim * 4 && f.c[0].res.bytes_sent > f.dim * 4);
    free(g);
    fx_free(&f);
}

static void test_unknown_key(void)
{
    fx f;
    fx_init(&f, "fed-unknown", 4, 16, 1.0f);
    f.sc.rounds = 1;
    f.sc.min_clients = 3;
    f.c[3].on_list = 0; /* not in clients.json */
    f.c[3].cfg.give_up_ms = 1500;
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 1);
    CHECKF(f.c[3].rc != 0 && f.c[3].res.rounds == 0 && f.c[3].res.rank == 0, "unknown client: rc %d", f.c[3].rc);
    CHECKF(f.st.zap_refused >= 1, "zap refused %llu", (unsigned long long)f.st.zap_refused);
    CHECK(f.st.registered == 3);
    fx_free(&f);
}

static void test_garbage(void)
{
    fx f;
    fx_init(&f, "fed-garbage", 5, 100, 1.0f);
    f.c[4].cfg.fault.garbage = 1;
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 3);
    float *g = malloc(f.dim * sizeof(float));
    fx_expected(g, &f, 3, all_in, 1.0f, 1);
    CHECK(fx_maxdiff(f.global, g, f.dim) <= 1e-6);
    /* per round: junk + truncated (malformed), wrong stage, forged sender; from
     * round 2 on, a replay of the previous round's UPDATE (old round). */
    CHECKF(f.st.rej_malformed >= 6 && f.st.rej_stage >= 3 && f.st.rej_forged >= 3 && f.st.rej_round >= 2,
           "malformed %llu stage %llu forged %llu round %llu", (unsigned long long)f.st.rej_malformed,
           (unsigned long long)f.st.rej_stage, (unsigned long long)f.st.rej_forged,
           (unsigned long long)f.st.rej_round);
    free(g);
    fx_free(&f);
}

int main(void)
{
    setenv("FP_QUIET", "1", 0);
    test_plain();
    test_secure();
    test_server_lr(0);
    test_server_lr(1);
    test_server_momentum(0);
    test_server_momentum(1);
    test_drop(FP_STAGE_ADVERTISE, 0);
    test_drop(FP_STAGE_SHARE, 0);
    test_drop(FP_STAGE_MASKED, 0);
    test_drop(FP_STAGE_UNMASK, 1);
    test_threshold(3, 0);
    test_threshold(2, 1);
    test_retry();
    test_chunked(0);
    test_chunked(1);
    test_unknown_key();
    test_garbage();
    return fp_test_report("test_fed_rounds");
}
