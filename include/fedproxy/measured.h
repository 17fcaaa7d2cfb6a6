/* fedproxy: what fp-probe measured on a device, and the kernel variants its
 * autotuner chose, cached per device UUID + driver version + overlay in the
 * user's cache directory (profile-<uuid>-<driver>-<overlay>.json).
 *
 * fp_ctx_create loads the entry for its device if one exists (fp_ctx_measured);
 * kernels look up their tuned variant with fp_measured_tune_get and fall back to
 * their own default when there is none. Plain data; no ownership.
 */
#ifndef FEDPROXY_MEASURED_H
#define FEDPROXY_MEASURED_H

#include <stddef.h>

#include "fedproxy/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_TUNE_MAX 64
#define FP_TUNE_KEY_MAX 64
#define FP_TUNE_VALUE_MAX 96

typedef struct fp_measured {
    int valid;            /* 1 when loaded or measured */
    double copy_gbps;     /* device copy kernel, read+write bytes per second / 1e9 */
    double h2d_gbps, d2h_gbps;
    double dispatch_us;   /* per empty dispatch inside one command buffer */
    double submit_us;     /* per submit+wait of one empty dispatch */
    double matmul_gflops; /* best f32 matmul at 1024^3 (0 if not measured) */
    unsigned ntune;
    struct { char key[FP_TUNE_KEY_MAX]; char value[FP_TUNE_VALUE_MAX]; } tune[FP_TUNE_MAX];
} fp_measured;

/* The tuned value for key ("matmul.f32.large" -> "matmul_reg_4x4"), or NULL. */
const char *fp_measured_tune_get(const fp_measured *m, const char *key);

/* Sets or replaces key. FP_EOVERFLOW when the table is full, FP_EINVAL if too long. */
int fp_measured_tune_set(fp_measured *m, const char *key, const char *value);

/* JSON form (malloc'd string, caller frees) and parsing (strict: FP_EFORMAT). */
int fp_measured_to_json(char **out, const fp_measured *m);
int fp_measured_parse_json(fp_measured *out, const char *json, size_t len);

/* The cache file path for a profile (its overlay is part of the name). */
int fp_measured_path(char *out, size_t out_len, const fp_profile *p);

/* Loads from / saves (atomically) to the cache. Load: FP_ENOTFOUND if never measured. */
int fp_measured_load(fp_measured *out, const fp_profile *p);
int fp_measured_save(const fp_measured *m, const fp_profile *p);

#ifdef __cplusplus
}
#endif
#endif
