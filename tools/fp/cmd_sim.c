/* fp sim --config sim.json [--json]: server + N clients in one process (format in fed.h). */
#include <math.h>
#include <stdio.h>

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/fed.h"
#include "fedproxy/fileio.h"

static void report(void *ctx, const fp_fed_round_report *r)
{
    int json = *(int *)ctx;
    if (json) {
        char *s = NULL;
        if (fp_fed_round_report_json(&s, r) == 0)
            printf("%s\n", s);
        free(s);
        fflush(stdout);
        return;
    }
    printf("round %3u (index %u) %-5s %u/%u included  joined [%s]  dropped [%s]  sent %.1f KiB  recv %.1f KiB  "
           "train %.0f ms  total %.0f ms  loss %.6g\n",
           r->round, r->index, r->status ? "RETRY" : "ok", r->included, r->selected, r->joined, r->dropped,
           r->bytes_sent / 1024.0, r->bytes_recv / 1024.0, r->stage_ms[2] + r->stage_ms[3] + r->stage_ms[4] +
           r->stage_ms[5] + r->stage_ms[6], r->total_ms, r->loss);
    fflush(stdout);
}

int fp_cmd_sim(int argc, char **argv)
{
    const char *cfgp = fp_cli_opt(argc, argv, "--config");
    if (fp_cli_flag(argc, argv, "--help") || !cfgp) {
        fprintf(cfgp ? stdout : stderr, "usage: fp sim --config sim.json [--json]\n");
        return cfgp ? 0 : 2;
    }
    int json = fp_cli_flag(argc, argv, "--json");
    void *txt = NULL;
    size_t n = 0;
    int rc = fp_read_file(&txt, &n, cfgp, 1 << 20);
    if (rc)
        return fp_cli_fail("sim", rc);
    char base[512];
    snprintf(base, sizeof base, "%s", cfgp);
    char *sl = strrchr(base, '/');
    if (sl)
        *sl = '\0';
    else
        snprintf(base, sizeof base, ".");
    fp_fed_sim_result res;
    rc = fp_fed_sim_run(&res, txt, n, base, report, &json);
    free(txt);
    if (!rc || res.global) {
        if (json) {
            cJSON *o = cJSON_CreateObject(), *a;
            cJSON_AddBoolToObject(o, "summary", 1);
            cJSON_AddNumberToObject(o, "completed", res.completed);
            cJSON_AddNumberToObject(o, "dim", (double)res.dim);
            if (isfinite(res.max_err))
                cJSON_AddNumberToObject(o, "max_err_vs_weighted_mean", res.max_err);
            cJSON_AddNumberToObject(o, "wall_s", round(res.wall_s * 1000) / 1000);
            a = cJSON_AddArrayToObject(o, "clients");
            for (size_t i = 0; i < res.n_clients; i++) {
                const fp_fed_sim_client *c = &res.clients[i];
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "name", c->name);
                cJSON_AddNumberToObject(e, "rounds", c->res.rounds);
                cJSON_AddNumberToObject(e, "rank", c->res.rank);
                cJSON_AddNumberToObject(e, "bytes_sent", (double)c->res.bytes_sent);
                cJSON_AddNumberToObject(e, "bytes_recv", (double)c->res.bytes_recv);
                cJSON_AddNumberToObject(e, "rc", c->rc);
                cJSON_AddItemToArray(a, e);
            }
            cJSON_AddNumberToObject(o, "rc", rc);
            char *t = cJSON_PrintUnformatted(o);
            if (t)
                printf("%s\n", t);
            free(t);
            cJSON_Delete(o);
        } else {
            printf("sim: %u rounds complete in %.1f s", res.completed, res.wall_s);
            if (isfinite(res.max_err))
                printf("; max |global - weighted mean of targets| = %.3g", res.max_err);
            printf("\n");
            for (size_t i = 0; i < res.n_clients; i++)
                printf("  %-16s rank %3d  %u rounds  sent %.1f KiB  recv %.1f KiB\n", res.clients[i].name,
                       res.clients[i].res.rank, res.clients[i].res.rounds, res.clients[i].res.bytes_sent / 1024.0,
                       res.clients[i].res.bytes_recv / 1024.0);
        }
    }
    free(res.global);
    free(res.clients);
    free(res.expected);
    return rc ? fp_cli_fail("sim", rc) : 0;
}
