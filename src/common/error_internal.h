/* Internal helpers to set the thread-local error message (see fedproxy/error.h). */
#ifndef FP_ERROR_INTERNAL_H
#define FP_ERROR_INTERNAL_H

#include "fedproxy/error.h"

#if defined(__GNUC__)
#define FP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FP_PRINTF(a, b)
#endif

/* Formats the message, stores it for fp_errmsg(), and returns code (so callers
 * can write `return fp_seterr(FP_EINVAL, "...")`). */
int fp_seterr(int code, const char *fmt, ...) FP_PRINTF(2, 3);

/* Prepends "context: " to the current message and returns code unchanged;
 * used while unwinding so the final message reads outermost-first. */
int fp_adderr(int code, const char *fmt, ...) FP_PRINTF(2, 3);

/* Warnings go to stderr unless FP_QUIET is set; they never change fp_errmsg(). */
void fp_warn(const char *fmt, ...) FP_PRINTF(1, 2);

#endif
