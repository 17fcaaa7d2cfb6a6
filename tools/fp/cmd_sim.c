/* fp sim --config sim.json [--json]: server + N clients in one process (format in fed.h). */
#include <stdio.h>
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
    if (r->dp_on)
        printf("          dp: q %.3g  noise multiplier %.4g  epsilon this round %.4g  total %.4g at delta %g\n",
               r->dp_q, r->dp_z, r->dp_round_epsilon, r->dp_epsilon, r->dp_delta);
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
        if (json)
            printf("{\"summary\":true,\"completed\":%u,\"dim\":%zu,\"max_err_vs_weighted_mean\":%.9g,\"rc\":%d}\n",
                   res.completed, res.dim, res.max_err, rc);
        else
            printf("sim: %u rounds complete; max |global - weighted mean of targets| = %.3g\n", res.completed,
                   res.max_err);
    }
    free(res.global);
    free(res.expected);
    return rc ? fp_cli_fail("sim", rc) : 0;
}
