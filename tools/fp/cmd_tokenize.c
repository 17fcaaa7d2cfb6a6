/* fp tokenize: text -> token ids with a tokenizer.json, or ids -> text (--decode). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/error.h"
#include "fedproxy/fileio.h"
#include "fedproxy/tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: fp tokenize --tokenizer FILE (--text STRING | --file F) [--add-special]\n"
               "       fp tokenize --tokenizer FILE --decode (--text \"IDS\" | --file F) "
               "[--skip-special]\n"
               "Prints the ids space-separated, or with --decode the text of the given ids\n"
               "(separated by spaces, commas or newlines).\n");
}

static int print_decoded(const fp_tokenizer *t, const char *in, unsigned flags)
{
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = in;
    while (ids && *p) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "fp tokenize: '%.20s' is not a token id\n", p);
            free(ids);
            return 2;
        }
        if (n == cap) {
            int32_t *q = realloc(ids, 2 * cap * sizeof *q);
            if (!q)
                break;
            ids = q;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (!ids) {
        fprintf(stderr, "fp tokenize: out of memory\n");
        return 1;
    }
    char *text;
    size_t len;
    int rc = fp_tokenizer_decode(&text, &len, t, ids, n, flags);
    free(ids);
    if (rc)
        return fp_cli_fail("tokenize", rc);
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    free(text);
    return 0;
}

int fp_cmd_tokenize(int argc, char **argv)
{
    if (fp_cli_flag(argc, argv, "--help") || fp_cli_flag(argc, argv, "-h")) {
        usage(stdout);
        return 0;
    }
    const char *tok = fp_cli_opt(argc, argv, "--tokenizer");
    const char *text = fp_cli_opt(argc, argv, "--text");
    const char *file = fp_cli_opt(argc, argv, "--file");
    if (!tok || (!text == !file)) {
        usage(stderr);
        return 2;
    }
    void *buf = NULL;
    size_t len = 0;
    int rc;
    if (file) {
        if ((rc = fp_read_file(&buf, &len, file, (size_t)1 << 32)))
            return fp_cli_fail("tokenize", rc);
        text = buf;
    } else {
        len = strlen(text);
    }
    fp_tokenizer *t;
    if ((rc = fp_tokenizer_load(&t, tok))) {
        free(buf);
        return fp_cli_fail("tokenize", rc);
    }
    int ret = 0;
    if (fp_cli_flag(argc, argv, "--decode")) {
        ret = print_decoded(t, text, fp_cli_flag(argc, argv, "--skip-special") ? FP_TOK_SKIP_SPECIAL : 0);
    } else {
        int32_t *ids;
        size_t n;
        rc = fp_tokenizer_encode(&ids, &n, t, text, len,
                                 fp_cli_flag(argc, argv, "--add-special") ? FP_TOK_ADD_SPECIAL : 0);
        if (rc) {
            ret = fp_cli_fail("tokenize", rc);
        } else {
            for (size_t i = 0; i < n; i++)
                printf("%s%d", i ? " " : "", (int)ids[i]);
            printf("\n");
            free(ids);
        }
    }
    fp_tokenizer_free(t);
    free(buf);
    return ret;
}
