/* BPE trainer: merges checked by hand on a tiny corpus (counts and the
 * tie-break), min_frequency, determinism, the fields HF tokenizers needs, and
 * an encode/decode round trip of the training text with the trained file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/tokenizer.h"
#include "fp_test.h"

static const char *specials[] = {"<|endoftext|>", "<|pad|>"};

static cJSON *train_json(const char *text, size_t vocab, uint64_t min_freq, char **raw)
{
    fp_bpe_train_opts o = {vocab, specials, 2, min_freq};
    size_t len = strlen(text);
    char *json = NULL;
    CHECK_OK(fp_bpe_train(&json, &o, &text, &len, 1));
    if (!json)
        return NULL;
    cJSON *j = cJSON_Parse(json);
    CHECK(j != NULL);
    if (raw)
        *raw = json;
    else
        free(json);
    return j;
}

static const cJSON *model_of(const cJSON *j, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "model"), k);
}

static void test_tiny(void)
{
    /* "ab ab ab cd cd" pre-tokenizes to "ab" x1, " ab" x2, " cd" x2.
     * Pair counts: (a,b) 1+2 = 3, (Ġ,a) 2, (Ġ,c) 2, (c,d) 2.
     * 1st merge: a b (3). Then (Ġ,ab) 2, (Ġ,c) 2, (c,d) 2: a tie, broken by
     * the lower first id; byte ids follow the byte-level characters' order, so
     * 'c' (U+0063) precedes 'Ġ' (U+0120): 2nd merge c d. Then (Ġ,ab) and
     * (Ġ,cd) tie at 2; ab (id 258) was made before cd (259): 3rd Ġ ab, 4th
     * Ġ cd. Then every word is one token: no pairs left, training stops. */
    cJSON *j = train_json("ab ab ab cd cd", 1000, 1, NULL);
    const cJSON *merges = model_of(j, "merges"), *vocab = model_of(j, "vocab");
    CHECK(cJSON_GetArraySize(merges) == 4);
    const char *want[] = {"a b", "c d", "Ġ ab", "Ġ cd"};
    for (int i = 0; i < 4 && i < cJSON_GetArraySize(merges); i++)
        CHECKF(!strcmp(cJSON_GetArrayItem(merges, i)->valuestring, want[i]), "merge %d is '%s'", i,
               cJSON_GetArrayItem(merges, i)->valuestring);
    CHECK(cJSON_GetArraySize(vocab) == 2 + 256 + 4);
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "<|endoftext|>")->valueint == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "<|pad|>")->valueint == 1);
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "!")->valueint == 2); /* first byte char: U+0021 */
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "ab")->valueint == 258);
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "cd")->valueint == 259);
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "Ġab")->valueint == 260);
    CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "Ġcd")->valueint == 261);
    cJSON_Delete(j);

    /* min_frequency 3: only (a,b) qualifies */
    j = train_json("ab ab ab cd cd", 1000, 3, NULL);
    merges = model_of(j, "merges");
    CHECK(cJSON_GetArraySize(merges) == 1 && !strcmp(merges->child->valuestring, "a b"));
    cJSON_Delete(j);

    /* vocab_size caps the merges: 258 + 2 */
    j = train_json("ab ab ab cd cd", 260, 1, NULL);
    CHECK(cJSON_GetArraySize(model_of(j, "merges")) == 2);
    CHECK(cJSON_GetArraySize(model_of(j, "vocab")) == 260);
    cJSON_Delete(j);

    /* Counts within a word: "aaaa" x1 has (a,a) 3 times; merging left to
     * right gives aa aa, then (aa,aa) once: "aaaa" is one token. */
    j = train_json("aaaa", 1000, 1, NULL);
    merges = model_of(j, "merges");
    CHECK(cJSON_GetArraySize(merges) == 2);
    CHECK(cJSON_GetArraySize(merges) == 2 && !strcmp(cJSON_GetArrayItem(merges, 0)->valuestring, "a a") &&
          !strcmp(cJSON_GetArrayItem(merges, 1)->valuestring, "aa aa"));
    cJSON_Delete(j);

    fp_bpe_train_opts bad = {200, specials, 2, 1};
    char *json;
    const char *txt = "x";
    size_t one = 1;
    CHECK_ERR(fp_bpe_train(&json, &bad, &txt, &one, 1), FP_EINVAL);
}

