/* Encoding (added tokens, normalizer, pre-tokenizer pipeline, BPE merges) and
 * decoding. */
#include "model/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "error_internal.h"

struct heap_ent {
    uint32_t rank, pos;
};

struct enc {
    const fp_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    /* BPE scratch, reused across words */
    int32_t *sym, *prev, *next;
    struct heap_ent *heap;
    size_t scratch_cap;
};

static int push(struct enc *e, int32_t id)
{
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 64;
        int32_t *q = realloc(e->ids, nc * sizeof *q);
        if (!q)
            return fp_seterr(FP_ENOMEM, "out of memory for %zu token ids", nc);
        e->ids = q;
        e->cap = nc;
    }
    e->ids[e->n++] = id;
    return 0;
}

static int heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct heap_ent *h, size_t *n, struct heap_ent x)
{
    size_t i = (*n)++;
    while (i > 0 && heap_less(&x, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static struct heap_ent heap_pop(struct heap_ent *h, size_t *n)
{
    struct heap_ent top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = x;
    return top;
}

/* Rank and result of merging a then b; 0 if no such merge. */
static int merge_of(const fp_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *res)
{
    int64_t v;
    if (!fp_u64map_get(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, &v))
        return 0;
    *rank = (uint32_t)((uint64_t)v >> 32);
    *res = (int32_t)(v & 0xffffffff);
    return 1;
}

/* BPE on one pre-tokenized piece: start from single bytes, repeatedly apply the
 * best-ranked merge present (leftmost among equals), as HF does. A heap of
 * candidate pairs keeps long pieces (whitespace runs) O(n log n). */
static int bpe_word(struct enc *e, const unsigned char *p, size_t n)
{
    const fp_tokenizer *t = e->t;
    if (t->ignore_merges) {
        int64_t id;
        if (fp_strmap_get(&t->bytes_to_id, p, n, &id))
            return push(e, (int32_t)id);
    }
    if (n > e->scratch_cap) {
        size_t c = n < 64 ? 64 : n;
        free(e->sym);
        free(e->prev);
        free(e->next);
        free(e->heap);
        e->sym = malloc(c * sizeof *e->sym);
        e->prev = malloc(c * sizeof *e->prev);
        e->next = malloc(c * sizeof *e->next);
        e->heap = malloc(3 * c * sizeof *e->heap);
        e->scratch_cap = c;
        if (!e->sym || !e->prev || !e->next || !e->heap) {
            e->scratch_cap = 0;
            return fp_seterr(FP_ENOMEM, "out of memory encoding a %zu-byte piece", n);
        }
    }
    int32_t *sym = e->sym, *prev = e->prev, *next = e->next;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0)
            id = t->unk_id; /* no token for this byte: unk, or dropped as HF does */
        if (id >= 0)
            sym[m++] = id;
    }
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    uint32_t r;
    int32_t res;
    for (size_t i = 0; i + 1 < m; i++)
        if (merge_of(t, sym[i], sym[i + 1], &r, &res))
            heap_push(e->heap, &hn, (struct heap_ent){r, (uint32_t)i});
    while (hn) {
        struct heap_ent h = heap_pop(e->heap, &hn);
        int32_t a = (int32_t)h.pos, b = next[a];
        /* stale entries: a merged away (sym -1), or the pair at a changed */
        if (sym[a] < 0 || b < 0 || !merge_of(t, sym[a], sym[b], &r, &res) || r != h.rank)
            continue;
        sym[a] = res;
        sym[b] = -1;
        next[a] = next[b];
        if (next[b] >= 0)
            prev[next[b]] = a;
        if (prev[a] >= 0 && merge_of(t, sym[prev[a]], sym[a], &r, &res))
            heap_push(e->heap, &hn, (struct heap_ent){r, (uint32_t)prev[a]});
        if (next[a] >= 0 && merge_of(t, sym[a], sym[next[a]], &r, &res))
            heap_push(e->heap, &hn, (struct heap_ent){r, (uint32_t)a});
    }
    for (int32_t i = m ? 0 : -1; i >= 0; i = next[i]) {
        int rc = push(e, sym[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int run_from(struct enc *e, int k, const unsigned char *p, size_t n);

struct level {
    struct enc *e;
    int k;
};

static int step_piece(void *ctx, const unsigned char *p, size_t n)
{
    struct level *l = ctx;
    return run_from(l->e, l->k, p, n);
}

/* Pre-tokenizer step k on piece p, each resulting piece passed to step k + 1
 * and finally to BPE. */
static int run_from(struct enc *e, int k, const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (k == e->t->n_steps)
        return bpe_word(e, p, n);
    const struct tok_step *s = &e->t->steps[k];
    struct level l = {e, k + 1};
    if (s->add_prefix_space && p[0] != ' ') {
        unsigned char *buf = malloc(n + 1);
        if (!buf)
            return fp_seterr(FP_ENOMEM, "out of memory");
        buf[0] = ' ';
        memcpy(buf + 1, p, n);
        int rc = tok_split(s->split, buf, n + 1, step_piece, &l);
        free(buf);
        return rc;
    }
    return tok_split(s->split, p, n, step_piece, &l);
}

static int encode_plain(struct enc *e, const unsigned char *s, size_t n)
{
    if (!n)
        return 0;
    if (!e->t->nfc)
        return run_from(e, 0, s, n);
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t nn =
        utf8proc_map(s, (utf8proc_ssize_t)n, &norm, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (nn < 0)
        return fp_seterr(FP_EINVAL, "text is not valid UTF-8, which the NFC normalizer needs (%s)",
                         utf8proc_errmsg(nn));
    int rc = run_from(e, 0, norm, (size_t)nn);
    free(norm);
    return rc;
}

static int is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int is_word(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c >= 0x80;
}

/* The leftmost (then longest) added token in s[from..n): [*mb, *me) including
 * any whitespace it strips. 0 if none. */
static int find_added(const fp_tokenizer *t, const unsigned char *s, size_t n, size_t from,
                      size_t *mb, size_t *me, int32_t *id)
{
    for (size_t i = from; i < n; i++) {
        if (!t->added_first[s[i]])
            continue;
        const struct tok_added *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const struct tok_added *a = &t->added[k];
            if (a->len > n - i || (best && a->len <= best->len) || memcmp(s + i, a->content, a->len))
                continue;
            if (a->single_word && ((i > 0 && is_word(s[i - 1])) ||
                                   (i + a->len < n && is_word(s[i + a->len]))))
                continue;
            best = a;
        }
        if (!best)
            continue;
        size_t b = i, en = i + best->len;
        if (best->lstrip)
            while (b > from && is_ws(s[b - 1]))
                b--;
        if (best->rstrip)
            while (en < n && is_ws(s[en]))
                en++;
        *mb = b;
        *me = en;
        *id = best->id;
        return 1;
    }
    return 0;
}

int fp_tokenizer_encode(int32_t **ids, size_t *n_ids, const fp_tokenizer *t, const char *text,
                        size_t len, unsigned flags)
{
    if (!ids || !n_ids || !t || (!text && len))
        return fp_seterr(FP_EINVAL, "fp_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    struct enc e = {.t = t};
    const unsigned char *s = (const unsigned char *)text;
    int rc = 0;
    if (flags & FP_TOK_ADD_SPECIAL)
        for (int i = 0; i < t->n_prefix && !rc; i++)
            rc = push(&e, t->prefix[i]);
    size_t pos = 0;
    while (!rc && pos < len) {
        size_t mb = len, me = len;
        int32_t id = -1;
        int found = t->n_added ? find_added(t, s, len, pos, &mb, &me, &id) : 0;
        rc = encode_plain(&e, s + pos, mb - pos);
        if (!rc && found)
            rc = push(&e, id);
        pos = me;
    }
    if (flags & FP_TOK_ADD_SPECIAL)
        for (int i = 0; i < t->n_suffix && !rc; i++)
            rc = push(&e, t->suffix[i]);
    free(e.sym);
    free(e.prev);
    free(e.next);
    free(e.heap);
    if (rc) {
        free(e.ids);
        return rc;
    }
    *ids = e.ids;
    *n_ids = e.n;
    return 0;
}

int fp_tokenizer_decode(char **text, size_t *len, const fp_tokenizer *t, const int32_t *ids,
                        size_t n, unsigned flags)
{
    if (!text || !t || (!ids && n))
        return fp_seterr(FP_EINVAL, "fp_tokenizer_decode: NULL argument");
    *text = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids || !t->token[ids[i]])
            return fp_seterr(FP_EINVAL, "token id %d (position %zu) is not in the vocabulary of %zu",
                             (int)ids[i], i, t->n_ids);
        if (!((flags & FP_TOK_SKIP_SPECIAL) && t->special[ids[i]]))
            total += t->nbytes[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out)
        return fp_seterr(FP_ENOMEM, "out of memory for %zu decoded bytes", total);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if ((flags & FP_TOK_SKIP_SPECIAL) && t->special[ids[i]])
            continue;
        memcpy(out + k, t->bytes[ids[i]], t->nbytes[ids[i]]);
        k += t->nbytes[ids[i]];
    }
    out[k] = '\0';
    *text = out;
    if (len)
        *len = k;
    return 0;
}
