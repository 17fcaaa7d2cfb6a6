/* fp fuse: FedProxy stage 4 — the federated proxy adapter plugged back into
 * the LLM without training, as merged weights or a PEFT adapter for the LLM.
 * Thin over fp_proxy_fuse (proxy.h). */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/error.h"
#include "fedproxy/identity.h"
#include "fedproxy/proxy.h"
#include "fedproxy/safetensors.h"

static const char USAGE[] =
    "usage: fp fuse --model LLM_DIR --proxy PROXY_DIR --adapter ADAPTER_DIR (--keys SERVER_KEYS_DIR | --server-key HEX)\n"
    "               [--span none|spread] [--spread-scale X] (--merge OUT_DIR [--merge-dtype keep|f32|bf16|f16]\n"
    "               | --peft OUT_DIR) [--json]\n"
    "Checks PROXY_DIR/proxy.json (server signature, proxy weights, and that it was made from LLM_DIR),\n"
    "then puts the adapter's proxy layer i on LLM layer map(i) (spread: also on the rest of its span,\n"
    "B scaled by --spread-scale, default 1/span length). --merge writes the LLM with W += (alpha/r) B A;\n"
    "--peft writes a PEFT adapter for the LLM.\n"
    "--merge keeps the LLM's sharding and, by default (keep), each tensor's dtype: adapted weights are\n"
    "merged in double and rounded to nearest even (a bf16 LLM stays bf16, as PEFT's merge_and_unload does,\n"
    "so deltas below ~2^-9 of a weight round away); f32|bf16|f16 write every floating tensor in that dtype\n"
    "(f32: no adapter precision lost, twice a bf16 LLM's size). OUT_DIR is replaced whole only if it is\n"
    "empty or a previous merge output; it appears only when complete.\n";

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
    fp_fuse_opts o = {"none", 0.0f, 0};
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
    if ((v = fp_cli_opt(argc, argv, "--merge-dtype"))) {
        static const struct { const char *name; int dtype; } dt[] = {
            {"keep", 0}, {"f32", FP_ST_F32}, {"bf16", FP_ST_BF16}, {"f16", FP_ST_F16}};
        size_t k = 0;
        while (k < 4 && strcmp(v, dt[k].name))
            k++;
        if (k == 4 || !merge) {
            fprintf(stderr, "fp fuse: --merge-dtype '%s': %s\n", v,
                    k == 4 ? "expected keep, f32, bf16 or f16" : "only with --merge");
            return 2;
        }
        o.merge_dtype = dt[k].dtype;
    }
    unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES];
    int err = keys ? fp_identity_load_public(pk, keys) : fp_hex_decode(pk, sizeof pk, hex, strlen(hex));
    if (err)
        return fp_cli_fail("fuse", err);
    err = fp_proxy_fuse(llm, proxy, adapter, pk, &o, merge, peft);
    if (err)
        return fp_cli_fail("fuse", err);
    if (fp_cli_flag(argc, argv, "--json")) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, merge ? "merge" : "peft", merge ? merge : peft);
        cJSON_AddStringToObject(j, "span", o.span);
        if (merge)
            cJSON_AddStringToObject(j, "merge_dtype", o.merge_dtype ? fp_st_dtype_name(o.merge_dtype) : "keep");
        char *text = cJSON_PrintUnformatted(j);
        printf("%s\n", text ? text : "{}");
        free(text);
        cJSON_Delete(j);
    }
    else
        printf("fused %s into %s: %s %s\n", adapter, llm, merge ? "merged LLM in" : "PEFT adapter in",
               merge ? merge : peft);
    return 0;
}
