/* Separate processes over real sockets: `fp keygen` for the server and 5
 * clients, `fp serve` and 5 `fp join` running 3 rounds (result = the directly
 * computed weighted mean, signed proxy delivered), then the same federation
 * with the server killed by SIGKILL mid-round and restarted with --resume:
 * the final vector must equal the uninterrupted run's bit for bit. First, a
 * server whose --endpoint-file cannot be written exits with an error naming it. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fed_fixture.h"
#include "endpoint_file.h"

#define N 5
#define DIM 257
static char fpbin[1024], dir[600];

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t p = fork();
    if (p == 0) {
        if (log) {
            FILE *f = freopen(log, "w", stderr);
            (void)f;
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

static int wait_exit(pid_t p, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        int st = 0;
        pid_t r = waitpid(p, &st, WNOHANG);
        if (r == p)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    return -1;
}

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static int run_cmd(char *const argv[])
{
    pid_t p = spawn(argv, NULL);
    return wait_exit(p, 20000);
}

static void setup(void)
{
    char kd[700], out[700];
    path(kd, sizeof kd, "server");
    char *kg[] = {fpbin, "keygen", "--out", kd, NULL};
    CHECK(run_cmd(kg) == 0);
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "clients");
    cJSON_AddNumberToObject(o, "version", 1);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "client%d", i);
        path(kd, sizeof kd, name);
        char *kc[] = {fpbin, "keygen", "--out", kd, NULL};
        CHECK(run_cmd(kc) == 0);
        uint8_t pk[32];
        CHECK_OK(fp_identity_load_public(pk, kd));
        char kh[65];
        fp_hex_encode(kh, sizeof kh, pk, 32);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "key", kh);
        cJSON_AddItemToArray(a, e);
        /* data: explicit target */
        snprintf(out, sizeof out, "%s/data%d.json", dir, i);
        FILE *f = fopen(out, "w");
        fprintf(f, "{\"samples\": %d, \"dim\": %d, \"target_seed\": %d, \"target_scale\": 0.7}\n", 50 + 30 * i, DIM,
                i + 10);
        fclose(f);
    }
    char *t = cJSON_Print(o);
    path(out, sizeof out, "clients.json");
    CHECK_OK(fp_write_file_atomic(out, t, strlen(t), 0644));
    free(t);
    cJSON_Delete(o);
    path(out, sizeof out, "proxy.bin");
    CHECK_OK(fp_write_file_atomic(out, "pretend this is a proxy model", 29, 0644));
}

static void write_server_json(const char *name, const char *state, int port)
{
    char p[700];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    fprintf(f,
            "{\"endpoint\": \"tcp://127.0.0.1:%d\", \"keys\": \"server\", \"clients\": \"clients.json\",\n"
            " \"state_dir\": \"%s\", \"proxy\": \"proxy.bin\", \"rounds\": 3, \"min_clients\": %d, \"quorum\": 3,\n"
            " \"stage_timeout_ms\": 5000, \"register_timeout_ms\": 10000, \"dim\": %d, \"lr\": 0.5, \"steps\": 2,\n"
            " \"seed\": 3, \"init_seed\": 9, \"overrides\": {\"client0\": {\"rank\": 16}}}\n",
            port, state, N, DIM);
    fclose(f);
}

/* A first start binds port 0 and returns the port it got in *port; a resume
 * binds the port its config names (the one the killed server had), so the
 * clients reconnect to it. */
static pid_t start_server(const char *cfg, int resume, int *port)
{
    char c[700], log[700], epf[700];
    path(c, sizeof c, cfg);
    snprintf(log, sizeof log, "%s/%s.%s.log", dir, cfg, resume ? "resume" : "first");
    snprintf(epf, sizeof epf, "%s/%s.endpoint", dir, cfg);
    char *argv[] = {fpbin, "serve", "--config", c, resume ? "--resume" : "--endpoint-file", resume ? NULL : epf, NULL};
    pid_t p = spawn(argv, log);
    if (!resume) {
        *port = endpoint_file_port(epf, 20000);
        CHECKF(*port > 0, "fp serve wrote no endpoint to %s (see %s)", epf, log);
    }
    return p;
}

static void start_clients(pid_t *pids, int port, int slow_ms, const char *tag)
{
    char skey[700];
    path(skey, sizeof skey, "server/identity.pub");
    for (int i = 0; i < N; i++) {
        char ep[64], keys[700], data[700], name[32], slow[16], log[700], proxy[700];
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
        snprintf(keys, sizeof keys, "%s/client%d", dir, i);
        snprintf(data, sizeof data, "%s/data%d.json", dir, i);
        snprintf(name, sizeof name, "client%d", i);
        snprintf(slow, sizeof slow, "%d", slow_ms);
        snprintf(log, sizeof log, "%s/%s-client%d.log", dir, tag, i);
        snprintf(proxy, sizeof proxy, "%s/%s-proxy%d.bin", dir, tag, i);
        char *argv[] = {fpbin, "join", "--server", ep, "--server-key", skey, "--keys", keys, "--data", data,
                        "--name", name, "--slow-ms", slow, "--proxy-out", proxy, NULL};
        pids[i] = spawn(argv, log);
    }
}


