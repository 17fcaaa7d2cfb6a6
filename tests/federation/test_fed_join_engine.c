/* The engine federation as users run it, with the built binary: `fp keygen`,
 * `fp serve` with proxy_dir / lora / adapter_out (secure aggregation), two
 * `fp join --data TEXT` processes (one with --eval, one with the default
 * --proxy-out): both exit 0 after 2 rounds, the proxy arrives unpacked where
 * it should, the server's per-round JSON has falling losses, and the adapter
 * it wrote loads into the proxy. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "fedproxy/fed.h"
#include "fedproxy/fileio.h"
#include "fedproxy/tokenizer.h"
#include "fp_test.h"
#include "endpoint_file.h"

static char fpbin[1024], dir[600];

static const char *texts[2] = {
    "the cat sat on the mat. the cat ate the rat. a cat and a hat. ",
    "error: segmentation fault at address zero. core dumped. error: out of memory. ",
};

static pid_t spawn(char *const argv[], const char *out, const char *err)
{
    pid_t p = fork();
    if (p == 0) {
        if (out && !freopen(out, "w", stdout))
            _exit(126);
        if (err && !freopen(err, "w", stderr))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

static int wait_exit(pid_t p, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        int st = 0;
        if (waitpid(p, &st, WNOHANG) == p)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    return -1;
}

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%.300s/%.300s", dir, name); }

int main(void)
{
    setenv("FP_QUIET", "1", 0);
    snprintf(fpbin, sizeof fpbin, "%s/tools/fp", FP_BINARY_DIR);
    snprintf(dir, sizeof dir, "%s", fp_test_tmpdir("fed-join-engine"));
    char p[800], q[800];
    /* data and the proxy (random tiny Llama + a tokenizer trained on the data) */
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/data%d.txt", dir, i);
        char buf[1000] = "";
        for (int k = 0; k < 6; k++)
            strcat(buf, texts[i]);
        CHECK_OK(fp_write_file_atomic(p, buf, strlen(buf), 0644));
    }
    static const char *sp[] = {"<|endoftext|>"};
    fp_bpe_train_opts o = {280, sp, 1, 2};
    size_t lens[2] = {strlen(texts[0]), strlen(texts[1])};
    char *tj = NULL;
    CHECK_OK(fp_bpe_train(&tj, &o, texts, lens, 2));
    fp_tokenizer *tk = NULL;
    CHECK_OK(fp_tokenizer_parse(&tk, tj, strlen(tj), "tokenizer"));
    fp_llama_config c = {.hidden = 32, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 8, .intermediate = 48,
                         .vocab = (int64_t)fp_tokenizer_vocab_size(tk), .rms_eps = 1e-5f, .rope_theta = 10000.0f};
    fp_tokenizer_free(tk);
    fp_ctx *ctx = fp_test_ctx(NULL);
    fp_model *m = NULL;
    path(p, sizeof p, "proxy");
    CHECK_OK(fp_model_create(&m, ctx, &c));
    CHECK_OK(fp_model_init_random(m, 3));
    CHECK_OK(fp_model_save_dir(m, p));
    fp_model_free(m);
    path(p, sizeof p, "proxy/tokenizer.json");
    CHECK_OK(fp_write_file_atomic(p, tj, strlen(tj), 0644));
    free(tj);
    /* identities and configs */
    char *kg[] = {fpbin, "keygen", "--out", p, NULL};
    const char *names[3] = {"srv", "k0", "k1"};
    char keys[3][700];
    for (int i = 0; i < 3; i++) {
        path(keys[i], sizeof keys[i], names[i]);
        kg[3] = keys[i];
        CHECK(wait_exit(spawn(kg, NULL, NULL), 20000) == 0);
    }
    cJSON *al = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(al, "clients");
    cJSON_AddNumberToObject(al, "version", 1);
    for (int i = 1; i < 3; i++) {
        uint8_t pk[32];
        char kh[65], nm[8];
        CHECK_OK(fp_identity_load_public(pk, keys[i]));
        fp_hex_encode(kh, sizeof kh, pk, 32);
        snprintf(nm, sizeof nm, "c%d", i - 1);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", nm);
        cJSON_AddStringToObject(e, "key", kh);
        cJSON_AddItemToArray(arr, e);
    }
    char *t = cJSON_Print(al);
    path(p, sizeof p, "clients.json");
    CHECK_OK(fp_write_file_atomic(p, t, strlen(t), 0644));
    free(t);
    cJSON_Delete(al);
    char js[1500];
    int jn = snprintf(js, sizeof js,
                      "{\"endpoint\": \"tcp://127.0.0.1:0\", \"keys\": \"srv\", \"clients\": \"clients.json\",\n"
                      " \"proxy_dir\": \"proxy\", \"lora\": {\"rank\": 4, \"alpha\": 8}, \"adapter_out\": \"adapter\",\n"
                      " \"rounds\": 2, \"steps\": 6, \"lr\": 0.01, \"secagg\": true, \"min_clients\": 2, \"quorum\": 2,\n"
                      " \"stage_timeout_ms\": 60000, \"register_timeout_ms\": 30000,\n"
                      " \"overrides\": {\"c0\": {\"batch\": 2, \"seq\": 16}, \"c1\": {\"batch\": 1, \"seq\": 24}}}");
    path(p, sizeof p, "server.json");
    CHECK_OK(fp_write_file_atomic(p, js, (size_t)jn, 0644));
    char sout[700], serr[700], sepf[700], ep[64], spub[800], d0[700], d1[700], po0[700], jo[2][700], je[2][700];
    path(sout, sizeof sout, "serve.out");
    path(serr, sizeof serr, "serve.err");
    path(sepf, sizeof sepf, "serve.endpoint");
    char *sv[] = {fpbin, "serve", "--config", p, "--json", "--endpoint-file", sepf, NULL};
    pid_t srv = spawn(sv, sout, serr);
    int port = endpoint_file_port(sepf, 60000);
    CHECKF(port > 0, "fp serve wrote no endpoint to %s (see %s)", sepf, serr);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    snprintf(spub, sizeof spub, "%s/identity.pub", keys[0]);
    path(d0, sizeof d0, "data0.txt");
    path(d1, sizeof d1, "data1.txt");
    path(po0, sizeof po0, "c0-proxy");
    for (int i = 0; i < 2; i++) {
        snprintf(q, sizeof q, "join%d.out", i);
        path(jo[i], sizeof jo[i], q);
        snprintf(q, sizeof q, "join%d.err", i);
        path(je[i], sizeof je[i], q);
    }
    char *j0[] = {fpbin, "join", "--server", ep, "--server-key", spub, "--keys", keys[1], "--data", d0,
                  "--eval", d1, "--name", "c0", "--proxy-out", po0, "--json", NULL};
    char *j1[] = {fpbin, "join", "--server", ep, "--server-key", spub, "--keys", keys[2], "--data", d1,
                  "--name", "c1", "--json", NULL};
    pid_t c0 = spawn(j0, jo[0], je[0]), c1 = spawn(j1, jo[1], je[1]);
    int src = wait_exit(srv, 90000);
    CHECKF(src == 0, "fp serve exited %d (see %s)", src, serr);
    int r0 = wait_exit(c0, 10000), r1 = wait_exit(c1, 10000);
    CHECKF(r0 == 0 && r1 == 0, "fp join exited %d and %d (see %s, %s)", r0, r1, je[0], je[1]);
    /* the server's rounds */
    void *so = NULL;
    size_t sl = 0;
    CHECK_OK(fp_read_file(&so, &sl, sout, 1 << 20));
    double loss[2] = {0, 0};
    int rounds = 0;
    for (char *line = so ? strtok(so, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *r = cJSON_Parse(line);
        if (r && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(r, "status")), "ok") && rounds < 2)
            loss[rounds++] = cJSON_GetNumberValue(cJSON_GetObjectItem(r, "loss"));
        cJSON_Delete(r);
    }
    free(so);
    CHECKF(rounds == 2 && loss[1] < loss[0], "%d rounds, losses %g -> %g", rounds, loss[0], loss[1]);
    /* each client's summary; the proxy where it was asked to go, or KEYS/proxy */
    for (int i = 0; i < 2; i++) {
        void *o2 = NULL;
        size_t l2 = 0;
        CHECK_OK(fp_read_file(&o2, &l2, jo[i], 1 << 16));
        cJSON *r = o2 ? cJSON_Parse(o2) : NULL;
        CHECKF(r && cJSON_GetNumberValue(cJSON_GetObjectItem(r, "rounds")) == 2 &&
                   cJSON_IsTrue(cJSON_GetObjectItem(r, "proxy")),
               "fp join %d printed %s", i, o2 ? (char *)o2 : "");
        cJSON_Delete(r);
        free(o2);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", po0);
    CHECK(access(p, R_OK) == 0);
    snprintf(p, sizeof p, "%s/proxy/config.json", keys[2]);
    CHECK(access(p, R_OK) == 0);
    /* the global adapter loads into the proxy */
    path(p, sizeof p, "proxy");
    path(q, sizeof q, "adapter");
    CHECK_OK(fp_model_load_dir(&m, ctx, p));
    CHECK_OK(fp_model_load_adapter(m, q));
    fp_lora_config lc;
    CHECK(fp_model_lora_get(m, &lc) == 1 && lc.rank == 4 && lc.targets == FP_LORA_ALL);
    fp_model_free(m);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_fed_join_engine");
}
