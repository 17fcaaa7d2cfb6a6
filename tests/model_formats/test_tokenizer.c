/* tokenizer.json: a hand-built byte-level BPE with known merges gives ids
 * computed by hand; pre-tokenization splits checked by hand; special tokens,
 * templates, NFC, Unicode and arbitrary-byte round trips; unsupported kinds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/tokenizer.h"
#include "fp_test.h"
#include "model/tokenizer_internal.h"

/* The test's own GPT-2 byte -> code point rule, written out independently. */
static unsigned cp_of(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    unsigned k = 0;
    for (unsigned i = 0; i < b; i++)
        k += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174);
    return 256 + k;
}

/* JSON string body for byte b's character. */
static void put_char(char *out, unsigned b)
{
    unsigned c = cp_of(b);
    if (c == '"' || c == '\\')
        sprintf(out, "\\%c", c);
    else if (c < 0x80)
        sprintf(out, "%c", c);
    else
        sprintf(out, "%c%c", 0xC0 | (c >> 6), 0x80 | (c & 0x3F));
}

/* Vocabulary: byte b has id b; merges below; <|endoftext|> = 264, <s> = 265. */
static const char *merges_str[] = {"Ġ t", "h e", "Ġt he", "l l", "e ll", "h ell", "hell o", "Ġ w"};
static const char *merges_res[] = {"Ġt", "he", "Ġthe", "ll", "ell", "hell", "hello", "Ġw"};

static char *make_json(const char *pre, const char *normalizer, const char *post, int array_merges,
                       int ignore_merges)
{
    size_t cap = 1 << 16;
    char *j = malloc(cap), ch[8];
    size_t n = 0;
    n += (size_t)snprintf(j + n, cap - n,
                          "{\"version\":\"1.0\",\"added_tokens\":["
                          "{\"id\":264,\"content\":\"<|endoftext|>\",\"single_word\":false,"
                          "\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
                          "{\"id\":265,\"content\":\"<s>\",\"special\":true}],"
                          "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,"
                          "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                          "\"trim_offsets\":true,\"use_regex\":true},"
                          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
                          "\"byte_fallback\":false,\"ignore_merges\":%s,\"vocab\":{",
                          normalizer, pre, post, ignore_merges ? "true" : "false");
    for (unsigned b = 0; b < 256; b++) {
        put_char(ch, b);
        n += (size_t)snprintf(j + n, cap - n, "%s\"%s\":%u", b ? "," : "", ch, b);
    }
    for (int m = 0; m < 8; m++)
        n += (size_t)snprintf(j + n, cap - n, ",\"%s\":%d", merges_res[m], 256 + m);
    n += (size_t)snprintf(j + n, cap - n, "},\"merges\":[");
    for (int m = 0; m < 8; m++) {
        if (array_merges) {
            char a[16], b[16];
            sscanf(merges_str[m], "%15s %15s", a, b);
            n += (size_t)snprintf(j + n, cap - n, "%s[\"%s\",\"%s\"]", m ? "," : "", a, b);
        } else {
            n += (size_t)snprintf(j + n, cap - n, "%s\"%s\"", m ? "," : "", merges_str[m]);
        }
    }
    snprintf(j + n, cap - n, "]}}");
    return j;
}

#define BL "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"

static fp_tokenizer *load(const char *pre, const char *norm, const char *post, int arr, int ign)
{
    char *j = make_json(pre, norm, post, arr, ign);
    fp_tokenizer *t = NULL;
    CHECK_OK(fp_tokenizer_parse(&t, j, strlen(j), "tiny.json"));
    free(j);
    return t;
}

