/* The pre-tokenizer regexes, matched by hand. Each matcher returns where the
 * match starting at char i ends, trying the pattern's alternatives in order
 * exactly as a backtracking regex engine would (leftmost alternative wins). */
#include "model/tokenizer_internal.h"

#include <stdlib.h>

#include "error_internal.h"

static int is_crlf(const tok_char *c) { return c->cp == '\r' || c->cp == '\n'; }

static size_t run_of(const tok_char *c, size_t i, size_t n, int cls)
{
    while (i < n && c[i].cls == cls)
        i++;
    return i;
}

static uint32_t lower_ascii(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }

/* 's|'t|'re|'ve|'m|'ll|'d; returns the chars matched (0: none). */
static size_t contraction(const tok_char *c, size_t i, size_t n, int fold)
{
    if (c[i].cp != '\'' || i + 1 >= n)
        return 0;
    uint32_t a = fold ? lower_ascii(c[i + 1].cp) : c[i + 1].cp;
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (i + 2 >= n)
        return 0;
    uint32_t b = fold ? lower_ascii(c[i + 2].cp) : c[i + 2].cp;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* \s+(?!\S)|\s+ from i (c[i] is whitespace): the run, less its last char when
 * a non-space follows and the run is longer than one (so that char can lead the
 * next word). */
static size_t space_tail(const tok_char *c, size_t i, size_t n)
{
    size_t e = run_of(c, i, n, TC_SPACE);
    if (e < n && e - i >= 2)
        return e - 1;
    return e;
}

static size_t match_gpt2(const tok_char *c, size_t i, size_t n)
{
    size_t k = contraction(c, i, n, 0);
    if (k)
        return i + k;
    size_t s = (c[i].cp == ' ' && i + 1 < n) ? i + 1 : i; /* the optional leading space */
    if (c[s].cls == TC_LETTER)
        return run_of(c, s, n, TC_LETTER);
    if (c[s].cls == TC_NUMBER)
        return run_of(c, s, n, TC_NUMBER);
    if (c[s].cls == TC_OTHER)
        return run_of(c, s, n, TC_OTHER);
    return space_tail(c, i, n);
}

static size_t match_llama3(const tok_char *c, size_t i, size_t n, size_t max_digits)
{
    size_t k = contraction(c, i, n, 1);
    if (k)
        return i + k;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c[i].cls == TC_LETTER)
        return run_of(c, i, n, TC_LETTER);
    if (!is_crlf(&c[i]) && c[i].cls != TC_NUMBER && i + 1 < n && c[i + 1].cls == TC_LETTER)
        return run_of(c, i + 1, n, TC_LETTER);
    /* \p{N}{1,max} */
    if (c[i].cls == TC_NUMBER) {
        size_t e = i;
        while (e < n && e - i < max_digits && c[e].cls == TC_NUMBER)
            e++;
        return e;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t s = (c[i].cp == ' ' && i + 1 < n) ? i + 1 : i;
    if (c[s].cls == TC_OTHER) {
        size_t e = run_of(c, s, n, TC_OTHER);
        while (e < n && is_crlf(&c[e]))
            e++;
        return e;
    }
    /* \s*[\r\n]+ : through the last line break of the whitespace run */
    size_t e = run_of(c, i, n, TC_SPACE);
    for (size_t m = e; m > i; m--)
        if (is_crlf(&c[m - 1]))
            return m;
    return space_tail(c, i, n);
}

int tok_split(int kind, const unsigned char *s, size_t n, tok_piece_fn piece, void *ctx)
{
    if (n == 0)
        return 0;
    if (kind == TS_NONE)
        return piece(ctx, s, n);
    if (n >= UINT32_MAX)
        return fp_seterr(FP_EINVAL, "text of %zu bytes is too long to pre-tokenize at once", n);
    tok_char *c = malloc((n + 1) * sizeof *c);
    if (!c)
        return fp_seterr(FP_ENOMEM, "out of memory pre-tokenizing %zu bytes", n);
    size_t nc = tok_decode_chars(c, s, n);
    int rc = 0;
    for (size_t i = 0; i < nc && !rc;) {
        size_t e;
        switch (kind) {
        case TS_GPT2: e = match_gpt2(c, i, nc); break;
        case TS_LLAMA3: e = match_llama3(c, i, nc, 3); break;
        case TS_QWEN2: e = match_llama3(c, i, nc, 1); break;
        default: /* digits: numbers isolated (runs or single), the rest in between */
            if (c[i].cls == TC_NUMBER)
                e = kind == TS_DIGITS_ONE ? i + 1 : run_of(c, i, nc, TC_NUMBER);
            else
                for (e = i; e < nc && c[e].cls != TC_NUMBER; e++)
                    ;
            break;
        }
        rc = piece(ctx, s + c[i].off, c[e].off - c[i].off);
        i = e;
    }
    free(c);
    return rc;
}
