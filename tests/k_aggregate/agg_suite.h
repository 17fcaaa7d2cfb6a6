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

/* NMSE <= tol (exact zero reference: every value must be zero). */
int agg_close(const char *what, const float *a, const float *ref, int64_t n, double tol);
#endif
