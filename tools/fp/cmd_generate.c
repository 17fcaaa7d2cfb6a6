/* fp generate: text generation with a KV cache from a Hugging Face model
 * directory (optionally with a PEFT LoRA adapter): the prompt is tokenized
 * with DIR/tokenizer.json (or given as ids), prefilled in one chunk, then
 * decoded one token at a time, greedy or sampled. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_model.h"
#include "fedproxy/error.h"
#include "fedproxy/model.h"
#include "fedproxy/model_config.h"
#include "fedproxy/runtime.h"
#include "fedproxy/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fp generate --model DIR [--adapter DIR] (--prompt TEXT | --prompt-ids \"ID ...\")\n"
               "                   [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
               "                   [--base-dtype f32|f16|bf16] [--no-eos] [--json]\n"
               "Greedy unless --temperature > 0 (then top-k, then top-p sampling, seeded).\n"
               "Stops at the config's eos_token_id unless --no-eos. Prints the completion text\n"
               "(ids with --prompt-ids and no tokenizer.json); --json prints ids, text and timings.\n");
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_ids(int32_t **out, int64_t *n, const char *s)
{
    int64_t cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    while (v && *s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX) {
            fprintf(stderr, "fp generate: '%.20s' is not a token id\n", s);
            free(v);
            return 2;
        }
        if (k == cap) {
            int32_t *w = realloc(v, (size_t)(cap *= 2) * sizeof *w);
            if (!w) {
                free(v);
                v = NULL;
                break;
            }
            v = w;
        }
        v[k++] = (int32_t)x;
        s = end;
    }
    if (!v) {
        fprintf(stderr, "fp generate: out of memory\n");
        return 1;
    }
    *out = v;
    *n = k;
    return 0;
}

int fp_cmd_generate(int argc, char **argv)
{
    const char *model_dir = fp_cli_opt(argc, argv, "--model"), *prompt = fp_cli_opt(argc, argv, "--prompt");
    const char *prompt_ids = fp_cli_opt(argc, argv, "--prompt-ids"), *adapter = fp_cli_opt(argc, argv, "--adapter");
    if (fp_cli_flag(argc, argv, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!model_dir || !!prompt == !!prompt_ids) {
        usage(stderr);
        return 2;
    }
    const char *v;
    int64_t max_new = (v = fp_cli_opt(argc, argv, "--max-tokens")) ? strtoll(v, NULL, 10) : 64;
    fp_sampler sp = {0};
    sp.top_p = 1.0f;
    if ((v = fp_cli_opt(argc, argv, "--temperature")))
        sp.temperature = strtof(v, NULL);
    if ((v = fp_cli_opt(argc, argv, "--top-k")))
        sp.top_k = atoi(v);
    if ((v = fp_cli_opt(argc, argv, "--top-p")))
        sp.top_p = strtof(v, NULL);
    if ((v = fp_cli_opt(argc, argv, "--seed")))
        sp.seed = strtoull(v, NULL, 10);
    fp_dtype wdt;
    if (fp_cli_base_dtype("generate", argc, argv, &wdt))
        return 2;
    if (max_new < 0 || sp.top_k < 0 || !(sp.temperature >= 0)) {
        fprintf(stderr, "fp generate: --max-tokens, --top-k and --temperature must be >= 0\n");
        return 2;
    }
    int json = fp_cli_flag(argc, argv, "--json");

    char path[4096];
    fp_model_config mc;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    int err = fp_model_config_load(&mc, path);
    if (err)
        return fp_cli_fail("generate", err);
    fp_tokenizer *tk = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    int32_t *ids = NULL;
    int64_t nids = 0;
    if (prompt) {
        if ((err = fp_tokenizer_load(&tk, path)))
            return fp_cli_fail("generate", err);
        size_t cnt = 0;
        if ((err = fp_tokenizer_encode(&ids, &cnt, tk, prompt, strlen(prompt), FP_TOK_ADD_SPECIAL))) {
            fp_tokenizer_free(tk);
            return fp_cli_fail("generate", err);
        }
        nids = (int64_t)cnt;
    } else {
        int rc = parse_ids(&ids, &nids, prompt_ids);
        if (rc)
            return rc;
        FILE *f = fopen(path, "rb");
        if (f) { /* decode the output when a tokenizer is there */
            fclose(f);
            if (fp_tokenizer_load(&tk, path))
                tk = NULL;
        }
    }
    if (nids < 1) {
        fprintf(stderr, "fp generate: the prompt has no tokens\n");
        free(ids);
        fp_tokenizer_free(tk);
        return 2;
    }
    int32_t eos[FP_MAX_EOS];
    int n_eos = fp_cli_flag(argc, argv, "--no-eos") ? 0 : mc.n_eos;
    for (int i = 0; i < n_eos; i++)
        eos[i] = (int32_t)mc.eos_token_ids[i];

    fp_ctx *ctx = NULL;
    fp_model *m = NULL;
    int32_t *out = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof *out);
    int64_t nout = 0;
    double t0 = 0, t1 = 0;
    err = out ? fp_ctx_create(&ctx, NULL) : fp_cli_fail("generate", FP_ENOMEM);
    if (!err)
        err = fp_model_load_dir_as(&m, ctx, model_dir, wdt);
    if (!err && adapter)
        err = fp_model_load_adapter(m, adapter);
    if (!err) {
        t0 = wall();
        err = fp_model_generate(m, ids, nids, max_new, &sp, eos, n_eos, out, &nout);
        t1 = wall();
    }
    char *text = NULL;
    size_t tlen = 0;
    if (!err && tk)
        err = fp_tokenizer_decode(&text, &tlen, tk, out, (size_t)nout, FP_TOK_SKIP_SPECIAL);
    if (!err) {
        if (json) {
            printf("{\"prompt_tokens\": %lld, \"new_tokens\": %lld, \"ids\": [", (long long)nids, (long long)nout);
            for (int64_t i = 0; i < nout; i++)
                printf("%s%d", i ? ", " : "", out[i]);
            printf("], \"seconds\": %.4f, \"tokens_per_s\": %.3f, \"mode\": \"%s\"", t1 - t0,
                   t1 > t0 ? (double)nout / (t1 - t0) : 0.0, fp_model_generate_mode());
            if (text) {
                printf(", \"text\": \"");
                for (size_t i = 0; i < tlen; i++) {
                    unsigned char ch = (unsigned char)text[i];
                    if (ch == '"' || ch == '\\')
                        printf("\\%c", ch);
                    else if (ch < 0x20)
                        printf("\\u%04x", ch);
                    else
                        putchar(ch);
                }
                printf("\"");
            }
            printf("}\n");
        } else if (text) {
            fwrite(text, 1, tlen, stdout);
            putchar('\n');
        } else {
            for (int64_t i = 0; i < nout; i++)
                printf("%s%d", i ? " " : "", out[i]);
            putchar('\n');
        }
        if (!json)
            fprintf(stderr, "fp generate: %lld prompt + %lld new tokens in %.2f s (%.2f tokens/s)\n",
                    (long long)nids, (long long)nout, t1 - t0, t1 > t0 ? (double)nout / (t1 - t0) : 0.0);
    }
    free(text);
    free(out);
    free(ids);
    fp_tokenizer_free(tk);
    fp_model_free(m);
    fp_ctx_destroy(ctx);
    return err ? (err > 0 ? err : fp_cli_fail("generate", err)) : 0;
}
