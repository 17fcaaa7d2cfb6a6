/* fp eval: mean next-token cross-entropy, perplexity and accuracy of a model
 * (optionally with a LoRA adapter) on a token-id or text file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"
#include "fedproxy/error.h"
#include "fedproxy/model.h"
#include "fedproxy/runtime.h"
#include "fedproxy/train.h"

int fp_cmd_eval(int argc, char **argv)
{
    const char *model_dir = fp_cli_opt(argc, argv, "--model");
    if (!model_dir || fp_cli_flag(argc, argv, "--help")) {
        fprintf(stderr, "usage: fp eval --model DIR [--adapter DIR] (--text FILE | --tokens FILE) [--seq N] [--base-dtype f32|f16|bf16] [--json]\n");
        return model_dir ? 0 : 2;
    }
    const char *adapter = fp_cli_opt(argc, argv, "--adapter"), *v;
    int64_t seq = (v = fp_cli_opt(argc, argv, "--seq")) ? strtoll(v, NULL, 10) : 0;
    fp_dtype wdt;
    if (fp_cli_base_dtype("eval", argc, argv, &wdt))
        return 2;
    int32_t *tok = NULL;
    int64_t ntok = 0;
    int rc = fp_cli_read_tokens("eval", argc, argv, model_dir, &tok, &ntok);
    if (rc)
        return rc;
    fp_ctx *ctx = NULL;
    fp_model *m = NULL;
    fp_eval_result r;
    int err = fp_ctx_create(&ctx, NULL);
    if (!err)
        err = fp_model_load_dir_as(&m, ctx, model_dir, wdt);
    if (!err && adapter)
        err = fp_model_load_adapter(m, adapter);
    if (!err)
        err = fp_model_eval_tokens(m, tok, ntok, seq, &r);
    if (!err) {
        if (fp_cli_flag(argc, argv, "--json"))
            printf("{\"loss\": %.7g, \"perplexity\": %.7g, \"accuracy\": %.6f, \"tokens\": %lld}\n", r.loss, r.ppl,
                   r.accuracy, (long long)r.tokens);
        else
            printf("loss %.5f  perplexity %.3f  accuracy %.4f  (%lld tokens)\n", r.loss, r.ppl, r.accuracy,
                   (long long)r.tokens);
    }
    fp_model_free(m);
    fp_ctx_destroy(ctx);
    free(tok);
    return err ? fp_cli_fail("eval", err) : 0;
}
