/* fp fuse: FedProxy stage 4 — the federated proxy adapter plugged back into
 * the LLM without training, as merged weights or a PEFT adapter for the LLM.
 * Thin over fp_proxy_fuse (proxy.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/error.h"
#include "fedproxy/identity.h"
#include "fedproxy/proxy.h"

static const char USAGE[] =
    "usage: fp fuse --model LLM_DIR --proxy PROXY_DIR --adapter ADAPTER_DIR (--keys SERVER_KEYS_DIR | --server-key HEX)\n"
    "               [--span none|spread] [--spread-scale X] (--merge OUT_DIR | --peft OUT_DIR) [--json]\n"
    "Checks PROXY_DIR/proxy.json (server signature, proxy weights, and that it was made from LLM_DIR),\n"
    "then puts the adapter's proxy layer i on LLM layer map(i) (spread: also on the rest of its span,\n"
    "B scaled by --spread-scale, default 1/span length). --merge writes the LLM with W += (alpha/r) B A;\n"
    "--peft writes a PEFT adapter for the LLM.\n";

int fp_cmd_fuse(int argc, char **argv)
{
    if (fp_cli_flag(argc, argv, "--help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    const char *llm = fp_cli_opt(argc, argv, "--model"), *proxy = fp_cli_opt(argc, argv, "--proxy");
    const char *adapter = fp_cli_opt(argc, argv, "--adapter"), *keys = fp_cli_opt(argc, argv, "--keys");
    const char *hex = fp_cli_opt(argc, argv, "--server-key"), *merge = fp_cli_opt(argc, argv, "--merge");
    const char *peft = fp_cli_opt(argc, argv, "--peft"), *v;
    if (!llm || !proxy || !adapter || (!keys == !hex) || (!merge == !peft)) {
        fputs(USAGE, stderr);
        fprintf(stderr, "fp fuse: --model, --proxy, --adapter, one of --keys/--server-key and one of "
                        "--merge/--peft are required\n");
        return 2;
    }
    fp_fuse_opts o = {"none", 0.0f};
    if ((v = fp_cli_opt(argc, argv, "--span")))
        o.span = v;
    if ((v = fp_cli_opt(argc, argv, "--spread-scale"))) {
        char *end = NULL;
        errno = 0;
        o.spread_scale = strtof(v, &end);
        if (!*v || *end || errno || !(o.spread_scale > 0) || !isfinite(o.spread_scale)) {
            fprintf(stderr, "fp fuse: --spread-scale '%s' is not a positive number\n", v);
            return 2;
        }
    }
    unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES];
    int err = keys ? fp_identity_load_public(pk, keys) : fp_hex_decode(pk, sizeof pk, hex, strlen(hex));
    if (err)
        return fp_cli_fail("fuse", err);
    err = fp_proxy_fuse(llm, proxy, adapter, pk, &o, merge, peft);
    if (err)
        return fp_cli_fail("fuse", err);
    if (fp_cli_flag(argc, argv, "--json"))
        printf("{\"%s\": \"%s\", \"span\": \"%s\"}\n", merge ? "merge" : "peft", merge ? merge : peft, o.span);
    else
        printf("fused %s into %s: %s %s\n", adapter, llm, merge ? "merged LLM in" : "PEFT adapter in",
               merge ? merge : peft);
    return 0;
}
