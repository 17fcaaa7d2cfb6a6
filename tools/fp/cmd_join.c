/* fp join: a federation client. With text or token-id --data it fine-tunes
 * the server's proxy (the engine trainer, fed.h: LoRA at the assigned rank on
 * the chosen device); with a stand-in JSON data file ({"samples": N,
 * "target": [...]} or {"samples": N, "dim": D, "target_seed": S}) it runs the
 * stand-in trainer, for tests and protocol checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/fed.h"
#include "fedproxy/runtime.h"

static int device_of(fp_fed_device *dev, const char *d)
{
    if (!d || !strcmp(d, "cpu"))
        return fp_fed_device_cpu(dev, getenv("FP_PROFILE") ? getenv("FP_PROFILE") : "");
    fp_ctx_opts o;
    memset(&o, 0, sizeof o);
    o.device = d;
    o.validate = 0;
    fp_ctx *ctx = NULL;
    int rc = fp_ctx_create(&ctx, &o);
    if (rc) {
        fprintf(stderr, "fp join: device %s unavailable (%s); registering as a CPU client\n", d, fp_errmsg());
        return fp_fed_device_cpu(dev, "");
    }
    rc = fp_fed_device_from_profile(dev, fp_ctx_profile(ctx), fp_ctx_measured(ctx));
    fp_ctx_destroy(ctx);
    return rc;
}

/* The stand-in's data is a JSON object; training data is text or token ids. */
static int is_standin(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; /* the engine trainer reports the missing file */
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\t' || c == '\r')
        ;
    fclose(f);
    return c == '{';
}

