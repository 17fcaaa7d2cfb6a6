/* Options shared by the fp commands that load a model (cli_model.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"
#include "fedproxy/error.h"
#include "fedproxy/fileio.h"
#include "fedproxy/tokenizer.h"
#include "fedproxy/train.h"

int fp_cli_read_tokens(const char *cmd, int argc, char **argv, const char *model_dir, int32_t **ids, int64_t *n)
{
    const char *tokens = fp_cli_opt(argc, argv, "--tokens"), *text = fp_cli_opt(argc, argv, "--text");
    if (!!tokens == !!text) {
        fprintf(stderr, "fp %s: give exactly one of --tokens FILE or --text FILE\n", cmd);
        return 2;
    }
    if (tokens)
        return fp_tokens_read(ids, n, tokens) ? fp_cli_fail(cmd, FP_EFORMAT) : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    fp_tokenizer *tk = NULL;
    int rc = fp_tokenizer_load(&tk, path);
    if (rc)
        return fp_cli_fail(cmd, rc);
    void *data = NULL;
    size_t len = 0;
    rc = fp_read_file(&data, &len, text, (size_t)1 << 32);
    size_t cnt = 0;
    if (!rc)
        rc = fp_tokenizer_encode(ids, &cnt, tk, data, len, 0);
    free(data);
    fp_tokenizer_free(tk);
    if (rc)
        return fp_cli_fail(cmd, rc);
    *n = (int64_t)cnt;
    return 0;
}

int fp_cli_base_dtype(const char *cmd, int argc, char **argv, fp_dtype *out)
{
    const char *v = fp_cli_opt(argc, argv, "--base-dtype");
    *out = FP_F32;
    if (!v || !strcmp(v, "f32"))
        return 0;
    if (!strcmp(v, "f16"))
        *out = FP_F16;
    else if (!strcmp(v, "bf16"))
        *out = FP_BF16;
    else {
        fprintf(stderr, "fp %s: --base-dtype is f32, f16 or bf16, not '%s'\n", cmd, v);
        return 2;
    }
    return 0;
}
