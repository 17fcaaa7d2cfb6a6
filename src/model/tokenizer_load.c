/* tokenizer.json loader: validates the pipeline (normalizer, pre-tokenizer,
 * model, decoder, post-processor) against what we implement and builds the
 * id tables and the merge table. */
#include "model/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"

#define MAX_IDS (1u << 24) /* refuse absurd ids before allocating tables for them */

static const char *const re_gpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *const re_llama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const re_qwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static const char *type_of(const cJSON *o)
{
    const cJSON *t = get(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int flag(const cJSON *o, const char *k, int def)
{
    const cJSON *v = get(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

void fp_tokenizer_free(fp_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_ids; i++) {
        free(t->token ? t->token[i] : NULL);
        free(t->bytes ? t->bytes[i] : NULL);
    }
    free(t->token);
    free(t->bytes);
    free(t->nbytes);
    free(t->special);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    fp_strmap_free(&t->str_to_id);
    fp_strmap_free(&t->bytes_to_id);
    fp_u64map_free(&t->merges);
    free(t);
}

static int add_step(fp_tokenizer *t, int split, int prefix, const char *what)
{
    if (t->n_steps == TOK_MAX_STEPS)
        return fp_seterr(FP_EUNSUPPORTED, "%s: more than %d pre-tokenizers", what, TOK_MAX_STEPS);
    t->steps[t->n_steps].split = split;
    t->steps[t->n_steps].add_prefix_space = prefix;
    t->n_steps++;
    return 0;
}

static int parse_pretok(fp_tokenizer *t, const cJSON *p, int *byte_level, const char *what)
{
    const char *ty = type_of(p);
    if (!ty)
        return fp_seterr(FP_EFORMAT, "%s: pre_tokenizer has no \"type\"", what);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = get(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return fp_seterr(FP_EFORMAT, "%s: Sequence pre_tokenizer has no \"pretokenizers\" list", what);
        for (const cJSON *e = list->child; e; e = e->next) {
            int rc = parse_pretok(t, e, byte_level, what);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) {
        *byte_level = 1;
        return add_step(t, flag(p, "use_regex", 1) ? TS_GPT2 : TS_NONE, flag(p, "add_prefix_space", 0),
                        what);
    }
    if (!strcmp(ty, "Digits"))
        return add_step(t, flag(p, "individual_digits", 0) ? TS_DIGITS_ONE : TS_DIGITS, 0, what);
    if (!strcmp(ty, "Split")) {
        const cJSON *pat = get(p, "pattern");
        const cJSON *re = cJSON_IsObject(pat) ? get(pat, "Regex") : NULL;
        const cJSON *beh = get(p, "behavior");
        if (!cJSON_IsString(re))
            return fp_seterr(FP_EUNSUPPORTED, "%s: Split pre_tokenizer without a Regex pattern is not "
                                              "supported", what);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || flag(p, "invert", 0))
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: Split pre_tokenizer behavior '%s' is not supported (only Isolated, "
                             "not inverted)", what, cJSON_IsString(beh) ? beh->valuestring : "?");
        int kind = !strcmp(re->valuestring, re_gpt2)     ? TS_GPT2
                   : !strcmp(re->valuestring, re_llama3) ? TS_LLAMA3
                   : !strcmp(re->valuestring, re_qwen2)  ? TS_QWEN2
                                                         : 0;
        if (!kind)
            return fp_seterr(FP_EUNSUPPORTED,
                             "%s: Split regex '%.120s' is not one of the GPT-2, Llama-3 or Qwen2 "
                             "patterns", what, re->valuestring);
        return add_step(t, kind, 0, what);
    }
    return fp_seterr(FP_EUNSUPPORTED, "%s: pre_tokenizer type '%s' is not supported (ByteLevel, "
                                      "Split, Digits, Sequence)", what, ty);
}

static int parse_normalizer(fp_tokenizer *t, const cJSON *n, const char *what)
{
    if (!n || cJSON_IsNull(n))
        return 0;
    const char *ty = type_of(n);
    if (ty && !strcmp(ty, "NFC")) {
        t->nfc = 1;
        return 0;
    }
    if (ty && !strcmp(ty, "Sequence")) {
        const cJSON *list = get(n, "normalizers");
        for (const cJSON *e = cJSON_IsArray(list) ? list->child : NULL; e; e = e->next) {
            int rc = parse_normalizer(t, e, what);
            if (rc)
                return rc;
        }
        return 0;
    }
    return fp_seterr(FP_EUNSUPPORTED, "%s: normalizer type '%s' is not supported (null or NFC)", what,
                     ty ? ty : "?");
}

static int parse_decoder(const cJSON *d, const char *what)
{
    const char *ty = d && !cJSON_IsNull(d) ? type_of(d) : "null";
    if (ty && !strcmp(ty, "ByteLevel"))
        return 0;
    return fp_seterr(FP_EUNSUPPORTED, "%s: decoder type '%s' is not supported (only ByteLevel)", what,
                     ty ? ty : "?");
}

static int template_ids(fp_tokenizer *t, const cJSON *pp, const char *what)
{
    const cJSON *single = get(pp, "single"), *specials = get(pp, "special_tokens");
    if (!cJSON_IsArray(single))
        return fp_seterr(FP_EFORMAT, "%s: TemplateProcessing has no \"single\" template", what);
    int after = 0;
    for (const cJSON *e = single->child; e; e = e->next) {
        if (get(e, "Sequence")) {
            after = 1;
            continue;
        }
        const cJSON *st = get(e, "SpecialToken");
        const cJSON *name = st ? get(st, "id") : NULL;
        const cJSON *def = cJSON_IsString(name) ? get(specials, name->valuestring) : NULL;
        const cJSON *ids = def ? get(def, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return fp_seterr(FP_EFORMAT, "%s: TemplateProcessing item '%s' has no ids in special_tokens",
                             what, cJSON_IsString(name) ? name->valuestring : "?");
        for (const cJSON *i = ids->child; i; i = i->next) {
            int *cnt = after ? &t->n_suffix : &t->n_prefix;
            int32_t *arr = after ? t->suffix : t->prefix;
            if (!cJSON_IsNumber(i) || i->valuedouble < 0 || i->valuedouble >= (double)t->n_ids)
                return fp_seterr(FP_EFORMAT, "%s: TemplateProcessing id of '%s' is outside the "
                                             "vocabulary", what, name->valuestring);
            if (*cnt == TOK_MAX_TEMPLATE)
                return fp_seterr(FP_EUNSUPPORTED, "%s: TemplateProcessing adds more than %d tokens",
                                 what, TOK_MAX_TEMPLATE);
            arr[(*cnt)++] = (int32_t)i->valuedouble;
        }
    }
    return 0;
}

static int parse_post(fp_tokenizer *t, const cJSON *pp, const char *what)
{
    if (!pp || cJSON_IsNull(pp))
        return 0;
    const char *ty = type_of(pp);
    if (ty && !strcmp(ty, "ByteLevel"))
        return 0; /* only moves offsets, which we do not report */
    if (ty && !strcmp(ty, "TemplateProcessing"))
        return template_ids(t, pp, what);
    if (ty && !strcmp(ty, "Sequence")) {
        const cJSON *list = get(pp, "processors");
        for (const cJSON *e = cJSON_IsArray(list) ? list->child : NULL; e; e = e->next) {
            int rc = parse_post(t, e, what);
            if (rc)
                return rc;
        }
        return 0;
    }
    return fp_seterr(FP_EUNSUPPORTED, "%s: post_processor type '%s' is not supported (null, "
                                      "ByteLevel, TemplateProcessing)", what, ty ? ty : "?");
}

static int json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_IDS ||
        floor(v->valuedouble) != v->valuedouble)
        return 0;
    *id = (int32_t)v->valuedouble;
    return 1;
}

/* Registers token string s (tokenizer.json form) as id. */
static int set_token(fp_tokenizer *t, int32_t id, const char *s, int from_added, const char *what)
{
    size_t n = strlen(s);
    if (t->token[id]) {
        if (!strcmp(t->token[id], s))
            return 0;
        if (!from_added)
            return fp_seterr(FP_EFORMAT, "%s: id %d is given to both '%s' and '%s'", what, (int)id,
                             t->token[id], s);
        free(t->token[id]); /* an added token's content wins for decoding */
        free(t->bytes[id]);
        t->token[id] = NULL;
        t->bytes[id] = NULL;
    }
    t->token[id] = strdup(s);
    t->bytes[id] = malloc(n + 1);
    if (!t->token[id] || !t->bytes[id])
        return fp_seterr(FP_ENOMEM, "%s: out of memory", what);
    long nb = from_added ? -1 : tok_bl_to_bytes(t->bytes[id], s, n);
    if (nb == 1)
        t->byte_id[t->bytes[id][0]] = id;
    if (nb < 0) { /* not byte-level text (an added token): its bytes are itself */
        memcpy(t->bytes[id], s, n);
        nb = (long)n;
    }
    t->nbytes[id] = (uint32_t)nb;
    int ins = fp_strmap_put(&t->str_to_id, s, n, id, NULL);
    return ins < 0 ? ins : 0;
}

static int parse_merge(const cJSON *m, const char **a, const char **b, char *buf, size_t cap)
{
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
        cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring;
        *b = m->child->next->valuestring;
        return 1;
    }
    if (!cJSON_IsString(m))
        return 0;
    const char *sp = strchr(m->valuestring, ' ');
    size_t la = sp ? (size_t)(sp - m->valuestring) : 0;
    if (!sp || strchr(sp + 1, ' ') || la + 1 > cap)
        return 0;
    memcpy(buf, m->valuestring, la);
    buf[la] = '\0';
    *a = buf;
    *b = sp + 1;
    return 1;
}

static int parse_model(fp_tokenizer *t, const cJSON *model, const cJSON *added, const char *what)
{
    const char *ty = type_of(model);
    const cJSON *vocab = get(model, "vocab"), *merges = get(model, "merges");
    if (ty ? strcmp(ty, "BPE") != 0 : !cJSON_IsArray(merges))
        return fp_seterr(FP_EUNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", what,
                         ty ? ty : "?");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return fp_seterr(FP_EFORMAT, "%s: BPE model needs a \"vocab\" object and a \"merges\" list", what);
    if (flag(model, "byte_fallback", 0))
        return fp_seterr(FP_EUNSUPPORTED, "%s: byte_fallback BPE is not supported", what);
    const cJSON *v = get(model, "dropout");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return fp_seterr(FP_EUNSUPPORTED, "%s: BPE dropout is not supported", what);
    const char *fixes[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = get(model, fixes[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return fp_seterr(FP_EUNSUPPORTED, "%s: BPE %s is not supported", what, fixes[i]);
    }
    t->ignore_merges = flag(model, "ignore_merges", 0);

    /* Size the id tables: largest id among vocab and added tokens. */
    int32_t max_id = -1, id = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!json_id(e, &id))
            return fp_seterr(FP_EFORMAT, "%s: vocab entry '%s' has no valid id", what, e->string);
        if (id > max_id)
            max_id = id;
    }
    for (const cJSON *e = cJSON_IsArray(added) ? added->child : NULL; e; e = e->next) {
        if (!json_id(get(e, "id"), &id) || !cJSON_IsString(get(e, "content")))
            return fp_seterr(FP_EFORMAT, "%s: an added_tokens entry lacks a valid id or content", what);
        if (id > max_id)
            max_id = id;
    }
    t->n_ids = (size_t)(max_id + 1);
    t->token = calloc(t->n_ids + 1, sizeof *t->token);
    t->bytes = calloc(t->n_ids + 1, sizeof *t->bytes);
    t->nbytes = calloc(t->n_ids + 1, sizeof *t->nbytes);
    t->special = calloc(t->n_ids + 1, 1);
    int rc;
    if (!t->token || !t->bytes || !t->nbytes || !t->special)
        return fp_seterr(FP_ENOMEM, "%s: out of memory for %zu tokens", what, t->n_ids);
    if ((rc = fp_strmap_init(&t->str_to_id, t->n_ids)))
        return rc;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        json_id(e, &id);
        int64_t other;
        if (fp_strmap_get(&t->str_to_id, e->string, strlen(e->string), &other))
            return fp_seterr(FP_EFORMAT, "%s: vocab entry '%s' appears twice", what, e->string);
        if ((rc = set_token(t, id, e->string, 0, what)))
            return rc;
    }
    size_t n_add = cJSON_IsArray(added) ? (size_t)cJSON_GetArraySize(added) : 0;
    t->added = calloc(n_add + 1, sizeof *t->added);
    if (!t->added)
        return fp_seterr(FP_ENOMEM, "%s: out of memory", what);
    for (const cJSON *e = n_add ? added->child : NULL; e; e = e->next) {
        struct tok_added *a = &t->added[t->n_added];
        json_id(get(e, "id"), &a->id);
        const char *content = get(e, "content")->valuestring;
        if (!content[0])
            return fp_seterr(FP_EFORMAT, "%s: added token %d has empty content", what, (int)a->id);
        a->content = strdup(content);
        if (!a->content)
            return fp_seterr(FP_ENOMEM, "%s: out of memory", what);
        a->len = strlen(content);
        t->n_added++;
        a->special = flag(e, "special", 0);
        a->lstrip = flag(e, "lstrip", 0);
        a->rstrip = flag(e, "rstrip", 0);
        a->single_word = flag(e, "single_word", 0);
        t->special[a->id] = (unsigned char)a->special;
        t->added_first[(unsigned char)content[0]] = 1;
        if ((rc = set_token(t, a->id, content, 1, what)))
            return rc;
    }
    t->unk_id = -1;
    v = get(model, "unk_token");
    if (v && !cJSON_IsNull(v)) {
        int64_t u;
        if (!cJSON_IsString(v) || !fp_strmap_get(&t->str_to_id, v->valuestring, strlen(v->valuestring), &u))
            return fp_seterr(FP_EFORMAT, "%s: unk_token is not in the vocabulary", what);
        t->unk_id = (int32_t)u;
    }
    if (t->ignore_merges) {
        if ((rc = fp_strmap_init(&t->bytes_to_id, t->n_ids)))
            return rc;
        for (const cJSON *e = vocab->child; e; e = e->next) {
            json_id(e, &id);
            if (fp_strmap_put(&t->bytes_to_id, t->bytes[id], t->nbytes[id], id, NULL) < 0)
                return FP_ENOMEM;
        }
    }
    size_t n_merges = (size_t)cJSON_GetArraySize(merges);
    if ((rc = fp_u64map_init(&t->merges, n_merges)))
        return rc;
    char abuf[1024], cat[2048];
    size_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a, *b;
        if (!parse_merge(m, &a, &b, abuf, sizeof abuf))
            return fp_seterr(FP_EFORMAT, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", what, rank);
        int64_t ia, ib, iab;
        size_t la = strlen(a), lb = strlen(b);
        if (la + lb >= sizeof cat)
            return fp_seterr(FP_EFORMAT, "%s: merge %zu is too long", what, rank);
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        if (!fp_strmap_get(&t->str_to_id, a, la, &ia) || !fp_strmap_get(&t->str_to_id, b, lb, &ib) ||
            !fp_strmap_get(&t->str_to_id, cat, la + lb, &iab))
            return fp_seterr(FP_EFORMAT, "%s: merge %zu ('%s' + '%s') uses a token not in the vocabulary",
                             what, rank, a, b);
        uint64_t key = ((uint64_t)ia << 32) | (uint64_t)ib;
        if (fp_u64map_put(&t->merges, key, (int64_t)(((uint64_t)rank << 32) | (uint64_t)iab), NULL) < 0)
            return FP_ENOMEM; /* a repeated merge keeps its first (best) rank */
    }
    return 0;
}

