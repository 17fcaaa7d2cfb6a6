/* fp compress: FedProxy stage 1 — the server compresses its LLM into a signed
 * proxy (block-influence or uniform layer selection, optional distillation).
 * Thin over fp_proxy_compress (proxy.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/error.h"
#include "fedproxy/identity.h"
#include "fedproxy/proxy.h"
#include "fedproxy/runtime.h"

static const char USAGE[] =
    "usage: fp compress --model LLM_DIR --calib FILE --keys SERVER_KEYS_DIR --out PROXY_DIR\n"
    "                   [--keep-first 2] [--keep-last 2] [--middle M] [--select influence|uniform]\n"
    "                   [--calib-tokens 16384] [--distill-steps N --distill-data FILE] [--kd-weight 1]\n"
    "                   [--hidden-weight 1] [--temperature 2] [--lr 1e-4] [--batch 4] [--seq 128] [--seed S]\n"
    "                   [--json]\n"
    "Scores the LLM's layers on the calibration text (block influence, 1 - mean cos(h_in, h_out)),\n"
    "keeps the first/last layers and M middle ones (default: half the layers in all), copies them into\n"
    "a proxy, distils it on --distill-data (LM + kd-weight * KL_T + hidden-weight * hidden MSE) and\n"
    "writes PROXY_DIR (HF model dir + proxy.json signed with the server key). Text files are tokenised\n"
    "with LLM_DIR/tokenizer.json. Progress on stderr; --json prints one result object on stdout.\n";

/* a whole-string number, else -1 with a message */
static int num_opt(int argc, char **argv, const char *name, double lo, double hi, double *out)
{
    const char *v = fp_cli_opt(argc, argv, name);
    if (!v)
        return 0;
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (!*v || *end || errno || !(d >= lo && d <= hi)) {
        fprintf(stderr, "fp compress: %s '%s' is not a number in [%g, %g]\n", name, v, lo, hi);
        return -1;
    }
    *out = d;
    return 1;
}

int fp_cmd_compress(int argc, char **argv)
{
    if (fp_cli_flag(argc, argv, "--help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    const char *llm = fp_cli_opt(argc, argv, "--model"), *out = fp_cli_opt(argc, argv, "--out");
    const char *keys = fp_cli_opt(argc, argv, "--keys");
    fp_compress_opts o;
    fp_compress_opts_default(&o);
    if (fp_cli_opt(argc, argv, "--select"))
        o.select = fp_cli_opt(argc, argv, "--select");
    o.calib = fp_cli_opt(argc, argv, "--calib");
    o.distill_data = fp_cli_opt(argc, argv, "--distill-data");
    if (!llm || !out || !keys || (!o.calib && strcmp(o.select, "uniform"))) {
        fputs(USAGE, stderr);
        fprintf(stderr, "fp compress: --model, --out, --keys%s are required\n",
                strcmp(o.select, "uniform") ? " and --calib" : "");
        return 2;
    }
    double d;
    int bad = 0, r;
#define INT_OPT(name, field, lo, hi)                                                              \
    if ((r = num_opt(argc, argv, name, lo, hi, &d)) < 0 || (r > 0 && d != (double)(int64_t)d)) { \
        if (r > 0)                                                                                \
            fprintf(stderr, "fp compress: %s must be an integer\n", name);                        \
        bad = 1;                                                                                  \
    } else if (r > 0)                                                                             \
        o.field = (__typeof__(o.field))d;
#define FLT_OPT(name, field, lo, hi)                                                              \
    if ((r = num_opt(argc, argv, name, lo, hi, &d)) < 0)                                          \
        bad = 1;                                                                                  \
    else if (r > 0)                                                                               \
        o.field = (float)d;
    INT_OPT("--keep-first", keep_first, 0, 4096)
    INT_OPT("--keep-last", keep_last, 0, 4096)
    INT_OPT("--middle", middle, 0, 4096)
    INT_OPT("--calib-tokens", calib_tokens, 1, 1e9)
    INT_OPT("--distill-steps", distill_steps, 0, 1e9)
    INT_OPT("--batch", batch, 1, 65536)
    INT_OPT("--seq", seq, 1, 1 << 20)
    INT_OPT("--seed", seed, 0, 9.007199254740992e15)
    FLT_OPT("--kd-weight", kd_weight, 0, 1e6)
    FLT_OPT("--hidden-weight", hidden_weight, 0, 1e6)
    FLT_OPT("--temperature", temperature, 1e-3, 1e3)
    FLT_OPT("--lr", lr, 1e-12, 10)
#undef INT_OPT
#undef FLT_OPT
    if (bad)
        return 2;
    int json = fp_cli_flag(argc, argv, "--json");
    o.quiet = json; /* --json: only the result object, on stdout */
    fp_identity id;
    int err = fp_identity_load(&id, keys);
    if (err)
        return fp_cli_fail("compress", err);
    fp_ctx *ctx = NULL;
    err = fp_ctx_create(&ctx, NULL);
    if (!err)
        err = fp_proxy_compress(ctx, llm, out, &o, &id);
    fp_identity_wipe(&id);
    fp_ctx_destroy(ctx);
    fp_proxy_map m;
    if (!err)
        err = fp_proxy_read(&m, out, NULL);
    if (err)
        return fp_cli_fail("compress", err);
    char llm_hex[65], key_hex[65];
    fp_hex_encode(llm_hex, sizeof llm_hex, m.llm_fingerprint, 32);
    fp_hex_encode(key_hex, sizeof key_hex, m.server_key, 32);
    if (json) {
        printf("{\"proxy_dir\": \"%s\", \"select\": \"%s\", \"llm_layers\": %d, \"proxy_layers\": %d, \"layers\": [",
               out, m.select, m.llm_layers, m.proxy_layers);
        for (int i = 0; i < m.proxy_layers; i++)
            printf("%s{\"proxy\": %d, \"llm\": %d, \"span\": [%d, %d]}", i ? ", " : "", i, m.layers[i].llm,
                   m.layers[i].span_first, m.layers[i].span_last);
        printf("], \"scores\": [");
        for (int l = 0; m.has_scores && l < m.llm_layers; l++)
            printf("%s%.9g", l ? ", " : "", m.scores[l]);
        printf("], \"distill_steps\": %d, \"final_loss\": %.9g, \"llm_fingerprint\": \"%s\", \"server_key\": \"%s\"}\n",
               m.distill.steps, m.distill.final_loss, llm_hex, key_hex);
    } else {
        printf("proxy: %s (%d of %d layers, %s selection", out, m.proxy_layers, m.llm_layers, m.select);
        if (m.distill.steps)
            printf(", %d distillation steps, final loss %.4f", m.distill.steps, m.distill.final_loss);
        printf("), signed by %s\n", key_hex);
    }
    return 0;
}