int fp_cmd_join(int argc, char **argv)
{
    const char *server = fp_cli_opt(argc, argv, "--server"), *skey = fp_cli_opt(argc, argv, "--server-key"),
               *keys = fp_cli_opt(argc, argv, "--keys"), *data = fp_cli_opt(argc, argv, "--data");
    if (fp_cli_flag(argc, argv, "--help") || !server || !skey || !keys || !data) {
        int h = fp_cli_flag(argc, argv, "--help");
        fprintf(h ? stdout : stderr,
                "usage: fp join --server tcp://HOST:PORT --server-key HEXPUB --keys DIR --data FILE\n"
                "               [--eval FILE] [--device D|cpu] [--name NAME] [--proxy-out DIR] [--json]\n"
                "  --server-key  the server's identity.pub (hex, or a path to the file)\n"
                "  --data        training text (tokenised with the proxy's tokenizer.json) or token ids;\n"
                "                or the stand-in trainer's JSON: {\"samples\":N,\"target\":[...]} or\n"
                "                {\"samples\":N,\"dim\":D,\"target_seed\":S,\"target_scale\":X}\n"
                "  --eval        held-out text/ids for the per-round federated evaluation (default: --data)\n"
                "  --proxy-out   where the verified proxy is unpacked (default KEYS_DIR/proxy)\n"
                "  --device      Vulkan device (index, name, vendor) or cpu (default: the best device;\n"
                "                registers as the host CPU)\n"
                "  --max-steps N this device's budget: at most N local steps per round (reported to the\n"
                "                server, which fednova normalises by; default: the server's steps)\n"
                "  --dp-min-noise Z  train only in rounds with distributed DP whose noise for this\n"
                "                client's own share (sigma / clip) is at least Z; otherwise leave before\n"
                "                training (exit code 1, the reason on stderr). Default 0: follow the server\n"
                "  --quiet       no per-round training line\n"
                "  --slow-ms MS  (testing) sleep before every upload\n");
        return h ? 0 : 2;
    }
    fp_fed_client_config cfg;
    fp_fed_client_config_default(&cfg);
    const char *dmn = fp_cli_opt(argc, argv, "--dp-min-noise");
    if (dmn) {
        char *end = NULL;
        double v = strtod(dmn, &end);
        if (!*dmn || *end || !(v >= 0) || !isfinite(v)) {
            fprintf(stderr, "fp join: --dp-min-noise '%s' is not a finite number >= 0\n", dmn);
            return 2;
        }
        cfg.dp_min_noise = v;
    }
    snprintf(cfg.endpoint, sizeof cfg.endpoint, "%s", server);
    int rc = fp_hex_decode(cfg.server_pk, sizeof cfg.server_pk, skey, strlen(skey));
    if (rc) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s", skey);
        char *sl = strrchr(dir, '/');
        if (sl && !strcmp(sl, "/identity.pub"))
            *sl = '\0';
        rc = fp_identity_load_public(cfg.server_pk, dir);
    }
    if (rc)
        return fp_cli_fail("join", rc);
    fp_identity id;
    rc = fp_identity_load(&id, keys);
    if (rc)
        return fp_cli_fail("join", rc);
    fp_standin_data d;
    memset(&d, 0, sizeof d);
    fp_fed_trainer tr;
    memset(&tr, 0, sizeof tr);
    const char *po = fp_cli_opt(argc, argv, "--proxy-out"), *dev = fp_cli_opt(argc, argv, "--device");
    char podef[FP_FED_PATH_MAX - 16];
    snprintf(podef, sizeof podef, "%.480s/proxy", keys);
    int engine = !is_standin(data);
    uint64_t samples = 0;
    const char *ms = fp_cli_opt(argc, argv, "--max-steps");
    char *msend = NULL;
    long max_steps = ms ? strtol(ms, &msend, 10) : 0;
    if (ms && (!*ms || *msend || max_steps < 1 || max_steps > 1000000)) {
        fp_identity_wipe(&id);
        fprintf(stderr, "fp join: --max-steps '%s' is not an integer in 1..1000000\n", ms);
        return 2;
    }
    if (engine) {
        fp_engine_trainer_opts eo = {po ? po : podef, data, fp_cli_opt(argc, argv, "--eval"),
                                     dev && strcmp(dev, "cpu") ? dev : NULL, NULL,
                                     !fp_cli_flag(argc, argv, "--quiet"), (int)max_steps};
        rc = fp_engine_data_samples(&samples, data);
        if (!rc)
            rc = fp_engine_trainer(&tr, &eo);
        if (!po)
            po = podef;
    } else {
        rc = fp_standin_data_load(&d, data);
        if (!rc && max_steps > 0)
            d.max_steps = (int)max_steps;
        samples = d.samples;
        if (!rc)
            rc = fp_standin_trainer(&tr, &d);
    }
    if (!rc)
        rc = device_of(&cfg.device, dev);
    if (rc) {
        fp_identity_wipe(&id);
        fp_standin_data_free(&d);
        return fp_cli_fail("join", rc);
    }
    const char *nm = fp_cli_opt(argc, argv, "--name");
    if (nm)
        snprintf(cfg.name, sizeof cfg.name, "%.60s", nm);
    else
        fp_hex_encode(cfg.name, 9, id.pk, 4);
    if (po)
        snprintf(cfg.proxy_out, sizeof cfg.proxy_out, "%s", po);
    const char *slow = fp_cli_opt(argc, argv, "--slow-ms"); /* fault injection (tests) */
    if (slow)
        cfg.fault.slow_ms = atoi(slow);
    cfg.id = &id;
    cfg.samples = samples;
    cfg.trainer = tr;
    fp_fed_client_result res;
    rc = fp_fed_client_run(&cfg, &res);
    tr.destroy(tr.ctx);
    fp_standin_data_free(&d);
    fp_identity_wipe(&id);
    if (fp_cli_flag(argc, argv, "--json"))
        printf("{\"rounds\":%u,\"last_index\":%u,\"bytes_sent\":%llu,\"bytes_recv\":%llu,\"proxy\":%s,"
               "\"rank\":%d,\"batch\":%d,\"seq\":%d,\"rc\":%d}\n",
               res.rounds, res.last_index, (unsigned long long)res.bytes_sent, (unsigned long long)res.bytes_recv,
               res.got_proxy ? "true" : "false", res.rank, res.batch, res.seq, rc);
    if (rc)
        return fp_cli_fail("join", rc);
    fprintf(stderr, "fp join: session over after %u rounds\n", res.rounds);
    return 0;
}