int main(void)
{
    setenv("FP_QUIET", "1", 0);
    snprintf(fpbin, sizeof fpbin, "%s/tools/fp", FP_BINARY_DIR);
    snprintf(dir, sizeof dir, "%s", fp_test_tmpdir("fed-procs"));
    setup();

    /* 0. a malformed client DP floor is refused before anything starts: exit 2 */
    for (int k = 0; k < 2; k++) {
        char skey[700], keys[700], data[700];
        path(skey, sizeof skey, "server/identity.pub");
        snprintf(keys, sizeof keys, "%s/client0", dir);
        snprintf(data, sizeof data, "%s/data0.json", dir);
        char *argv[] = {fpbin, "join", "--server", "tcp://127.0.0.1:9", "--server-key", skey, "--keys", keys,
                        "--data", data, "--dp-min-noise", k ? "nan" : "-0.5", NULL};
        int r = run_cmd(argv);
        CHECKF(r == 2, "fp join --dp-min-noise %s exited %d, expected 2", argv[11], r);
    }

    /* 0. an endpoint file it cannot write: fp serve says which and exits,
     * rather than serving on a port nobody can learn */
    {
        char c[700], log[700], bad[700];
        write_server_json("server0.json", "state0", 0);
        path(c, sizeof c, "server0.json");
        path(log, sizeof log, "server0.log");
        path(bad, sizeof bad, "no-such-dir/endpoint");
        char *argv[] = {fpbin, "serve", "--config", c, "--endpoint-file", bad, NULL};
        int r = wait_exit(spawn(argv, log), 20000);
        CHECKF(r == 1, "fp serve with an unwritable endpoint file exited %d", r);
        void *msg = NULL;
        size_t ml = 0;
        CHECK_OK(fp_read_file(&msg, &ml, log, 1 << 16));
        CHECKF(msg && strstr(msg, "no-such-dir/endpoint"), "its error names the file: %s", msg ? (char *)msg : "");
        free(msg);
    }

    /* 1. uninterrupted */
    int port = 0;
    write_server_json("server1.json", "state1", 0);
    pid_t srv = start_server("server1.json", 0, &port);
    pid_t cl[N];
    start_clients(cl, port, 0, "run1");
    int src = wait_exit(srv, 60000);
    CHECKF(src == 0, "fp serve exited %d (see %s/server1.json.first.log)", src, dir);
    for (int i = 0; i < N; i++) {
        int r = wait_exit(cl[i], 10000);
        CHECKF(r == 0, "fp join %d exited %d", i, r);
    }
    char st1[700];
    path(st1, sizeof st1, "state1");
    float *g1 = NULL;
    size_t dim = 0;
    uint32_t done = 0;
    CHECK_OK(fp_fed_checkpoint_read(&g1, &dim, &done, NULL, st1));
    CHECK(dim == DIM && done == 3);
    /* Directly: init vector as the server draws it is not public API, so check
     * the fixed point instead: with lr 0.5, E 2 each round removes 3/4 of the
     * distance to the weighted mean of targets; after 3 rounds the remaining
     * distance is (1/4)^3 of the initial one (|init| <= 0.1). */
    double W = 0, maxd = 0;
    float tgt[DIM], mean[DIM] = {0};
    for (int i = 0; i < N; i++)
        W += 50 + 30 * i;
    for (int i = 0; i < N; i++) {
        fp_standin_target_gen(tgt, DIM, (uint64_t)i + 10, 0.7f);
        for (int d = 0; d < DIM; d++)
            mean[d] += (float)((50 + 30 * i) / W * tgt[d]);
    }
    for (int d = 0; g1 && d < DIM; d++) {
        double e = fabs((double)g1[d] - mean[d]);
        maxd = e > maxd ? e : maxd;
    }
    CHECKF(maxd <= (0.7 + 0.1) / 64.0 + 1e-5 && maxd > 0, "distance to the weighted mean %g", maxd);
    /* the signed proxy arrived and verified */
    char pp[700];
    void *pd = NULL;
    size_t pl = 0;
    path(pp, sizeof pp, "run1-proxy0.bin");
    CHECK_OK(fp_read_file(&pd, &pl, pp, 1024));
    CHECK(pl == 29 && pd && memcmp(pd, "pretend this is a proxy model", 29) == 0);
    free(pd);

    /* 2. killed mid-round with SIGKILL, resumed */
    write_server_json("server2.json", "state2", 0);
    srv = start_server("server2.json", 0, &port);
    start_clients(cl, port, 400, "run2");
    char st2[700];
    path(st2, sizeof st2, "state2");
    int killed = 0;
    for (int t = 0; t < 30000 && !killed; t += 20) {
        uint32_t c = 0;
        if (fp_fed_checkpoint_read(NULL, NULL, &c, NULL, st2) == 0 && c >= 1) {
            usleep(250000); /* inside round 2: clients sleep 400 ms before uploading */
            kill(srv, SIGKILL);
            waitpid(srv, NULL, 0);
            killed = 1;
        }
        usleep(20000);
    }
    CHECK(killed);
    uint32_t at_kill = 0;
    CHECK_OK(fp_fed_checkpoint_read(NULL, NULL, &at_kill, NULL, st2));
    CHECKF(at_kill < 3, "killed after %u rounds: not mid-federation", at_kill);
    write_server_json("server2.json", "state2", port);
    srv = start_server("server2.json", 1, NULL);
    src = wait_exit(srv, 60000);
    CHECKF(src == 0, "resumed fp serve exited %d (see %s/server2.json.resume.log)", src, dir);
    for (int i = 0; i < N; i++) {
        int r = wait_exit(cl[i], 10000);
        CHECKF(r == 0, "fp join %d (run 2) exited %d", i, r);
    }
    float *g2 = NULL;
    uint32_t next = 0;
    CHECK_OK(fp_fed_checkpoint_read(&g2, &dim, &done, &next, st2));
    CHECK(done == 3);
    CHECKF(next > 4, "the resumed server used fresh wire rounds (next %u)", next);
    CHECK(g1 && g2 && memcmp(g1, g2, DIM * sizeof(float)) == 0);
    free(g1);
    free(g2);
    return fp_test_report("test_fed_procs");
}