/* A corpus with repetition, punctuation, numbers, Unicode and odd spacing. */
static char *corpus(size_t *len)
{
    static const char *words[] = {"the", "federated", "model", "learns", "while", "données",
                                  "restent", "locales", "学习", "🙂", "it's", "2024", "(x)",
                                  "\n", "  ", "proxy", "and", "a"};
    size_t cap = 1 << 18, n = 0;
    char *s = malloc(cap);
    fp_test_seed(99);
    while (n < cap - 64) {
        const char *w = words[fp_test_u32() % (sizeof words / sizeof words[0])];
        n += (size_t)snprintf(s + n, cap - n, "%s%s", w, fp_test_u32() % 4 ? " " : "");
    }
    *len = n;
    return s;
}

static void test_corpus(void)
{
    size_t len;
    char *text = corpus(&len);
    const char *tp = text;
    fp_bpe_train_opts o = {600, specials, 2, 2};
    char *a = NULL, *b = NULL;
    CHECK_OK(fp_bpe_train(&a, &o, &tp, &len, 1));
    CHECK_OK(fp_bpe_train(&b, &o, &tp, &len, 1));
    CHECK(a && b && strcmp(a, b) == 0); /* deterministic */
    free(b);
    if (!a) {
        free(text);
        return;
    }

    /* What HF tokenizers' deserializer needs. */
    cJSON *j = cJSON_Parse(a);
    CHECK(j != NULL);
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "version")));
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    CHECK(cJSON_GetArraySize(added) == 2);
    const cJSON *a0 = cJSON_GetArrayItem(added, 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(a0, "id")->valueint == 0);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(a0, "content")->valuestring, "<|endoftext|>"));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a0, "special")));
    const char *flags[] = {"single_word", "lstrip", "rstrip", "normalized"};
    for (int i = 0; i < 4; i++)
        CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a0, flags[i])));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(pre, "type")->valuestring, "ByteLevel"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "trim_offsets")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "use_regex")));
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(j, "decoder");
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(dec, "type")->valuestring, "ByteLevel"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "normalizer")));
    CHECK(!strcmp(model_of(j, "type")->valuestring, "BPE"));
    CHECK(cJSON_IsFalse(model_of(j, "byte_fallback")));
    CHECK(cJSON_IsNull(model_of(j, "dropout")) && cJSON_IsNull(model_of(j, "unk_token")));
    CHECK(cJSON_GetArraySize(model_of(j, "vocab")) == 600);
    CHECK(cJSON_GetArraySize(model_of(j, "merges")) == 600 - 258);
    /* ids are 0..599 exactly once */
    unsigned char seen[600] = {0};
    int ok = 1;
    for (const cJSON *v = model_of(j, "vocab")->child; v; v = v->next)
        ok &= v->valueint >= 0 && v->valueint < 600 && !seen[v->valueint]++;
    CHECK(ok);
    cJSON_Delete(j);

    /* Load it back and round-trip the training text; merges must compress. */
    fp_tokenizer *t;
    CHECK_OK(fp_tokenizer_parse(&t, a, strlen(a), "trained"));
    if (t) {
        int32_t *ids;
        size_t n;
        CHECK_OK(fp_tokenizer_encode(&ids, &n, t, text, len, 0));
        CHECKF(n < len / 3, "%zu tokens for %zu bytes", n, len);
        char *back;
        size_t blen;
        CHECK_OK(fp_tokenizer_decode(&back, &blen, t, ids, n, 0));
        CHECK(blen == len && memcmp(back, text, len) == 0);
        free(back);
        free(ids);
        /* "the" is frequent enough to be one token */
        const char *w = " the";
        CHECK_OK(fp_tokenizer_encode(&ids, &n, t, w, 4, 0));
        CHECK(n == 1 && ids[0] == fp_tokenizer_token_to_id(t, "Ġthe"));
        free(ids);
        /* the special token is matched as one id */
        w = "x<|pad|>";
        CHECK_OK(fp_tokenizer_encode(&ids, &n, t, w, strlen(w), 0));
        CHECK(n == 2 && ids[1] == 1);
        free(ids);
        fp_tokenizer_free(t);
    }

    /* the files variant gives the same result */
    char path[4200];
    snprintf(path, sizeof path, "%s/corpus.txt", fp_test_tmpdir("bpe_train"));
    CHECK_OK(fp_write_file_atomic(path, text, len, 0644));
    const char *paths[1] = {path};
    char *c = NULL;
    CHECK_OK(fp_bpe_train_files(&c, &o, paths, 1));
    CHECK(c && !strcmp(a, c));
    free(c);
    const char *missing[1] = {"/nonexistent/corpus.txt"};
    CHECK_ERR(fp_bpe_train_files(&c, &o, missing, 1), FP_ENOTFOUND);
    free(a);
    free(text);
}

int main(void)
{
    test_tiny();
    test_corpus();
    return fp_test_report("test_bpe_train");
}
