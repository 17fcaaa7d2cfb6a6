/* Shared by the engine tests: random tiny configs in both the device model's
 * and the double-precision reference's terms, and random parameters in the
 * packed layout (identical tensor order; checked by name). */
#ifndef ENGINE_FIXTURE_H
#define ENGINE_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ref/ref_llama.h"
#include "fedproxy/model.h"
#include "fp_test.h"

typedef struct eng_case {
    const char *name;
    fp_llama_config cfg;
    int B, T;
    int lora_rank;
    float lora_alpha;
    unsigned lora_targets;
} eng_case;

static inline ref_cfg eng_ref_cfg(const fp_llama_config *c)
{
    ref_cfg r = {.hidden = (int)c->hidden, .layers = (int)c->layers, .heads = (int)c->heads,
                 .kv_heads = (int)c->kv_heads, .head_dim = (int)c->head_dim, .inter = (int)c->intermediate,
                 .vocab = (int)c->vocab, .rms_eps = c->rms_eps, .rope_theta = c->rope_theta, .tied = c->tied,
                 .attn_bias = c->attn_bias};
    return r;
}

/* Random base parameters (float values; the reference gets the same values in double). */
static inline void eng_random_params(const fp_llama_config *c, float *p, double *pd, int64_t n)
{
    ref_cfg rc = eng_ref_cfg(c);
    static ref_tensor_info ti[REF_MAX_TENSORS];
    int64_t total;
    int nt = ref_param_layout(&rc, ti, REF_MAX_TENSORS, &total);
    (void)n;
    for (int t = 0; t < nt; t++) {
        int is_norm = strstr(ti[t].name, "norm") != NULL, is_bias = strstr(ti[t].name, ".bias") != NULL;
        int is_embed = strstr(ti[t].name, "embed") != NULL;
        double sc = 0.8 / sqrt((double)ti[t].cols);
        for (int64_t i = 0; i < ti[t].numel; i++) {
            double v = is_norm ? 1.0 + 0.2 * fp_test_normal() : is_bias ? 0.2 * fp_test_normal()
                       : is_embed ? fp_test_normal()
                                  : sc * fp_test_normal();
            p[ti[t].offset + i] = (float)v;
            pd[ti[t].offset + i] = (double)(float)v;
        }
    }
}

static inline void eng_random_lora(const ref_cfg *rc, const ref_lora *lo, float *p, double *pd)
{
    static ref_tensor_info ti[REF_MAX_TENSORS];
    int64_t total;
    int nt = ref_lora_layout(rc, lo, ti, REF_MAX_TENSORS, &total);
    for (int t = 0; t < nt; t++)
        for (int64_t i = 0; i < ti[t].numel; i++) {
            float v = (float)(0.6 / sqrt((double)ti[t].cols) * fp_test_normal());
            p[ti[t].offset + i] = v;
            pd[ti[t].offset + i] = v;
        }
}

/* NMSE of float a against double ref. */
static inline double eng_nmse(const float *a, const double *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

#endif
