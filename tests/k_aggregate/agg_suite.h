/* Shared body of the aggregation kernel tests: every device op against its C
 * reference on one context, for a list of (K, D) cases. */
#ifndef AGG_SUITE_H
#define AGG_SUITE_H
#include <stdint.h>

#include "fedproxy/runtime.h"

typedef struct agg_case {
    int64_t K, D;
    int order_gathered; /* median/trimmed mean too big for one binding: must gather through work */
} agg_case;

/* Runs every op on every case; prints the variants used. */
void agg_suite(fp_ctx *ctx, const agg_case *cases, int ncases);

/* How many distinct "op=variant" lines seen since the last agg_suite_forget
 * contain needle (e.g. "wsum=agg_wsum_tex_vec4", or "_tex" for any texel variant). */
int agg_suite_seen(const char *needle);
/* ... lines that contain both a and b */
int agg_suite_seen2(const char *a, const char *b);
void agg_suite_forget(void);

/* NMSE <= tol (exact zero reference: every value must be zero). */
int agg_close(const char *what, const float *a, const float *ref, int64_t n, double tol);
#endif
