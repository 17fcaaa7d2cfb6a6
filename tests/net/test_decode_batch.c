/* The server's batch decoder (fed_decode_batch, src/fed/msg_batch.c): each
 * envelope gets exactly what fp_msg_decode gives it alone (result, header,
 * payload pointer, error message), on one thread and on several, for good
 * envelopes and every kind of bad one mixed together. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fed/fed_internal.h"
#include "fedproxy/identity.h"
#include "fedproxy/msg.h"
#include "fp_test.h"

#define N 41
#define MAXP 300000u

static void compare(fed_decode_item *it, uint8_t **buf, const size_t *len, const char *threads)
{
    setenv("FP_AGG_THREADS", threads, 1);
    for (int i = 0; i < N; i++) {
        memset(&it[i], 0xa5, sizeof it[i]); /* what the batch does not fill stays visible */
        it[i].buf = buf[i];
        it[i].len = len[i];
    }
    CHECK_OK(fed_decode_batch(it, N, MAXP));
    int same = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        fp_msg m;
        int rc = fp_msg_decode(&m, buf[i], len[i], MAXP);
        int ok = it[i].rc == rc;
        if (ok && rc == 0)
            ok = it[i].msg.payload == m.payload && it[i].msg.payload_len == m.payload_len &&
                 !memcmp(&it[i].msg.h, &m.h, sizeof m.h);
        if (ok && rc != 0)
            ok = !strcmp(it[i].err, fp_errmsg()) && it[i].err[0];
        same += ok;
        bad += rc != 0;
    }
    CHECKF(same == N, "FP_AGG_THREADS=%s: %d of %d items as fp_msg_decode alone", threads, same, N);
    CHECKF(bad == 19, "%d refused, want 19 (16 bad signatures, one truncated, one garbled, one too large)", bad);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    fp_identity id;
    CHECK_OK(fp_identity_keygen(&id));
    fp_test_seed(11);
    uint8_t *buf[N];
    size_t len[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        fp_msg_header h;
        memset(&h, 0, sizeof h);
        memset(h.session, 0x33, sizeof h.session);
        h.round = 3;
        h.stage = FP_STAGE_TRAIN;
        h.type = FP_MSG_UPDATE;
        h.kind = FP_PAYLOAD_TENSOR;
        h.dtype = FP_DTYPE_F32;
        h.ndim = 1;
        memcpy(h.sender, id.pk, 32);
        h.seq = (uint64_t)i + 1;
        /* sizes up to MAXP + 4000 floats' bytes: over 4 MiB in all, so the
         * default thread rule would split it too */
        size_t n = 4 * (1000 + fp_test_u32() % 74000);
        if (i == 7)
            n = MAXP + 4000; /* over the payload limit */
        h.dims[0] = n / 4;
        uint8_t *p = malloc(n);
        for (size_t k = 0; k < n; k++)
            p[k] = (uint8_t)fp_test_u32();
        CHECK_OK(fp_msg_encode_alloc(&buf[i], &len[i], &h, p, n, &id));
        free(p);
        if (i % 5 == 1)
            buf[i][len[i] - 1] ^= 0x40; /* signature */
        else if (i % 5 == 3)
            buf[i][FP_MSG_HEADER_BYTES + 5] ^= 1; /* payload under the signature */
        else if (i == 10)
            len[i] -= 1; /* truncated */
        else if (i == 20)
            memset(buf[i], 0x7f, 64); /* header garbage */
        total += len[i];
    }
    CHECKF(total > ((size_t)4 << 20), "%zu bytes in all", total);
    fed_decode_item *it = malloc(N * sizeof *it);
    compare(it, buf, len, "1");
    compare(it, buf, len, "3");
    compare(it, buf, len, "16");
    CHECK_ERR(fed_decode_batch(NULL, 2, MAXP), FP_EINVAL);
    CHECK_OK(fed_decode_batch(NULL, 0, MAXP));
    unsetenv("FP_AGG_THREADS");
    free(it);
    for (int i = 0; i < N; i++)
        free(buf[i]);
    return fp_test_report("test_decode_batch");
}
