/* Internal growable byte buffer for building JSON text and token strings.
 * Errors are sticky: after a failed allocation every append is a no-op and
 * fp_sb_finish reports FP_ENOMEM once, so builders need not check each call. */
#ifndef FP_MODEL_STRBUF_H
#define FP_MODEL_STRBUF_H

#include <stddef.h>

#include "error_internal.h"

typedef struct fp_sb {
    char *p; /* NUL-terminated while no error */
    size_t len, cap;
    int failed;
} fp_sb;

void fp_sb_init(fp_sb *b);
void fp_sb_free(fp_sb *b);
void fp_sb_add(fp_sb *b, const void *data, size_t n);
void fp_sb_puts(fp_sb *b, const char *s);
void fp_sb_printf(fp_sb *b, const char *fmt, ...) FP_PRINTF(2, 3);
/* Appends s[0..n) as a quoted JSON string, escaping quotes, backslashes and
 * control bytes; other bytes (UTF-8) pass through unchanged. */
void fp_sb_json_str(fp_sb *b, const char *s, size_t n);
/* 0, or FP_ENOMEM (message set, buffer freed). */
int fp_sb_finish(fp_sb *b);

#endif
