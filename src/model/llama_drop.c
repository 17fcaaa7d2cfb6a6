/* LoRA dropout (model.h): a counter-based hash mask, so nothing is stored
 * between the forward and the backward; the kernel is shaders/engine/dropout.comp. */
#include <math.h>

#include "error_internal.h"
#include "llama_internal.h"

static uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t fp_lora_dropout_key(uint64_t seed, uint64_t ctr, uint32_t salt)
{
    uint32_t inner = (uint32_t)(seed >> 32) + (uint32_t)ctr * 0x9E3779B1u + salt * 0x85EBCA77u +
                     (uint32_t)(ctr >> 32) * 0xC2B2AE3Du;
    return fmix32((uint32_t)seed ^ fmix32(inner));
}

uint32_t fp_lora_dropout_threshold(float p)
{
    if (!(p > 0))
        return 0;
    double t = floor((double)p * 4294967296.0);
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

int fp_lora_dropout_keep(uint32_t key, uint32_t i, uint32_t threshold)
{
    return fmix32((i * 0x9E3779B1u) ^ key) >= threshold;
}

int fp_model_lora_set_dropout(fp_model *m, float p, uint64_t seed)
{
    if (!m)
        return fp_seterr(FP_EINVAL, "lora dropout: NULL model");
    if (!(p >= 0.0f && p < 1.0f))
        return fp_seterr(FP_EINVAL, "lora dropout: probability %g is not in [0, 1)", (double)p);
    m->drop_p = p;
    m->drop_seed = seed;
    return 0;
}

float fp_model_lora_dropout(const fp_model *m) { return m ? m->drop_p : 0.0f; }

void fp_model_lora_dropout_seek(fp_model *m, uint64_t ctr)
{
    if (m)
        m->drop_ctr = ctr;
}

struct drop_push {
    uint32_t n, key, thresh;
    float scale;
};

int llm_dropout(fp_model *m, fp_stream *s, fp_tensor *y, const fp_tensor *x, uint64_t ctr, uint32_t salt)
{
    int64_t n = fp_tensor_numel(x);
    if (fp_tensor_numel(y) != n || x->dtype != FP_F32 || y->dtype != FP_F32)
        return fp_seterr(FP_ESHAPE, "lora dropout: %s[%lld] into %s[%lld]", fp_dtype_name(x->dtype), (long long)n,
                         fp_dtype_name(y->dtype), (long long)fp_tensor_numel(y));
    if (n > (int64_t)UINT32_MAX)
        return fp_seterr(FP_EUNSUPPORTED, "lora dropout: %lld elements (at most 2^32)", (long long)n);
    struct drop_push pc = {(uint32_t)n, fp_lora_dropout_key(m->drop_seed, ctr, salt),
                           fp_lora_dropout_threshold(m->drop_p), 1.0f / (1.0f - m->drop_p)};
    uint32_t wg = fp_basic_wg(fp_stream_ctx(s)), gx, gy;
    uint32_t spec[3] = {wg, 1, 1};
    fp_pipeline *p;
    int rc = fp_pipeline_get(&p, fp_stream_ctx(s), "lora_dropout", spec, 3);
    if (rc)
        return rc;
    fp_grid_1d((uint32_t)n, wg, &gx, &gy);
    fp_binding b[2] = {FP_R(x), FP_W(y)};
    return fp_stream_dispatch(s, p, b, 2, &pc, sizeof pc, gx, gy, 1);
}
