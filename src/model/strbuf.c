#include "model/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fp_sb_init(fp_sb *b) { memset(b, 0, sizeof *b); }

void fp_sb_free(fp_sb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static int reserve(fp_sb *b, size_t extra)
{
    if (b->failed)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra + 1)
        nc *= 2;
    char *q = realloc(b->p, nc);
    if (!q) {
        b->failed = 1;
        return 0;
    }
    b->p = q;
    b->cap = nc;
    return 1;
}

void fp_sb_add(fp_sb *b, const void *data, size_t n)
{
    if (!reserve(b, n))
        return;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void fp_sb_puts(fp_sb *b, const char *s) { fp_sb_add(b, s, strlen(s)); }

void fp_sb_printf(fp_sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void fp_sb_json_str(fp_sb *b, const char *s, size_t n)
{
    fp_sb_add(b, "\"", 1);
    size_t run = 0; /* bytes copied in bulk between escapes */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        fp_sb_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': fp_sb_add(b, "\\\"", 2); break;
        case '\\': fp_sb_add(b, "\\\\", 2); break;
        case '\n': fp_sb_add(b, "\\n", 2); break;
        case '\r': fp_sb_add(b, "\\r", 2); break;
        case '\t': fp_sb_add(b, "\\t", 2); break;
        default: fp_sb_printf(b, "\\u%04x", c); break;
        }
    }
    fp_sb_add(b, s + run, n - run);
    fp_sb_add(b, "\"", 1);
}

int fp_sb_finish(fp_sb *b)
{
    if (!b->failed) {
        if (!b->p)
            fp_sb_add(b, "", 0);
        if (!b->failed)
            return 0;
    }
    fp_sb_free(b);
    return fp_seterr(FP_ENOMEM, "out of memory building a text buffer");
}
