/* fp tokenizer train: learn a byte-level BPE tokenizer.json from text files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "fedproxy/error.h"
#include "fedproxy/fileio.h"
#include "fedproxy/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fp tokenizer train --files F1,F2,... --vocab-size N --out DIR\n"
               "                          [--special TOK1,TOK2,...] [--min-frequency N]\n"
               "Writes DIR/tokenizer.json (byte-level BPE, loadable by HF tokenizers).\n"
               "Special tokens default to <|endoftext|>,<|pad|> and take ids 0, 1, ...\n");
}

/* Splits s at commas into a NULL-terminated malloc'd array of malloc'd strings. */
static char **split_commas(const char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap + 1, sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    const char *p = s;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l) {
            v[*n] = strndup(p, l);
            if (!v[*n])
                break;
            (*n)++;
        }
        if (!c)
            break;
        p = c + 1;
    }
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int train(int argc, char **argv)
{
    const char *files = fp_cli_opt(argc, argv, "--files");
    const char *vs = fp_cli_opt(argc, argv, "--vocab-size");
    const char *out = fp_cli_opt(argc, argv, "--out");
    const char *sp = fp_cli_opt(argc, argv, "--special");
    const char *mf = fp_cli_opt(argc, argv, "--min-frequency");
    if (!files || !vs || !out) {
        usage(stderr);
        return 2;
    }
    char *end;
    errno = 0;
    unsigned long long vocab = strtoull(vs, &end, 10);
    unsigned long long minf = mf ? strtoull(mf, &end, 10) : 1;
    if (*end || errno || vocab == 0) {
        fprintf(stderr, "fp tokenizer: bad --vocab-size or --min-frequency\n");
        return 2;
    }
    size_t nf = 0, ns = 0;
    char **fl = split_commas(files, &nf);
    char **sl = split_commas(sp ? sp : "<|endoftext|>,<|pad|>", &ns);
    int ret = 0;
    if (!fl || !sl || !nf) {
        fprintf(stderr, "fp tokenizer: no input files\n");
        ret = 2;
        goto done;
    }
    double bytes = 0;
    for (size_t i = 0; i < nf; i++) {
        struct stat st;
        if (stat(fl[i], &st) == 0)
            bytes += (double)st.st_size;
    }
    fp_bpe_train_opts o = {(size_t)vocab, (const char *const *)sl, ns, minf};
    char *json = NULL;
    double t0 = now_s();
    int rc = fp_bpe_train_files(&json, &o, (const char *const *)fl, nf);
    double dt = now_s() - t0;
    if (!rc)
        rc = fp_mkdirs(out, 0755);
    if (!rc) {
        char path[4200];
        snprintf(path, sizeof path, "%s/tokenizer.json", out);
        rc = fp_write_file_atomic(path, json, strlen(json), 0644);
        if (!rc)
            fprintf(stderr, "fp tokenizer: wrote %s (%.1f MB of text in %.2f s, %.2f MB/s)\n", path,
                    bytes / 1e6, dt, dt > 0 ? bytes / 1e6 / dt : 0.0);
    }
    free(json);
    if (rc)
        ret = fp_cli_fail("tokenizer", rc);
done:
    free_list(fl, nf);
    free_list(sl, ns);
    return ret;
}

int fp_cmd_tokenizer(int argc, char **argv)
{
    if (argc < 2 || fp_cli_flag(argc, argv, "--help") || fp_cli_flag(argc, argv, "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train"))
        return train(argc - 1, argv + 1);
    fprintf(stderr, "fp tokenizer: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
