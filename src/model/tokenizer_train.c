/* Byte-level BPE trainer.
 *
 * The corpus is pre-tokenized with the GPT-2 pattern and reduced to unique
 * words with counts. Each word is a sequence of token ids, starting from its
 * bytes. We keep, for every adjacent pair, its total count (weighted by word
 * count) and the words it occurs in. A merge only touches the words holding
 * its pair: each is taken out of the pair counts, rewritten, and put back. The
 * best pair comes from a max-heap with lazy deletion: entries whose count is
 * stale are re-pushed with the current count when they surface. Pair counts
 * only grow for pairs containing the newest token, and those are pushed after
 * each merge, so the heap top (once fresh) is always the true maximum. */
#include "model/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "model/strbuf.h"

struct u32vec {
    uint32_t *v;
    uint32_t n, cap;
};

struct pair_ent {
    int64_t count;
    uint32_t a, b;
};

struct trainer {
    /* words */
    fp_strmap word_ix;
    uint64_t *wcount;
    size_t n_words, cap_words;
    uint32_t *sym; /* all words' symbols */
    size_t *woff;
    uint32_t *wlen;
    uint32_t *wmark; /* last merge that visited the word */
    /* tokens */
    fp_sb tokbytes; /* concatenated token bytes */
    size_t *toff;
    uint32_t *tlen;
    size_t n_tok, cap_tok;
    fp_strmap tok_ix; /* vocab string -> id, to reuse ids like HF */
    /* pairs */
    fp_u64map pair_ix; /* (a << 32 | b) -> index */
    int64_t *pcount;
    uint32_t *pa, *pb;
    struct u32vec *pwords;
    size_t n_pairs, cap_pairs;
    /* heap */
    struct pair_ent *heap;
    size_t n_heap, cap_heap;
    /* merges */
    uint32_t *ma, *mb;
    size_t n_merges;
    struct u32vec touched;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory (%zu entries)", nc);
    *p = q;
    *cap = nc;
    return 0;
}

