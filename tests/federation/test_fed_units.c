/* Federation pieces without the network: server.json strictness, the
 * checkpoint's integrity check, aggregator registry and fedavg's secure
 * encoding against its plain form, the stand-in data file, round reports. */
#include "fed_fixture.h"

static void test_config(void)
{
    fp_fed_server_config c;
    const char *ok = "{\"keys\":\"k\",\"clients\":\"c.json\",\"rounds\":5,\"secagg\":true,\"dim\":10,"
                     "\"overrides\":{\"alice\":{\"rank\":8}}}";
    CHECK_OK(fp_fed_server_config_parse(&c, ok, strlen(ok), "/base"));
    CHECK(c.rounds == 5 && c.secagg && c.dim == 10 && !strcmp(c.keys_dir, "/base/k"));
    CHECK(c.n_overrides == 1 && c.overrides[0].rank == 8 && !strcmp(c.overrides[0].name, "alice"));
    const char *bad[] = {"{\"roundz\":1}", "{\"fraction\":1.5}", "{\"aggregator\":\"nope\"}", "{\"dim\":0}",
                         "{\"rounds\":\"3\"}", "{\"overrides\":{\"a\":{\"rank\":1,\"x\":2}}}", "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = fp_fed_server_config_parse(&c, bad[i], strlen(bad[i]), "/b");
        CHECKF(rc == FP_EFORMAT || rc == FP_ENOTFOUND, "config %s accepted (%d)", bad[i], rc);
    }
}

static void test_checkpoint_tamper(void)
{
    fx f;
    fx_init(&f, "fed-units-ck", 2, 8, 1.0f);
    f.sc.rounds = 1;
    CHECK_OK(fx_run(&f));
    char p[700];
    snprintf(p, sizeof p, "%s/checkpoint.bin", f.sc.state_dir);
    void *d = NULL;
    size_t n = 0;
    CHECK_OK(fp_read_file(&d, &n, p, 1 << 20));
    ((uint8_t *)d)[120] ^= 1; /* one bit of the global vector */
    CHECK_OK(fp_write_file_atomic(p, d, n, 0600));
    CHECK_ERR(fp_fed_checkpoint_read(NULL, NULL, NULL, NULL, f.sc.state_dir), FP_EFORMAT);
    /* and a resume refuses it */
    fp_fed_server *s = NULL;
    CHECK_ERR(fp_fed_server_create(&s, &f.sc, &f.sid, 1), FP_EFORMAT);
    free(d);
    fx_free(&f);
}

static void test_aggregators(void)
{
    const fp_aggregator *a = NULL;
    CHECK_ERR(fp_aggregator_find(&a, "krum"), FP_ENOTFOUND);
    CHECK_OK(fp_aggregator_find(&a, "median"));
    CHECK(a && !a->secure_ok);
    CHECK_OK(fp_aggregator_find(&a, "fedavg"));
    CHECK(a->secure_ok && a->secure_sums == 1 && a->secure_len(0, 5) == 6);
    float u[3][5] = {{1, -2, 0.5f, 0, 3}, {0.5f, 0.25f, -1, 2, -0.5f}, {0, 0, 0, 1, 1}};
    double w[3] = {10, 30, 60};
    const float *rows[3] = {u[0], u[1], u[2]};
    float plain[5], sec[5], sum[6] = {0}, v[6];
    CHECK_OK(a->aggregate_plain(plain, rows, w, 3, 5));
    for (int k = 0; k < 3; k++) {
        CHECK_OK(a->client_vector(v, 0, u[k], 5, w[k] / 60.0, 4.0f, NULL));
        for (int i = 0; i < 6; i++)
            sum[i] += v[i];
    }
    const float *sums[1] = {sum};
    CHECK_OK(a->finish_secure(sec, 5, sums, 4.0f));
    CHECK(fx_maxdiff(plain, sec, 5) < 1e-6);
    CHECK(fabsf(plain[0] - (10 * 1 + 30 * 0.5f) / 100.0f) < 1e-7f);
}

static void test_standin(void)
{
    fp_standin_data d;
    const char *j = "{\"samples\":3,\"target\":[1,2,3]}";
    CHECK_OK(fp_standin_data_parse(&d, j, strlen(j), "t"));
    CHECK(d.dim == 3 && d.samples == 3 && d.target[2] == 3.0f);
    fp_standin_data_free(&d);
    const char *bad[] = {"{\"samples\":0,\"target\":[1]}", "{\"samples\":1}", "{\"samples\":1,\"target\":[\"x\"]}",
                         "{\"samples\":1,\"dim\":4}", "{\"samples\":1,\"target\":[1],\"extra\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_ERR(fp_standin_data_parse(&d, bad[i], strlen(bad[i]), "t"), FP_EFORMAT);
    float g[4] = {0, 0, 0, 0}, t[4] = {1, -1, 2, 0}, up[4];
    fp_standin_update(up, g, t, 4, 1, 1.0f, 0, 1, 0);
    CHECK(memcmp(up, t, sizeof t) == 0);
}

static void test_report(void)
{
    fp_fed_round_report r;
    memset(&r, 0, sizeof r);
    r.round = 7;
    r.index = 2;
    r.selected = 3;
    r.included = 2;
    snprintf(r.joined, sizeof r.joined, "a,b");
    snprintf(r.dropped, sizeof r.dropped, "c");
    r.loss = NAN;
    r.stage_ms[FP_STAGE_MASKED] = 12.5;
    char *s = NULL;
    CHECK_OK(fp_fed_round_report_json(&s, &r));
    cJSON *o = cJSON_Parse(s);
    CHECK(o && cJSON_GetArraySize(cJSON_GetObjectItem(o, "joined")) == 2);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "loss")));
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "stage_ms"), "masked")->valuedouble == 12.5);
    cJSON_Delete(o);
    free(s);
}

int main(void)
{
    setenv("FP_QUIET", "1", 0);
    test_config();
    test_checkpoint_tamper();
    test_aggregators();
    test_standin();
    test_report();
    return fp_test_report("test_fed_units");
}