static int ids_are(const fp_tokenizer *t, const char *text, unsigned flags, const int32_t *want, size_t n)
{
    int32_t *ids;
    size_t k;
    if (fp_tokenizer_encode(&ids, &k, t, text, strlen(text), flags))
        return 0;
    int ok = k == n && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "  '%s' ->", text);
        for (size_t i = 0; i < k; i++)
            fprintf(stderr, " %d", (int)ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static int round_trips(const fp_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids;
    size_t k;
    char *back;
    size_t blen;
    if (fp_tokenizer_encode(&ids, &k, t, text, len, 0))
        return 0;
    int rc = fp_tokenizer_decode(&back, &blen, t, ids, k, 0);
    free(ids);
    if (rc)
        return 0;
    int ok = blen == len && memcmp(back, text, len) == 0;
    free(back);
    return ok;
}

static void test_known_ids(void)
{
    fp_tokenizer *t = load(BL, "null", "null", 0, 0);
    if (!t)
        return;
    CHECK(fp_tokenizer_vocab_size(t) == 266);
    CHECK(fp_tokenizer_token_to_id(t, "Ġthe") == 258 && fp_tokenizer_token_to_id(t, "xyz") == -1);
    CHECK(fp_tokenizer_id_to_token(t, 262) && !strcmp(fp_tokenizer_id_to_token(t, 262), "hello"));
    /* "hello": h e l l o; best merge is rank 1 (h e) -> he l l o; then rank 3
     * (l l) -> he ll o; no merge for (he, ll) or (ll, o): [257, 259, 'o'=111].
     * " the": Ġ t h e; rank 0 (Ġ t) -> Ġt h e; rank 1 (h e) -> Ġt he; rank 2
     * -> Ġthe: [258].
     * " yell": Ġ y e l l; only (l l) rank 3 -> Ġ y e ll; (e ll) rank 4 ->
     * Ġ y ell: [' '=32, 'y'=121, 260].
     * "<|endoftext|>" is an added token: 264. " w": (Ġ w) rank 7: [263]. */
    const int32_t want[] = {257, 259, 111, 258, 32, 121, 260, 264, 263};
    CHECK(ids_are(t, "hello the yell<|endoftext|> w", 0, want, 9));
    /* "aaa" has no merges: bytes */
    const int32_t aaa[] = {97, 97, 97};
    CHECK(ids_are(t, "aaa", 0, aaa, 3));
    CHECK(ids_are(t, "", 0, NULL, 0));
    /* "<s><s>" two adjacent added tokens; "<s" alone is plain text */
    const int32_t ss[] = {265, 265, '<', 's'};
    CHECK(ids_are(t, "<s><s><s", 0, ss, 4));
    /* decode, with and without special tokens */
    char *txt;
    size_t len;
    CHECK_OK(fp_tokenizer_decode(&txt, &len, t, want, 9, 0));
    CHECK(len == strlen("hello the yell<|endoftext|> w") && !strcmp(txt, "hello the yell<|endoftext|> w"));
    free(txt);
    CHECK_OK(fp_tokenizer_decode(&txt, &len, t, want, 9, FP_TOK_SKIP_SPECIAL));
    CHECK(!strcmp(txt, "hello the yell w"));
    free(txt);
    CHECK(fp_tokenizer_is_special(t, 264) && !fp_tokenizer_is_special(t, 258));
    const int32_t bad[] = {5, 266};
    CHECK_ERR(fp_tokenizer_decode(&txt, &len, t, bad, 2, 0), FP_EINVAL);
    CHECK(strstr(fp_errmsg(), "266") != NULL);
    fp_tokenizer_free(t);

    /* the [["a","b"], ...] merge form gives the same ids */
    t = load(BL, "null", "null", 1, 0);
    CHECK(t && ids_are(t, "hello the yell<|endoftext|> w", 0, want, 9));
    fp_tokenizer_free(t);

    /* ignore_merges: a word that is in the vocabulary is taken whole */
    t = load(BL, "null", "null", 0, 1);
    const int32_t hello[] = {262, 258};
    CHECK(t && ids_are(t, "hello the", 0, hello, 2));
    fp_tokenizer_free(t);

    /* add_prefix_space: "hello" is encoded as " hello" -> Ġ he ll o */
    t = load("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}", "null", "null", 0, 0);
    const int32_t pre[] = {32, 257, 259, 111};
    CHECK(t && ids_are(t, "hello", 0, pre, 4));
    fp_tokenizer_free(t);

    /* TemplateProcessing: <s> $A <|endoftext|> with FP_TOK_ADD_SPECIAL only */
    t = load(BL, "null",
             "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
             "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<|endoftext|>\","
             "\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[265],"
             "\"tokens\":[\"<s>\"]},\"<|endoftext|>\":{\"id\":\"<|endoftext|>\",\"ids\":[264],"
             "\"tokens\":[\"<|endoftext|>\"]}}}",
             0, 0);
    const int32_t tmpl[] = {265, 258, 264}, plain[] = {258};
    CHECK(t && ids_are(t, " the", FP_TOK_ADD_SPECIAL, tmpl, 3));
    CHECK(t && ids_are(t, " the", 0, plain, 1));
    fp_tokenizer_free(t);

    /* NFC: "e" + U+0301 composes to U+00E9 before BPE */
    t = load(BL, "{\"type\":\"NFC\"}", "null", 0, 0);
    const int32_t eacute[] = {0xC3, 0xA9};
    CHECK(t && ids_are(t, "e\xCC\x81", 0, eacute, 2));
    fp_tokenizer_free(t);
}

struct pieces {
    char buf[512];
    size_t n;
};

static int collect(void *ctx, const unsigned char *p, size_t len)
{
    struct pieces *x = ctx;
    x->n += (size_t)snprintf(x->buf + x->n, sizeof x->buf - x->n, "[%.*s]", (int)len, (const char *)p);
    return 0;
}

static int split_is(int kind, const char *text, const char *want)
{
    struct pieces x = {{0}, 0};
    if (tok_split(kind, (const unsigned char *)text, strlen(text), collect, &x))
        return 0;
    if (strcmp(x.buf, want))
        fprintf(stderr, "  split(%d, '%s') = %s, want %s\n", kind, text, x.buf, want);
    return !strcmp(x.buf, want);
}

static void test_pretokenize(void)
{
    /* GPT-2: contractions, words with one leading space, number runs,
     * punctuation runs, whitespace keeping its last char for the next word */
    CHECK(split_is(TS_GPT2, "I'm fine, don't you've", "[I]['m][ fine][,][ don]['t][ you]['ve]"));
    CHECK(split_is(TS_GPT2, "abc  def", "[abc][ ][ def]"));
    CHECK(split_is(TS_GPT2, "x   \n\ny", "[x][   \n][\n][y]"));
    CHECK(split_is(TS_GPT2, "123abc 4567", "[123][abc][ 4567]"));
    CHECK(split_is(TS_GPT2, "hello  ", "[hello][  ]"));
    CHECK(split_is(TS_GPT2, "a...!?b", "[a][...!?][b]"));
    CHECK(split_is(TS_GPT2, "'S (x", "['][S][ (][x]"));
    CHECK(split_is(TS_GPT2, "\thello", "[\t][hello]"));
    /* Unicode classes: é and CJK are letters, Arabic-Indic digits numbers,
     * U+3000 ideographic space is whitespace */
    CHECK(split_is(TS_GPT2, "café 東京 \xD9\xA1\xD9\xA2", "[café][ 東京][ \xD9\xA1\xD9\xA2]"));
    CHECK(split_is(TS_GPT2, "a\xE3\x80\x80" "b", "[a][\xE3\x80\x80][b]"));
    /* an emoji is neither letter nor number */
    CHECK(split_is(TS_GPT2, "hi 🙂!", "[hi][ 🙂!]"));
    /* invalid UTF-8 bytes are single "other" characters */
    CHECK(split_is(TS_GPT2, "a\xFF\xFE b", "[a][\xFF\xFE][ b]"));

    /* Llama-3: case-insensitive contractions, digits in threes, one
     * non-letter may lead a word, line breaks kept with punctuation */
    CHECK(split_is(TS_LLAMA3, "'S x'LL", "['S][ x]['LL]"));
    CHECK(split_is(TS_LLAMA3, "1234567", "[123][456][7]"));
    CHECK(split_is(TS_QWEN2, "2024", "[2][0][2][4]"));
    CHECK(split_is(TS_LLAMA3, "Hello, world!\n\nNext", "[Hello][,][ world][!\n\n][Next]"));
    CHECK(split_is(TS_LLAMA3, "foo\n\n  bar", "[foo][\n\n][ ][ bar]"));
    CHECK(split_is(TS_LLAMA3, "(hello \thi", "[(hello][ ][\thi]"));
    CHECK(split_is(TS_LLAMA3, " 12", "[ ][12]"));
    CHECK(split_is(TS_LLAMA3, "a \n b", "[a][ \n][ b]"));
    /* Digits */
    CHECK(split_is(TS_DIGITS_ONE, "ab12c3", "[ab][1][2][c][3]"));
    CHECK(split_is(TS_DIGITS, "ab12c3", "[ab][12][c][3]"));
}

/* invalid UTF-8: a NUL, a lone lead byte, a surrogate, a code point past U+10FFFF */
static const char invalid[] = "\xFF\xFE\x00 abc \xC3( \xED\xA0\x80 surrogate, \xF4\x90\x80\x80 too big";

static void test_round_trip(void)
{
    fp_tokenizer *t = load(BL, "null", "null", 0, 0);
    if (!t)
        return;
    const char *texts[] = {
        "naïve café, résumé; Ångström",
        "日本語のテキストと中文文本",
        "emoji 🙂👍🏽 and flags 🇫🇷 mixed\n\twith tabs",
        "Zalgo z\xCC\xB7\xCC\xA2\xCD\x88" "a\xCC\xB8",
        invalid,
        "   leading and trailing   \n\n\n",
        "hello the yell<|endoftext|><s> w",
    };
    size_t lens[] = {0, 0, 0, 0, sizeof invalid - 1, 0, 0};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t len = lens[i] ? lens[i] : strlen(texts[i]);
        CHECKF(round_trips(t, texts[i], len), "text %zu", i);
    }
    /* arbitrary bytes */
    fp_test_seed(7);
    char buf[300];
    int bad = 0;
    for (int r = 0; r < 200; r++) {
        size_t len = fp_test_u32() % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)(fp_test_u32() & 0xFF);
        bad += !round_trips(t, buf, len);
    }
    CHECK(bad == 0);
    fp_tokenizer_free(t);
}