static int vec_push(struct u32vec *v, uint32_t x)
{
    if (v->n == v->cap) {
        uint32_t nc = v->cap ? v->cap * 2 : 4;
        uint32_t *q = realloc(v->v, nc * sizeof *q);
        if (!q)
            return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory");
        v->v = q;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    return 0;
}

static int count_piece(void *ctx, const unsigned char *p, size_t n)
{
    struct trainer *t = ctx;
    int64_t *ref = fp_strmap_ref(&t->word_ix, p, n);
    if (ref) {
        t->wcount[*ref]++;
        return 0;
    }
    int rc = grow((void **)&t->wcount, &t->cap_words, t->n_words + 1, sizeof *t->wcount);
    if (rc)
        return rc;
    if ((rc = fp_strmap_put(&t->word_ix, p, n, (int64_t)t->n_words, NULL)) < 0)
        return rc;
    t->wcount[t->n_words++] = 1;
    return 0;
}

static int add_token(struct trainer *t, const unsigned char *bytes, size_t n, const char *vocab_str,
                     size_t vlen, uint32_t *id)
{
    int64_t old;
    int ins = fp_strmap_put(&t->tok_ix, vocab_str, vlen, (int64_t)t->n_tok, &old);
    if (ins < 0)
        return ins;
    if (ins == 0) { /* the same string already has an id (HF reuses it) */
        *id = (uint32_t)old;
        return 0;
    }
    size_t c1 = t->cap_tok;
    int rc = grow((void **)&t->toff, &c1, t->n_tok + 1, sizeof *t->toff);
    if (!rc)
        rc = grow((void **)&t->tlen, &t->cap_tok, t->n_tok + 1, sizeof *t->tlen);
    if (rc)
        return rc;
    t->toff[t->n_tok] = t->tokbytes.len;
    t->tlen[t->n_tok] = (uint32_t)n;
    fp_sb_add(&t->tokbytes, bytes, n);
    if (t->tokbytes.failed)
        return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory");
    *id = (uint32_t)t->n_tok++;
    return 0;
}

static int heap_before(const struct pair_ent *x, const struct pair_ent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static int heap_push(struct trainer *t, struct pair_ent e)
{
    int rc = grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof *t->heap);
    if (rc)
        return rc;
    size_t i = t->n_heap++;
    while (i > 0 && heap_before(&e, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = e;
    return 0;
}

static struct pair_ent heap_pop(struct trainer *t)
{
    struct pair_ent top = t->heap[0], x = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(&t->heap[c + 1], &t->heap[c]))
            c++;
        if (!heap_before(&t->heap[c], &x))
            break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n)
        t->heap[i] = x;
    return top;
}

/* count += delta for pair (a, b); with word >= 0 also note that the word holds it. */
static int pair_add(struct trainer *t, uint32_t a, uint32_t b, int64_t delta, int64_t word)
{
    uint64_t key = ((uint64_t)a << 32) | b;
    int64_t *ref = fp_u64map_ref(&t->pair_ix, key);
    size_t ix;
    if (ref) {
        ix = (size_t)*ref;
    } else {
        size_t c1 = t->cap_pairs, c2 = t->cap_pairs, c3 = t->cap_pairs;
        int rc = grow((void **)&t->pcount, &c1, t->n_pairs + 1, sizeof *t->pcount);
        if (!rc)
            rc = grow((void **)&t->pa, &c2, t->n_pairs + 1, sizeof *t->pa);
        if (!rc)
            rc = grow((void **)&t->pb, &c3, t->n_pairs + 1, sizeof *t->pb);
        size_t old = t->cap_pairs;
        if (!rc)
            rc = grow((void **)&t->pwords, &t->cap_pairs, t->n_pairs + 1, sizeof *t->pwords);
        if (rc)
            return rc;
        if (t->cap_pairs > old)
            memset(t->pwords + old, 0, (t->cap_pairs - old) * sizeof *t->pwords);
        ix = t->n_pairs++;
        t->pcount[ix] = 0;
        t->pa[ix] = a;
        t->pb[ix] = b;
        if ((rc = fp_u64map_put(&t->pair_ix, key, (int64_t)ix, NULL)) < 0)
            return rc;
    }
    t->pcount[ix] += delta;
    if (word >= 0) {
        struct u32vec *w = &t->pwords[ix];
        if (!w->n || w->v[w->n - 1] != (uint32_t)word) {
            int rc = vec_push(w, (uint32_t)word);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int word_pairs(struct trainer *t, uint32_t w, int sign, uint32_t newest)
{
    const uint32_t *s = t->sym + t->woff[w];
    int64_t c = (int64_t)t->wcount[w] * sign;
    for (uint32_t i = 0; i + 1 < t->wlen[w]; i++) {
        int rc = pair_add(t, s[i], s[i + 1], c, sign > 0 ? (int64_t)w : -1);
        if (rc)
            return rc;
        if (sign > 0 && (s[i] == newest || s[i + 1] == newest) &&
            (rc = vec_push(&t->touched, (uint32_t)*fp_u64map_ref(&t->pair_ix, ((uint64_t)s[i] << 32) | s[i + 1]))))
            return rc;
    }
    return 0;
}

/* Applies merge (a, b) -> id everywhere it occurs. */
static int apply_merge(struct trainer *t, size_t pix, uint32_t a, uint32_t b, uint32_t id, uint32_t mark)
{
    struct u32vec words = t->pwords[pix];
    t->pwords[pix] = (struct u32vec){0};
    t->touched.n = 0;
    int rc = 0;
    for (uint32_t k = 0; k < words.n && !rc; k++) {
        uint32_t w = words.v[k];
        if (t->wmark[w] == mark)
            continue;
        t->wmark[w] = mark;
        uint32_t *s = t->sym + t->woff[w];
        uint32_t n = t->wlen[w], i;
        for (i = 0; i + 1 < n && !(s[i] == a && s[i + 1] == b); i++)
            ;
        if (i + 1 >= n)
            continue; /* stale: the word no longer holds the pair */
        if ((rc = word_pairs(t, w, -1, id)))
            break;
        uint32_t o = 0;
        for (i = 0; i < n; i++) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                s[o++] = id;
                i++;
            } else {
                s[o++] = s[i];
            }
        }
        t->wlen[w] = o;
        rc = word_pairs(t, w, +1, id);
    }
    free(words.v);
    t->pcount[pix] = 0;
    for (uint32_t k = 0; k < t->touched.n && !rc; k++) {
        uint32_t p = t->touched.v[k];
        if (t->pcount[p] > 0)
            rc = heap_push(t, (struct pair_ent){t->pcount[p], t->pa[p], t->pb[p]});
    }
    return rc;
}

static void trainer_free(struct trainer *t)
{
    fp_strmap_free(&t->word_ix);
    free(t->wcount);
    free(t->sym);
    free(t->woff);
    free(t->wlen);
    free(t->wmark);
    fp_sb_free(&t->tokbytes);
    free(t->toff);
    free(t->tlen);
    fp_strmap_free(&t->tok_ix);
    fp_u64map_free(&t->pair_ix);
    free(t->pcount);
    free(t->pa);
    free(t->pb);
    for (size_t i = 0; i < t->n_pairs; i++)
        free(t->pwords[i].v);
    free(t->pwords);
    free(t->heap);
    free(t->ma);
    free(t->mb);
    free(t->touched.v);
}

/* Appends the tokenizer.json string of token id, unquoted. */
static void vocab_raw(fp_sb *b, const struct trainer *t, uint32_t id, size_t n_special,
                      const char *const *specials)
{
    if (id < n_special) {
        fp_sb_puts(b, specials[id]);
        return;
    }
    char *tmp = malloc(2 * (size_t)t->tlen[id] + 1);
    if (!tmp) {
        b->failed = 1;
        return;
    }
    size_t k = tok_bytes_to_bl(tmp, (const unsigned char *)t->tokbytes.p + t->toff[id], t->tlen[id]);
    fp_sb_add(b, tmp, k);
    free(tmp);
}

/* Appends a quoted JSON string: token a, or "a b" when b is not UINT32_MAX. */
static void vocab_json(fp_sb *b, const struct trainer *t, uint32_t a, uint32_t bid, size_t n_special,
                       const char *const *specials)
{
    fp_sb raw;
    fp_sb_init(&raw);
    vocab_raw(&raw, t, a, n_special, specials);
    if (bid != UINT32_MAX) {
        fp_sb_add(&raw, " ", 1);
        vocab_raw(&raw, t, bid, n_special, specials);
    }
    if (raw.failed)
        b->failed = 1;
    else
        fp_sb_json_str(b, raw.p ? raw.p : "", raw.len);
    fp_sb_free(&raw);
}

static int write_json(char **json, const struct trainer *t, const fp_bpe_train_opts *o)
{
    fp_sb b;
    fp_sb_init(&b);
    fp_sb_puts(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                   "  \"added_tokens\": [");
    for (size_t i = 0; i < o->n_special; i++) {
        fp_sb_printf(&b, "%s\n    {\"id\": %zu, \"content\": ", i ? "," : "", i);
        fp_sb_json_str(&b, o->special_tokens[i], strlen(o->special_tokens[i]));
        fp_sb_puts(&b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                       "\"normalized\": false, \"special\": true}");
    }
    fp_sb_puts(&b, o->n_special ? "\n  ],\n" : "],\n");
    fp_sb_puts(&b, "  \"normalizer\": null,\n"
                   "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                   "\"trim_offsets\": true, \"use_regex\": true},\n"
                   "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                   "\"trim_offsets\": true, \"use_regex\": true},\n"
                   "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                   "\"trim_offsets\": true, \"use_regex\": true},\n"
                   "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
                   "    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n"
                   "    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
                   "    \"byte_fallback\": false,\n    \"vocab\": {");
    for (uint32_t id = 0; id < t->n_tok; id++) {
        fp_sb_puts(&b, id ? ",\n      " : "\n      ");
        vocab_json(&b, t, id, UINT32_MAX, o->n_special, o->special_tokens);
        fp_sb_printf(&b, ": %u", id);
    }
    /* merges in the "a b" form: every tokenizers release reads it, and byte-level
     * token strings never contain a space */
    fp_sb_puts(&b, "\n    },\n    \"merges\": [");
    for (size_t m = 0; m < t->n_merges; m++) {
        fp_sb_puts(&b, m ? ",\n      " : "\n      ");
        vocab_json(&b, t, t->ma[m], t->mb[m], o->n_special, o->special_tokens);
    }
    fp_sb_puts(&b, t->n_merges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    int rc = fp_sb_finish(&b);
    if (rc)
        return rc;
    *json = b.p;
    return 0;
}

/* Counting stage: one call per text. */
static int trainer_count(struct trainer *t, const char *text, size_t len)
{
    /* split in chunks at newlines so the per-call char scratch stays small */
    size_t pos = 0;
    while (pos < len) {
        size_t end = len - pos > (4u << 20) ? pos + (4u << 20) : len;
        while (end < len && text[end - 1] != '\n')
            end++;
        int rc = tok_split(TS_GPT2, (const unsigned char *)text + pos, end - pos, count_piece, t);
        if (rc)
            return rc;
        pos = end;
    }
    return 0;
}

static int trainer_run(char **json, struct trainer *t, const fp_bpe_train_opts *o)
{
    int rc;
    /* ids: special tokens, then the 256 bytes in the order of their byte-level
     * characters (as HF sorts its alphabet) */
    for (size_t i = 0; i < o->n_special; i++) {
        uint32_t id;
        const char *s = o->special_tokens[i];
        if ((rc = add_token(t, (const unsigned char *)s, strlen(s), s, strlen(s), &id)))
            return rc;
        if (id != i)
            return fp_seterr(FP_EINVAL, "BPE trainer: special token '%s' is given twice", s);
    }
    uint32_t byte_tok[256];
    for (uint32_t cp = 0; cp < 256 + 68; cp++) {
        int b = tok_cp_to_byte(cp);
        if (b < 0)
            continue;
        unsigned char c = (unsigned char)b;
        char bl[4];
        size_t bl_n = tok_bytes_to_bl(bl, &c, 1);
        if ((rc = add_token(t, &c, 1, bl, bl_n, &byte_tok[c])))
            return rc;
    }
    /* words -> symbol arrays */
    size_t total = 0;
    t->woff = malloc((t->n_words + 1) * sizeof *t->woff);
    t->wlen = malloc((t->n_words + 1) * sizeof *t->wlen);
    t->wmark = calloc(t->n_words + 1, sizeof *t->wmark);
    if (!t->woff || !t->wlen || !t->wmark)
        return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory for %zu words", t->n_words);
    for (size_t i = 0; i < t->word_ix.cap; i++) {
        const void *key;
        size_t klen;
        int64_t w;
        if (!fp_strmap_slot(&t->word_ix, i, &key, &klen, &w))
            continue;
        t->woff[w] = (size_t)((const char *)key - t->word_ix.keys); /* provisional: key offset */
        t->wlen[w] = (uint32_t)klen;
        total += klen;
    }
    t->sym = malloc((total + 1) * sizeof *t->sym);
    if (!t->sym)
        return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory for %zu symbols", total);
    size_t at = 0;
    for (size_t w = 0; w < t->n_words; w++) {
        const unsigned char *k = (const unsigned char *)t->word_ix.keys + t->woff[w];
        for (uint32_t j = 0; j < t->wlen[w]; j++)
            t->sym[at + j] = byte_tok[k[j]];
        t->woff[w] = at;
        at += t->wlen[w];
    }
    if ((rc = fp_u64map_init(&t->pair_ix, 1 << 16)))
        return rc;
    for (size_t w = 0; w < t->n_words; w++)
        if ((rc = word_pairs(t, (uint32_t)w, +1, UINT32_MAX)))
            return rc;
    for (size_t p = 0; p < t->n_pairs; p++)
        if (t->pcount[p] > 0 && (rc = heap_push(t, (struct pair_ent){t->pcount[p], t->pa[p], t->pb[p]})))
            return rc;
    size_t cap_m = o->vocab_size;
    t->ma = malloc((cap_m + 1) * sizeof *t->ma);
    t->mb = malloc((cap_m + 1) * sizeof *t->mb);
    if (!t->ma || !t->mb)
        return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory");
    int64_t min_freq = o->min_frequency ? (int64_t)o->min_frequency : 1;
    while (t->n_tok < o->vocab_size && t->n_heap && t->n_merges < cap_m) {
        struct pair_ent e = t->heap[0];
        int64_t *ref = fp_u64map_ref(&t->pair_ix, ((uint64_t)e.a << 32) | e.b);
        size_t pix = (size_t)*ref;
        heap_pop(t);
        if (t->pcount[pix] != e.count) { /* stale: re-queue with the current count */
            if (t->pcount[pix] > 0 && (rc = heap_push(t, (struct pair_ent){t->pcount[pix], e.a, e.b})))
                return rc;
            continue;
        }
        if (e.count < min_freq)
            break;
        /* the new token's bytes and vocab string */
        size_t la = t->tlen[e.a], lb = t->tlen[e.b];
        unsigned char *nb = malloc(la + lb);
        char *vs = malloc(2 * (la + lb) + 1);
        if (!nb || !vs) {
            free(nb);
            free(vs);
            return fp_seterr(FP_ENOMEM, "BPE trainer: out of memory");
        }
        memcpy(nb, t->tokbytes.p + t->toff[e.a], la);
        memcpy(nb + la, t->tokbytes.p + t->toff[e.b], lb);
        size_t vn = tok_bytes_to_bl(vs, nb, la + lb);
        uint32_t id;
        rc = add_token(t, nb, la + lb, vs, vn, &id);
        free(nb);
        free(vs);
        if (rc)
            return rc;
        t->ma[t->n_merges] = e.a;
        t->mb[t->n_merges] = e.b;
        t->n_merges++;
        if ((rc = apply_merge(t, pix, e.a, e.b, id, (uint32_t)t->n_merges)))
            return rc;
    }
    return write_json(json, t, o);
}

static int check_opts(const fp_bpe_train_opts *o)
{
    if (!o || (o->n_special && !o->special_tokens))
        return fp_seterr(FP_EINVAL, "fp_bpe_train: NULL options");
    for (size_t i = 0; i < o->n_special; i++)
        if (!o->special_tokens[i] || !o->special_tokens[i][0])
            return fp_seterr(FP_EINVAL, "fp_bpe_train: special token %zu is empty", i);
    if (o->vocab_size < o->n_special + 256 || o->vocab_size > (1u << 24))
        return fp_seterr(FP_EINVAL,
                         "fp_bpe_train: vocab_size %zu must be at least %zu (256 bytes + %zu special "
                         "tokens) and at most 2^24",
                         o->vocab_size, o->n_special + 256, o->n_special);
    return 0;
}

static int trainer_init(struct trainer *t)
{
    memset(t, 0, sizeof *t);
    fp_sb_init(&t->tokbytes);
    int rc = fp_strmap_init(&t->word_ix, 1 << 14);
    if (!rc)
        rc = fp_strmap_init(&t->tok_ix, 1 << 12);
    return rc;
}

int fp_bpe_train(char **json, const fp_bpe_train_opts *opts, const char *const *texts,
                 const size_t *lens, size_t n)
{
    if (!json || (n && (!texts || !lens)))
        return fp_seterr(FP_EINVAL, "fp_bpe_train: NULL argument");
    *json = NULL;
    int rc = check_opts(opts);
    if (rc)
        return rc;
    struct trainer t;
    if (!(rc = trainer_init(&t))) {
        for (size_t i = 0; i < n && !rc; i++)
            rc = trainer_count(&t, texts[i], lens[i]);
        if (!rc)
            rc = trainer_run(json, &t, opts);
    }
    trainer_free(&t);
    return rc;
}

int fp_bpe_train_files(char **json, const fp_bpe_train_opts *opts, const char *const *paths, size_t n)
{
    if (!json || (n && !paths))
        return fp_seterr(FP_EINVAL, "fp_bpe_train_files: NULL argument");
    *json = NULL;
    int rc = check_opts(opts);
    if (rc)
        return rc;
    struct trainer t;
    if (!(rc = trainer_init(&t))) {
        for (size_t i = 0; i < n && !rc; i++) {
            void *text;
            size_t len;
            if ((rc = fp_read_file(&text, &len, paths[i], (size_t)1 << 34)))
                break;
            rc = trainer_count(&t, text, len);
            free(text);
            if (rc)
                rc = fp_adderr(rc, "%s", paths[i]);
        }
        if (!rc)
            rc = trainer_run(json, &t, opts);
    }
    trainer_free(&t);
    return rc;
}
