/* libFuzzer targets for the model-format and configuration parsers that read
 * files a user or a peer hands us (DESIGN.md section 8.4). One source, built
 * once per target with FUZZ_TARGET set:
 *   FUZZ_SAFETENSORS  the bytes are a .safetensors file: fp_st_open, then every
 *                     tensor must lie inside the file and convert if it is a float
 *   FUZZ_CONFIG       first byte even: HF config.json (fp_model_config_parse; a
 *                     parsed config must survive to_json and parse back equal);
 *                     odd: the "dp" section of server.json (fp_dp_config_parse)
 *   FUZZ_TOKENIZER    tokenizer.json: fp_tokenizer_parse, then encode/decode a
 *                     fixed text; ids must be in the vocabulary
 * A broken invariant aborts so the fuzzer reports it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_formats.h"

#if FUZZ_TARGET == FUZZ_SAFETENSORS
#include "fedproxy/safetensors.h"

static void run(const uint8_t *p, size_t n)
{
    /* fp_st_open maps a file: give it one (per process, rewritten each time). */
    static char path[256];
    if (!path[0]) {
        const char *d = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/fp-fuzz-st-%ld.safetensors", d && d[0] ? d : "/tmp", (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(p, 1, n, f) != n)
        abort();
    fclose(f);
    fp_st_file *st = NULL;
    if (fp_st_open(&st, path) == 0) {
        for (size_t i = 0; i < fp_st_count(st); i++) {
            const fp_st_tensor *t = fp_st_at(st, i);
            if (!t || !t->name || fp_st_find(st, t->name) != t)
                abort();
            if (t->nbytes > n || t->nbytes != t->numel * fp_st_dtype_size(t->dtype))
                abort();
            if (t->nbytes) { /* both ends readable (a mapping overrun faults here) */
                const volatile uint8_t *d = t->data;
                (void)d[0];
                (void)d[t->nbytes - 1];
            }
            if (t->numel <= 4096 && (t->dtype == FP_ST_F32 || t->dtype == FP_ST_F16 || t->dtype == FP_ST_BF16)) {
                float *o = malloc(t->numel * sizeof(float) + 1);
                if (!o || fp_st_to_f32(o, t->numel, t) != 0)
                    abort();
                free(o);
            }
        }
        fp_st_close(st);
    }
    unlink(path);
}

#elif FUZZ_TARGET == FUZZ_CONFIG
#include "fedproxy/dp.h"
#include "fedproxy/model_config.h"

static void run(const uint8_t *p, size_t n)
{
    if (n < 1)
        return;
    const char *j = (const char *)p + 1;
    size_t len = n - 1;
    if (p[0] % 2 == 0) {
        fp_model_config c;
        if (fp_model_config_parse(&c, j, len, "fuzz") != 0)
            return;
        char *out = NULL;
        fp_model_config c2;
        if (fp_model_config_to_json(&out, &c) != 0)
            abort();
        if (fp_model_config_parse(&c2, out, strlen(out), "fuzz round trip") != 0 ||
            c2.hidden_size != c.hidden_size || c2.num_hidden_layers != c.num_hidden_layers ||
            c2.vocab_size != c.vocab_size || c2.arch != c.arch || c2.n_eos != c.n_eos)
            abort();
        free(out);
    } else {
        fp_dp_config d;
        if (fp_dp_config_parse(&d, j, len) == 0 &&
            !(d.clip > 0 && d.noise_multiplier > 0 && d.delta > 0 && d.delta < 1 && d.mode != FP_DP_OFF))
            abort();
    }
}

#elif FUZZ_TARGET == FUZZ_TOKENIZER
#include "fedproxy/tokenizer.h"

static void run(const uint8_t *p, size_t n)
{
    fp_tokenizer *t = NULL;
    if (fp_tokenizer_parse(&t, (const char *)p, n, "fuzz") != 0)
        return;
    static const char text[] = "Hello, world! 123 \xc3\xa9t\xc3\xa9 \xe2\x80\x94 <s> tabs\tand\nnewlines";
    int32_t *ids = NULL;
    size_t k = 0;
    if (fp_tokenizer_encode(&ids, &k, t, text, sizeof text - 1, 0) == 0) {
        for (size_t i = 0; i < k; i++)
            if (ids[i] < 0 || (size_t)ids[i] >= fp_tokenizer_vocab_size(t))
                abort();
        char *s = NULL;
        size_t sl = 0;
        if (fp_tokenizer_decode(&s, &sl, t, ids, k, 0) == 0)
            free(s);
        free(ids);
    }
    fp_tokenizer_free(t);
}
#else
#error "FUZZ_TARGET must be one of FUZZ_SAFETENSORS, FUZZ_CONFIG, FUZZ_TOKENIZER"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    return 0;
}
