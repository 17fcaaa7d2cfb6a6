/* Internals shared by the tokenizer loader, encoder and trainer. */
#ifndef FP_TOKENIZER_INTERNAL_H
#define FP_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/tokenizer.h"
#include "model/hashmap.h"

/* ---- bytes <-> GPT-2 "byte-level" characters ---- */

/* Code point GPT-2 uses to print byte b (printable Latin-1 bytes stand for
 * themselves, the rest are moved to U+0100 upwards). */
uint32_t tok_byte_to_cp(unsigned char b);
/* Inverse: the byte for code point cp, or -1 if cp is not a byte-level char. */
int tok_cp_to_byte(uint32_t cp);
/* Appends the byte-level UTF-8 form of bytes[0..n) to out (at most 2n bytes;
 * returns the length written). */
size_t tok_bytes_to_bl(char *out, const unsigned char *bytes, size_t n);
/* Decodes a byte-level string back to bytes (out has room for strlen(s)).
 * Returns the byte count, or -1 if s holds a char outside the mapping. */
long tok_bl_to_bytes(unsigned char *out, const char *s, size_t n);

/* ---- UTF-8 characters and their classes ---- */

enum { TC_OTHER = 0, TC_LETTER = 1, TC_NUMBER = 2, TC_SPACE = 3 };

typedef struct tok_char {
    uint32_t cp;  /* code point; 0xFFFFFFFF for a byte that is not valid UTF-8 */
    uint32_t off; /* byte offset of the character */
    uint8_t cls;  /* TC_* */
} tok_char;

/* Decodes s[0..n) into chars (room for n + 1; chars[count].off == n).
 * Returns the count. Invalid sequences become one TC_OTHER char per byte. */
size_t tok_decode_chars(tok_char *chars, const unsigned char *s, size_t n);

/* ---- pre-tokenizer splitters ---- */

enum tok_split_kind {
    TS_NONE = 0,       /* the whole piece */
    TS_GPT2 = 1,       /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TS_LLAMA3 = 2,     /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|... */
    TS_QWEN2 = 3,      /* as TS_LLAMA3 with \p{N} (one digit per piece) */
    TS_DIGITS = 4,     /* runs of numbers isolated */
    TS_DIGITS_ONE = 5  /* every number character isolated */
};

/* Calls piece(ctx, s + begin, len) for each piece of s[0..n) in order, pieces
 * covering s exactly. Stops at and returns the first non-zero return of piece;
 * FP_ENOMEM if scratch memory runs out. */
typedef int (*tok_piece_fn)(void *ctx, const unsigned char *p, size_t len);
int tok_split(int kind, const unsigned char *s, size_t n, tok_piece_fn piece, void *ctx);

/* ---- the loaded tokenizer ---- */

struct tok_step {
    int split;            /* enum tok_split_kind */
    int add_prefix_space; /* ByteLevel's: prepend ' ' to a piece not starting with one */
};

struct tok_added {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word;
};

#define TOK_MAX_STEPS 8
#define TOK_MAX_TEMPLATE 8

struct fp_tokenizer {
    size_t n_ids;
    char **token;          /* id -> string as in tokenizer.json (owned) */
    unsigned char **bytes; /* id -> decoded bytes (owned) */
    uint32_t *nbytes;
    unsigned char *special;
    fp_strmap str_to_id;   /* tokenizer.json string -> id */
    fp_strmap bytes_to_id; /* decoded bytes -> id, for ignore_merges */
    int32_t byte_id[256];  /* the single-byte token of each byte, -1 if none */
    fp_u64map merges;      /* (a << 32 | b) -> (rank << 32 | merged id) */
    struct tok_added *added;
    size_t n_added;
    unsigned char added_first[256]; /* 1 if some added token starts with the byte */
    int nfc;
    struct tok_step steps[TOK_MAX_STEPS];
    int n_steps;
    int ignore_merges;
    int32_t unk_id;
    int32_t prefix[TOK_MAX_TEMPLATE], suffix[TOK_MAX_TEMPLATE];
    int n_prefix, n_suffix;
};

#endif
