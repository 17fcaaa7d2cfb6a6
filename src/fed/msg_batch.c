/* Envelope decode + signature check over worker threads; see fed_internal.h. */
#include <stdio.h>

#include "agg_parallel.h"
#include "error_internal.h"
#include "fed_internal.h"

typedef struct decode_job {
    fed_decode_item *items;
    uint64_t max_payload;
} decode_job;

static int decode_run(void *arg, unsigned t, size_t i0, size_t i1)
{
    (void)t;
    decode_job *j = arg;
    for (size_t i = i0; i < i1; i++) {
        fed_decode_item *it = &j->items[i];
        it->rc = fp_msg_decode(&it->msg, it->buf, it->len, j->max_payload);
        /* the message is this thread's (error.c keeps it thread-local) */
        snprintf(it->err, sizeof it->err, "%s", it->rc ? fp_errmsg() : "");
    }
    return 0;
}

int fed_decode_batch(fed_decode_item *items, size_t n, uint64_t max_payload)
{
    if (!items && n)
        return fp_seterr(FP_EINVAL, "fed_decode_batch: NULL items");
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += items[i].len;
    decode_job j = {items, max_payload};
    /* agg_threads counts 4-byte values: 2^20 of them = 4 MiB of envelopes */
    return agg_parallel(agg_threads(bytes / 4, n), n, decode_run, &j);
}