int fp_tokenizer_parse(fp_tokenizer **out, const char *json, size_t len, const char *what)
{
    if (!out || !json)
        return fp_seterr(FP_EINVAL, "fp_tokenizer_parse: NULL argument");
    *out = NULL;
    if (!what)
        what = "tokenizer.json";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return fp_seterr(FP_EFORMAT, "%s: not valid JSON", what);
    fp_tokenizer *t = calloc(1, sizeof *t);
    int rc = 0;
    if (!t) {
        cJSON_Delete(root);
        return fp_seterr(FP_ENOMEM, "out of memory");
    }
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    const cJSON *model = get(root, "model");
    int byte_level = 0;
    const cJSON *pre = get(root, "pre_tokenizer");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        rc = fp_seterr(FP_EFORMAT, "%s: no \"model\" object", what);
    } else if (!(rc = parse_normalizer(t, get(root, "normalizer"), what)) &&
               !(rc = pre && !cJSON_IsNull(pre) ? parse_pretok(t, pre, &byte_level, what) : 0) &&
               !(rc = parse_decoder(get(root, "decoder"), what)) &&
               !(rc = parse_model(t, model, get(root, "added_tokens"), what)) &&
               !(rc = parse_post(t, get(root, "post_processor"), what))) {
        if (!byte_level)
            rc = fp_seterr(FP_EUNSUPPORTED, "%s: no ByteLevel pre_tokenizer; only byte-level BPE is "
                                            "supported", what);
    }
    cJSON_Delete(root);
    if (rc) {
        fp_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int fp_tokenizer_load(fp_tokenizer **out, const char *path)
{
    void *text;
    size_t len;
    int rc = fp_read_file(&text, &len, path, 512u << 20);
    if (rc)
        return rc;
    rc = fp_tokenizer_parse(out, text, len, path);
    free(text);
    return rc;
}

size_t fp_tokenizer_vocab_size(const fp_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t fp_tokenizer_token_to_id(const fp_tokenizer *t, const char *token)
{
    int64_t id;
    if (!t || !token || !fp_strmap_get(&t->str_to_id, token, strlen(token), &id))
        return -1;
    return (int32_t)id;
}

const char *fp_tokenizer_id_to_token(const fp_tokenizer *t, int32_t id)
{
    return t && id >= 0 && (size_t)id < t->n_ids ? t->token[id] : NULL;
}

int fp_tokenizer_is_special(const fp_tokenizer *t, int32_t id)
{
    return t && id >= 0 && (size_t)id < t->n_ids && t->special[id];
}
