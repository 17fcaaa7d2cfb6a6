/* fp compress and fp fuse as a user runs them (the built binary): compress
 * with distillation (--json result, progress on stderr), LoRA on the proxy
 * with fp train, fuse as PEFT and merged, evaluate the merged LLM with fp eval,
 * and the refusals and usage errors. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fedproxy/peft.h"
#include "fedproxy/safetensors.h"
#include "proxy_fixture.h"

static char g_out[1 << 16], g_err[1 << 16];

/* runs `fp ARGS`, capturing stdout and stderr; returns the exit status */
static int fp(const char *root, const char *args)
{
    char cmd[8192], eo[1400], ee[1400];
    snprintf(eo, sizeof eo, "%s/stdout.txt", root);
    snprintf(ee, sizeof ee, "%s/stderr.txt", root);
    snprintf(cmd, sizeof cmd, "FP_VALIDATE=1 %s/tools/fp %s >%s 2>%s", FP_BINARY_DIR, args, eo, ee);
    int st = system(cmd);
    char *o = pfx_read(eo, NULL), *e = pfx_read(ee, NULL);
    snprintf(g_out, sizeof g_out, "%s", o ? o : "");
    snprintf(g_err, sizeof g_err, "%s", e ? e : "");
    free(o);
    free(e);
    CHECKF(!strstr(g_err, "validation"), "fp %s: validation message: %s", args, g_err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    fp_test_seed(11);
    fp_ctx *ctx = fp_test_ctx(NULL);
    pfx f;
    pfx_init(&f, "proxy_cli", 8, ctx);
    fp_test_ctx_done(ctx);
    char a[8192];
    const char *r = f.root;

    CHECK(fp(r, "compress --help") == 0 && strstr(g_out, "usage: fp compress"));
    CHECK(fp(r, "fuse --help") == 0 && strstr(g_out, "usage: fp fuse"));
    CHECK(fp(r, "compress --model x") == 2 && strstr(g_err, "required"));
    snprintf(a, sizeof a, "compress --model %s --calib %s --keys %s --out %s/p --middle two", f.llm, f.calib, f.keys, r);
    CHECK(fp(r, a) == 2 && strstr(g_err, "--middle"));

    /* compress with distillation: one JSON object on stdout */
    snprintf(a, sizeof a,
             "compress --model %s --calib %s --keys %s --out %s/proxy --middle 2 --seq 16 --batch 2 "
             "--distill-steps 3 --distill-data %s --kd-weight 2 --temperature 2 --lr 1e-3 --json",
             f.llm, f.calib, f.keys, r, f.calib);
    CHECKF(fp(r, a) == 0, "fp compress failed: %s", g_err);
    cJSON *j = cJSON_Parse(g_out);
    CHECKF(j != NULL, "fp compress --json printed: %s", g_out);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "proxy_layers")) == 6);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "distill_steps")) == 3);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "scores")) == 8);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "select")), "influence"));
    cJSON_Delete(j);
    /* without --json: progress on stderr, a summary on stdout */
    snprintf(a, sizeof a,
             "compress --model %s --calib %s --keys %s --out %s/proxy2 --select uniform --middle 2 --seq 16 "
             "--batch 2 --distill-steps 2 --distill-data %s", f.llm, f.calib, f.keys, r, f.calib);
    CHECKF(fp(r, a) == 0, "fp compress failed: %s", g_err);
    CHECKF(strstr(g_err, "distill step 2/2") && strstr(g_err, "tok/s") && strstr(g_err, "ETA"), "stderr: %s", g_err);
    CHECK(strstr(g_out, "uniform selection") != NULL);

    /* clients' side, stood in for by fp train: LoRA on the proxy */
    snprintf(a, sizeof a, "train --model %s/proxy --text %s --lora-rank 2 --steps 3 --lr 1e-2 --seq 16 --out %s/adapter",
             r, f.calib, r);
    CHECKF(fp(r, a) == 0, "fp train failed: %s", g_err);

    /* fuse: PEFT with --keys, merged with --server-key */
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter --keys %s --peft %s/llm_peft --json",
             f.llm, r, r, f.keys, r);
    CHECKF(fp(r, a) == 0, "fp fuse failed: %s", g_err);
    j = cJSON_Parse(g_out);
    CHECKF(j && cJSON_GetObjectItem(j, "peft"), "fp fuse --json printed: %s", g_out);
    cJSON_Delete(j);
    char hex[65];
    fp_hex_encode(hex, sizeof hex, f.server.pk, 32);
    snprintf(a, sizeof a,
             "fuse --model %s --proxy %s/proxy --adapter %s/adapter --server-key %s --span spread --merge %s/llm_merged",
             f.llm, r, r, hex, r);
    CHECKF(fp(r, a) == 0, "fp fuse failed: %s", g_err);
    snprintf(a, sizeof a, "eval --model %s/llm_merged --text %s --seq 16 --json", r, f.calib);
    CHECKF(fp(r, a) == 0 && strstr(g_out, "perplexity"), "fp eval of the merged LLM: %s %s", g_out, g_err);
    /* --merge-dtype: bf16 over the same (previous merge) directory gives BF16 weights; bad values refused */
    snprintf(a, sizeof a,
             "fuse --model %s --proxy %s/proxy --adapter %s/adapter --server-key %s --merge %s/llm_merged "
             "--merge-dtype bf16 --json", f.llm, r, r, hex, r);
    CHECKF(fp(r, a) == 0 && strstr(g_out, "\"merge_dtype\":\"BF16\""), "fp fuse --merge-dtype bf16: %s %s", g_out,
           g_err);
    {
        char d[1400];
        snprintf(d, sizeof d, "%s/llm_merged", r);
        fp_st_file *st = NULL;
        CHECK_OK(fp_st_open_dir(&st, d));
        int all16 = st != NULL;
        for (size_t i = 0; st && i < fp_st_count(st); i++)
            all16 &= fp_st_at(st, i)->dtype == FP_ST_BF16;
        CHECK(all16);
        fp_st_close(st);
    }
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter --server-key %s --merge %s/z "
             "--merge-dtype f8", f.llm, r, r, hex, r);
    CHECK(fp(r, a) == 2 && strstr(g_err, "keep, f32, bf16 or f16"));
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter --server-key %s --peft %s/z "
             "--merge-dtype f32", f.llm, r, r, hex, r);
    CHECK(fp(r, a) == 2 && strstr(g_err, "only with --merge"));
    snprintf(a, sizeof a, "eval --model %s --adapter %s/llm_peft --text %s --seq 16 --json", f.llm, r, f.calib);
    CHECKF(fp(r, a) == 0 && strstr(g_out, "perplexity"), "fp eval with the LLM adapter: %s %s", g_out, g_err);

    /* Offsite-Tuning's plug-in: LoRA on the proxy's first 2 and last 2 layers
     * only (fp train --lora-layers) lands on the LLM's first 2 and last 2 */
    snprintf(a, sizeof a, "train --model %s/proxy --text %s --lora-rank 2 --lora-layers 0,1,4,5 --steps 2 --seq 16 "
             "--out %s/adapter_ends", r, f.calib, r);
    CHECKF(fp(r, a) == 0, "fp train --lora-layers failed: %s", g_err);
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter_ends --keys %s --peft %s/llm_ends",
             f.llm, r, r, f.keys, r);
    CHECKF(fp(r, a) == 0, "fp fuse failed: %s", g_err);
    {
        char d[1400];
        snprintf(d, sizeof d, "%s/llm_ends", r);
        fp_lora_adapter la;
        CHECK_OK(fp_lora_adapter_load(&la, d));
        int layers_ok = la.n == 4 * 7;
        for (size_t k = 0; k < la.n; k++)
            layers_ok &= la.pairs[k].layer == 0 || la.pairs[k].layer == 1 || la.pairs[k].layer == 6 ||
                         la.pairs[k].layer == 7;
        CHECKF(layers_ok, "the ends adapter has %zu pairs, not 28 on layers 0, 1, 6, 7", la.n);
        fp_lora_adapter_free(&la);
    }
    snprintf(a, sizeof a, "train --model %s/proxy --text %s --lora-rank 2 --lora-layers 0,9 --steps 1 --out %s/bad",
             r, f.calib, r);
    CHECK(fp(r, a) != 0 && strstr(g_err, "layer 9"));

    /* refusals: another key; a tampered proxy; both outputs */
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter --keys %s --peft %s/x", f.llm, r, r,
             f.keys2, r);
    CHECK(fp(r, a) == 1 && strstr(g_err, "not the expected server key"));
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter --keys %s --peft %s/x --merge %s/y",
             f.llm, r, r, f.keys, r, r);
    CHECK(fp(r, a) == 2);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sed -i 's/\"steps\":\\t3/\"steps\":\\t30/' %s/proxy/proxy.json", r);
    CHECK(system(cmd) == 0);
    snprintf(a, sizeof a, "fuse --model %s --proxy %s/proxy --adapter %s/adapter --keys %s --peft %s/x", f.llm, r, r,
             f.keys, r);
    CHECKF(fp(r, a) == 1 && strstr(g_err, "signature"), "tampered proxy.json: %s", g_err);
    pfx_done(&f);
    return fp_test_report("proxy_cli");
}
