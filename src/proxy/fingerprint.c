/* The weights' fingerprint (proxy.h): BLAKE2b-256 over every tensor of a
 * model directory in sorted name order, so that it names the weights, not
 * the file (shard layout, header order and padding do not matter). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/proxy.h"
#include "fedproxy/safetensors.h"

static int by_name(const void *a, const void *b)
{
    const fp_st_tensor *x = *(const fp_st_tensor *const *)a, *y = *(const fp_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* a little-endian length prefix keeps "ab"+"c" apart from "a"+"bc" */
static void put_u64(crypto_generichash_state *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    crypto_generichash_update(h, b, sizeof b);
}

static void put_bytes(crypto_generichash_state *h, const void *p, size_t n)
{
    put_u64(h, n);
    crypto_generichash_update(h, p, n);
}

int fp_model_fingerprint(unsigned char out[FP_PROXY_FINGERPRINTBYTES], const char *model_dir)
{
    if (!out || !model_dir)
        return fp_seterr(FP_EINVAL, "fingerprint: NULL argument");
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "fingerprint: libsodium failed to initialise");
    fp_st_file *st = NULL;
    int rc = fp_st_open_dir(&st, model_dir);
    if (rc)
        return rc;
    size_t n = fp_st_count(st);
    const fp_st_tensor **t = malloc((n ? n : 1) * sizeof *t);
    if (!t) {
        fp_st_close(st);
        return fp_seterr(FP_ENOMEM, "fingerprint: out of host memory");
    }
    for (size_t i = 0; i < n; i++)
        t[i] = fp_st_at(st, i);
    qsort(t, n, sizeof *t, by_name);
    crypto_generichash_state h;
    crypto_generichash_init(&h, (const unsigned char *)"fedproxy-weights-v1", 19, FP_PROXY_FINGERPRINTBYTES);
    put_u64(&h, n);
    for (size_t i = 0; i < n; i++) {
        const char *dt = fp_st_dtype_name(t[i]->dtype);
        put_bytes(&h, t[i]->name, strlen(t[i]->name));
        put_bytes(&h, dt, strlen(dt));
        put_u64(&h, (uint64_t)t[i]->rank);
        for (int r = 0; r < t[i]->rank; r++)
            put_u64(&h, (uint64_t)t[i]->shape[r]);
        put_bytes(&h, t[i]->data, t[i]->nbytes);
    }
    crypto_generichash_final(&h, out, FP_PROXY_FINGERPRINTBYTES);
    free(t);
    fp_st_close(st);
    return 0;
}