static void expect_unsupported(const char *json, int code, const char *want)
{
    fp_tokenizer *t = (fp_tokenizer *)1;
    CHECK_ERR(fp_tokenizer_parse(&t, json, strlen(json), "x.json"), code);
    CHECK(t == NULL);
    CHECKF(strstr(fp_errmsg(), want) != NULL, "message '%s' lacks '%s'", fp_errmsg(), want);
}

static void test_unsupported(void)
{
    expect_unsupported("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}},\"pre_tokenizer\":" BL
                       ",\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "'WordPiece'");
    expect_unsupported("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]},\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "'Unigram'");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"pre_tokenizer\":"
                       "{\"type\":\"Metaspace\",\"replacement\":\"_\"},\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "'Metaspace'");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"normalizer\":"
                       "{\"type\":\"Lowercase\"},\"pre_tokenizer\":" BL ",\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "'Lowercase'");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"pre_tokenizer\":" BL
                       ",\"decoder\":{\"type\":\"Metaspace\"}}",
                       FP_EUNSUPPORTED, "decoder type 'Metaspace'");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[],\"byte_fallback\":true},"
                       "\"pre_tokenizer\":" BL ",\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "byte_fallback");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"pre_tokenizer\":"
                       "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\"},"
                       "\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "Split regex");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"decoder\":" BL "}",
                       FP_EUNSUPPORTED, "ByteLevel");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]},"
                       "\"pre_tokenizer\":" BL ",\"decoder\":" BL "}",
                       FP_EFORMAT, "merge 0");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]},"
                       "\"pre_tokenizer\":" BL ",\"decoder\":" BL "}",
                       FP_EFORMAT, "id 0");
    expect_unsupported("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]},"
                       "\"pre_tokenizer\":" BL ",\"decoder\":" BL "}",
                       FP_EFORMAT, "'a'");
    expect_unsupported("{\"model\":", FP_EFORMAT, "not valid JSON");

    /* The Llama-3 pre-tokenizer as written in its tokenizer.json loads. */
    const char *l3 =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"ignore_merges\":true},"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
        "{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
        "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
        "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
        "\"trim_offsets\":true,\"use_regex\":false}]},\"decoder\":" BL "}";
    fp_tokenizer *t;
    CHECK_OK(fp_tokenizer_parse(&t, l3, strlen(l3), "llama3.json"));
    if (t) {
        CHECK(t->n_steps == 2 && t->steps[0].split == TS_LLAMA3 && t->steps[1].split == TS_NONE);
        fp_tokenizer_free(t);
    }
}

int main(void)
{
    test_known_ids();
    test_pretokenize();
    test_round_trip();
    test_unsupported();
    return fp_test_report("test_tokenizer");
}
