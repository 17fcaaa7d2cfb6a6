/* Byte-level character mapping and UTF-8 decoding with the character classes
 * the pre-tokenizer patterns use (\p{L}, \p{N}, \s). */
#include "model/tokenizer_internal.h"

#include <pthread.h>
#include <utf8proc.h>

/* GPT-2's table: bytes that are printable in Latin-1 keep their code point;
 * the other 68 (controls, space, DEL, NBSP, soft hyphen...) take U+0100,
 * U+0101, ... in byte order. This keeps every token printable and unique. */
static int printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t tok_byte_to_cp(unsigned char b)
{
    if (printable(b))
        return b;
    uint32_t k = 0;
    for (unsigned i = 0; i < b; i++)
        k += !printable(i);
    return 256 + k;
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t k = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!printable(b) && k-- == 0)
            return (int)b;
    return -1;
}

static uint32_t cp_of_byte[256];
static int16_t byte_of_cp[256 + 68];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (unsigned b = 0; b < 256; b++)
        cp_of_byte[b] = tok_byte_to_cp((unsigned char)b);
    for (unsigned c = 0; c < 256 + 68; c++)
        byte_of_cp[c] = (int16_t)tok_cp_to_byte(c);
}

static void init_tables(void) { pthread_once(&tables_once, build_tables); }

size_t tok_bytes_to_bl(char *out, const unsigned char *bytes, size_t n)
{
    init_tables();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp_of_byte[bytes[i]];
        if (c < 0x80) {
            out[k++] = (char)c;
        } else { /* all mapped code points are below U+0800: two bytes */
            out[k++] = (char)(0xC0 | (c >> 6));
            out[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return k;
}

long tok_bl_to_bytes(unsigned char *out, const char *s, size_t n)
{
    init_tables();
    const unsigned char *u = (const unsigned char *)s;
    long k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        if (u[i] < 0x80) {
            c = u[i++];
        } else if ((u[i] & 0xE0) == 0xC0 && i + 1 < n && (u[i + 1] & 0xC0) == 0x80) {
            c = ((uint32_t)(u[i] & 0x1F) << 6) | (u[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;
        }
        if (c >= 256 + 68 || byte_of_cp[c] < 0)
            return -1;
        out[k++] = (unsigned char)byte_of_cp[c];
    }
    return k;
}

static int is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint8_t classify(uint32_t c)
{
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return TC_LETTER;
        if (c >= '0' && c <= '9')
            return TC_NUMBER;
        return is_white_space(c) ? TC_SPACE : TC_OTHER;
    }
    if (is_white_space(c))
        return TC_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return TC_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return TC_NUMBER;
    default: return TC_OTHER;
    }
}

size_t tok_decode_chars(tok_char *chars, const unsigned char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        uint32_t c = 0xFFFFFFFFu;
        size_t len = 1;
        if (b < 0x80) {
            c = b;
        } else {
            size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
            if (need && i + need <= n) {
                uint32_t v = b & (0x7F >> need);
                size_t j = 1;
                for (; j < need && (s[i + j] & 0xC0) == 0x80; j++)
                    v = (v << 6) | (s[i + j] & 0x3F);
                static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
                if (j == need && v >= min_of[need] && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) {
                    c = v;
                    len = need;
                }
            }
        }
        chars[k].cp = c;
        chars[k].off = (uint32_t)i;
        chars[k].cls = c == 0xFFFFFFFFu ? TC_OTHER : classify(c);
        k++;
        i += len;
    }
    chars[k].cp = 0;
    chars[k].off = (uint32_t)n;
    chars[k].cls = TC_OTHER;
    return k;
}
