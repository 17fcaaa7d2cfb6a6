/* Minimal test harness: CHECK macros that count, a closing "N passed, N failed"
 * line, and helpers for Vulkan tests (a context with validation that fails the
 * test on any validation message). */
#ifndef FP_TEST_H
#define FP_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fedproxy/error.h"

extern int fp_test_passed, fp_test_failed;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (cond) {                                                                              \
            fp_test_passed++;                                                                    \
        } else {                                                                                 \
            fp_test_failed++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
        }                                                                                        \
    } while (0)

#define CHECKF(cond, ...)                                                                        \
    do {                                                                                         \
        if (cond) {                                                                              \
            fp_test_passed++;                                                                    \
        } else {                                                                                 \
            fp_test_failed++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)

/* expr must return 0; on failure prints the library's error message. */
#define CHECK_OK(expr)                                                                           \
    do {                                                                                         \
        int rc_ = (expr);                                                                        \
        if (rc_ == 0) {                                                                          \
            fp_test_passed++;                                                                    \
        } else {                                                                                 \
            fp_test_failed++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s -> %d (%s): %s\n", __FILE__, __LINE__, #expr, rc_,  \
                    fp_strerror(rc_), fp_errmsg());                                              \
        }                                                                                        \
    } while (0)

/* expr must fail with code; the error message must be non-empty. */
#define CHECK_ERR(expr, code)                                                                    \
    do {                                                                                         \
        fp_errclear();                                                                           \
        int rc_ = (expr);                                                                        \
        if (rc_ == (code) && fp_errmsg()[0]) {                                                   \
            fp_test_passed++;                                                                    \
        } else {                                                                                 \
            fp_test_failed++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s -> %d (%s), expected %d; message '%s'\n", __FILE__,  \
                    __LINE__, #expr, rc_, fp_strerror(rc_), (code), fp_errmsg());                \
        }                                                                                        \
    } while (0)

/* Prints "<name>: N passed, N failed" and returns the process exit code. */
int fp_test_report(const char *name);

/* Deterministic random numbers for test inputs. */
void fp_test_seed(uint64_t seed);
uint32_t fp_test_u32(void);
float fp_test_uniform(float lo, float hi);
float fp_test_normal(void);

/* Normalised mean squared error sum((a-b)^2)/sum(b^2) (b is the reference) and
 * the max absolute difference. */
double fp_test_nmse(const float *a, const float *ref, size_t n);
double fp_test_maxerr(const float *a, const float *ref, size_t n);

/* A unique temporary directory under the build tree, created; returns its path. */
const char *fp_test_tmpdir(const char *tag);

/* Runs the shell command cmd, stores its standard output in *out (malloc'd,
 * NUL-terminated, the caller frees it; empty if the command could not be
 * started) and returns its exit status, or -1 if it could not be started or
 * did not exit normally. For tests of the tools. */
int fp_test_run(const char *cmd, char **out);

#endif

/* Vulkan tests: a context with the validation layer on (FP_VALIDATE is set by
 * CTest; this forces it anyway) on the overlay `profile` (NULL: $FP_PROFILE).
 * Exits the test with code 2 if no context can be made. fp_test_ctx_done checks
 * that the layer said nothing, then destroys the context. */
struct fp_ctx;
struct fp_ctx *fp_test_ctx(const char *profile);
void fp_test_ctx_done(struct fp_ctx *ctx);
/* Replaces the measured-profile cache entry of ctx's device and overlay with
 * the n tuned keys kv[2i] = kv[2i+1] (n = 0: no entry at all), as fp-probe
 * would have stored them; contexts created afterwards load it. */
void fp_test_store_tune(struct fp_ctx *ctx, const char *const *kv, int n);
