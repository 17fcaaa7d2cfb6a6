/* FP_TRACE_MS (runtime.h): slow stream runs, staged transfers and pipeline
 * builds reported on stderr, so a new device shows where its time goes. */
#include <stdarg.h>
#include <stdio.h>

#include "fedproxy/probe.h"
#include "vk_internal.h"

double fp_trace_begin(const fp_ctx *ctx)
{
    return ctx->trace_ms >= 0 ? fp_now() : 0;
}

void fp_trace_end(const fp_ctx *ctx, double t0, const char *fmt, ...)
{
    if (ctx->trace_ms < 0)
        return;
    double ms = (fp_now() - t0) * 1e3;
    if (ms < ctx->trace_ms)
        return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fp trace: %s: %.1f ms\n", what, ms);
}
