/* fp serve --config server.json [--resume] [--json]: the federation server. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/fed.h"
#include "fedproxy/fileio.h"

static fp_fed_server *g_srv;

static void on_signal(int sig)
{
    (void)sig;
    if (g_srv)
        fp_fed_server_stop(g_srv);
}

static void report(void *ctx, const fp_fed_round_report *r)
{
    int json = *(int *)ctx;
    if (json) {
        char *s = NULL;
        if (fp_fed_round_report_json(&s, r) == 0) {
            printf("%s\n", s);
            fflush(stdout);
        }
        free(s);
        return;
    }
    fprintf(stderr,
            "round %u (index %u) %s: %u/%u clients, joined [%s] dropped [%s], sent %.1f KiB recv %.1f KiB, "
            "%.0f ms, loss %.6g, %llu refused\n",
            r->round, r->index, r->status ? "RETRY" : "ok", r->included, r->selected, r->joined, r->dropped,
            r->bytes_sent / 1024.0, r->bytes_recv / 1024.0, r->total_ms, r->loss,
            (unsigned long long)r->rejected);
    if (r->dp_on)
        fprintf(stderr, "  dp: q %.3g, noise multiplier %.4g, epsilon this round %.4g, total %.4g at delta %g\n",
                r->dp_q, r->dp_z, r->dp_round_epsilon, r->dp_epsilon, r->dp_delta);
}

int fp_cmd_serve(int argc, char **argv)
{
    const char *cfgp = fp_cli_opt(argc, argv, "--config");
    if (fp_cli_flag(argc, argv, "--help") || !cfgp) {
        fprintf(cfgp ? stdout : stderr,
                "usage: fp serve --config server.json [--resume] [--json] [--endpoint-file FILE]\n"
                "Runs federated rounds (format of server.json: include/fedproxy/fed.h).\n"
                "The server's step on each round's aggregate: \"server_lr\" (1: FedAvg), \"server_momentum\"\n"
                "(FedAvgM), or \"server_optimizer\": \"adam\" | \"yogi\" (FedAdam/FedYogi; default \"sgd\") with\n"
                "\"server_beta1\" (0.9), \"server_beta2\" (0.99) and \"server_tau\" (1e-3).\n"
                "  --resume         continue from state_dir/checkpoint.bin\n"
                "  --json           one JSON object per round on stdout\n"
                "  --endpoint-file  write the bound endpoint there (for port 0)\n");
        return cfgp ? 0 : 2;
    }
    int json = fp_cli_flag(argc, argv, "--json");
    fp_fed_server_config cfg;
    int rc = fp_fed_server_config_load(&cfg, cfgp);
    if (rc)
        return fp_cli_fail("serve", rc);
    fp_identity id;
    rc = fp_identity_load(&id, cfg.keys_dir);
    if (rc)
        return fp_cli_fail("serve", rc);
    fp_fed_server *s = NULL;
    rc = fp_fed_server_create(&s, &cfg, &id, fp_cli_flag(argc, argv, "--resume"));
    fp_identity_wipe(&id);
    if (rc)
        return fp_cli_fail("serve", rc);
    char ep[256] = "";
    fp_fed_server_endpoint(s, ep, sizeof ep);
    fprintf(stderr, "fp serve: listening on %s\n", ep);
    /* written whole (temp file, fsync, rename): a script or test polling for
     * it never reads half a line; a server nobody can find is an error */
    const char *epf = fp_cli_opt(argc, argv, "--endpoint-file");
    if (epf) {
        char line[sizeof ep + 1];
        int n = snprintf(line, sizeof line, "%s\n", ep);
        rc = fp_write_file_atomic(epf, line, (size_t)n, 0644);
        if (rc) {
            fp_cli_fail("serve (--endpoint-file)", rc);
            fp_fed_server_destroy(s);
            return 1;
        }
    }
    g_srv = s;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fp_fed_server_set_report(s, report, &json);
    rc = fp_fed_server_run(s);
    if (rc) {
        fp_cli_fail("serve", rc);
        fp_fed_server_destroy(s);
        return 1;
    }
    fprintf(stderr, "fp serve: finished\n");
    fp_fed_server_destroy(s);
    g_srv = NULL;
    return 0;
}
