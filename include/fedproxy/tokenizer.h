/* fedproxy: Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama-3, Qwen2,
 * SmolLM style), and a BPE trainer that writes such a file.
 *
 * Supported: model BPE (vocab, merges in "a b" or ["a","b"] form, unk_token,
 * ignore_merges); normalizer null or NFC; pre_tokenizer ByteLevel (with or
 * without its GPT-2 regex, add_prefix_space) or a Sequence of Split (the GPT-2,
 * Llama-3 or Qwen2 regex, "Isolated"), Digits and ByteLevel; decoder ByteLevel;
 * post_processor null, ByteLevel or TemplateProcessing (its single-sequence
 * template, applied with FP_TOK_ADD_SPECIAL); added_tokens matched verbatim in
 * the raw text before anything else (leftmost, longest; lstrip, rstrip and
 * single_word honoured). Anything else (WordPiece, Unigram, Metaspace,
 * byte_fallback, normalizers that rewrite text, an unknown Split regex...)
 * fails with FP_EUNSUPPORTED naming the kind; a malformed file is FP_EFORMAT.
 *
 * Input text is bytes: invalid UTF-8 is tolerated (each stray byte is its own
 * "other" character), so decode(encode(x)) == x for any x when every byte has a
 * token, as in every byte-level vocabulary. Decoded text is the raw bytes of the
 * tokens and may cut a UTF-8 character when the ids do.
 *
 * The (?i:...) contractions of the Llama-3 pattern fold ASCII case only.
 *
 * Ownership: a fp_tokenizer is immutable after loading; outputs are malloc'd
 * and freed by the caller with free(). Threading: one tokenizer may be used by
 * many threads at once.
 */
#ifndef FEDPROXY_TOKENIZER_H
#define FEDPROXY_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_tokenizer fp_tokenizer;

/* encode flag: wrap the ids in the post_processor's template (e.g. prepend
 * <|begin_of_text|>), as HF does with add_special_tokens=True. */
#define FP_TOK_ADD_SPECIAL 1u
/* decode flag: leave out tokens marked special in added_tokens. */
#define FP_TOK_SKIP_SPECIAL 1u

int fp_tokenizer_load(fp_tokenizer **out, const char *path);
/* json[0..len); what names the document in messages. */
int fp_tokenizer_parse(fp_tokenizer **out, const char *json, size_t len, const char *what);
void fp_tokenizer_free(fp_tokenizer *t);

/* text[0..len) -> *ids (malloc'd, *n_ids entries; NULL when 0). */
int fp_tokenizer_encode(int32_t **ids, size_t *n_ids, const fp_tokenizer *t, const char *text,
                        size_t len, unsigned flags);
/* ids -> *text (malloc'd, NUL-terminated, *len bytes without the NUL). An id
 * outside the vocabulary is FP_EINVAL. */
int fp_tokenizer_decode(char **text, size_t *len, const fp_tokenizer *t, const int32_t *ids,
                        size_t n, unsigned flags);

/* One past the largest id (vocab and added tokens). */
size_t fp_tokenizer_vocab_size(const fp_tokenizer *t);
/* Token string as written in tokenizer.json (byte-level form, "Ġthe") -> id; -1 if none. */
int32_t fp_tokenizer_token_to_id(const fp_tokenizer *t, const char *token);
/* id -> token string as written in tokenizer.json; NULL for an unused id. */
const char *fp_tokenizer_id_to_token(const fp_tokenizer *t, int32_t id);
/* 1 if id is an added token marked special. */
int fp_tokenizer_is_special(const fp_tokenizer *t, int32_t id);

/* ---- training ---- */

typedef struct fp_bpe_train_opts {
    size_t vocab_size;                 /* total: special tokens + 256 bytes + merges */
    const char *const *special_tokens; /* get ids 0..n_special-1, in this order */
    size_t n_special;
    uint64_t min_frequency;            /* stop before merging a pair seen fewer times (>= 1) */
} fp_bpe_train_opts;

/* Learns merges from texts[i][0..lens[i]) and returns a tokenizer.json text
 * (malloc'd, NUL-terminated) that HF tokenizers loads: BPE model, ByteLevel
 * pre-tokenizer (GPT-2 regex, no prefix space) and decoder, special tokens as
 * added_tokens. The most frequent pair is merged first; ties go to the pair of
 * lower ids, so the result is deterministic. Stops at vocab_size or when no pair
 * reaches min_frequency. */
int fp_bpe_train(char **json, const fp_bpe_train_opts *opts, const char *const *texts,
                 const size_t *lens, size_t n);
/* The same over whole files (each read, counted and released in turn). */
int fp_bpe_train_files(char **json, const fp_bpe_train_opts *opts, const char *const *paths,
                       size_t n);

#ifdef __cplusplus
}
#endif
#endif
