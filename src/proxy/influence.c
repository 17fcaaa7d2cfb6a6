/* Block influence (proxy.h): how much each layer turns the residual stream,
 * 1 - mean cos(h_in, h_out), from the engine's device forward; the cosine
 * sums are accumulated on the host in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/proxy.h"

int fp_proxy_block_influence(double *scores, fp_model *m, const int32_t *tokens, int64_t n, int64_t seq,
                             int64_t batch)
{
    if (!scores || !m || !tokens)
        return fp_seterr(FP_EINVAL, "block influence: NULL argument");
    if (seq < 1 || batch < 1)
        return fp_seterr(FP_EINVAL, "block influence: sequence %lld, batch %lld (both must be >= 1)", (long long)seq,
                         (long long)batch);
    int64_t windows = n / seq;
    if (windows < 1)
        return fp_seterr(FP_EINVAL, "block influence: %lld calibration tokens, fewer than one window of %lld",
                         (long long)n, (long long)seq);
    const fp_llama_config *c = fp_model_cfg(m);
    int64_t L = c->layers, C = c->hidden, V = c->vocab;
    for (int64_t i = 0; i < windows * seq; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return fp_seterr(FP_EINVAL, "block influence: token %lld is id %d, outside the vocabulary of %lld",
                             (long long)i, tokens[i], (long long)V);
    int64_t B = batch < windows ? batch : windows, N = B * seq;
    int rc = fp_model_plan(m, B, seq, FP_PLAN_ACTIVATIONS, 0);
    if (rc)
        return rc;
    double *cos_sum = calloc((size_t)L, sizeof *cos_sum);
    float *h0 = malloc((size_t)(N * C) * sizeof *h0), *h1 = malloc((size_t)(N * C) * sizeof *h1);
    int32_t *ids = malloc((size_t)N * sizeof *ids);
    fp_tensor *tid = NULL;
    if (!cos_sum || !h0 || !h1 || !ids)
        rc = fp_seterr(FP_ENOMEM, "block influence: out of host memory");
    if (!rc)
        rc = fp_tensor_new(&tid, fp_model_ctx(m), FP_I32, 1, &N);
    int64_t counted = 0;
    for (int64_t w = 0; !rc && w + B <= windows; w += B) {
        /* a final group smaller than B is dropped with the plan's fixed shape;
         * it is at most B - 1 windows of the first calib_tokens */
        memcpy(ids, tokens + w * seq, (size_t)N * sizeof *ids);
        rc = fp_tensor_upload(tid, ids, (size_t)N * sizeof *ids);
        fp_stream *s = NULL;
        if (!rc)
            rc = fp_stream_new(&s, fp_model_ctx(m));
        if (!rc)
            rc = fp_model_forward(m, s, tid, NULL);
        if (!rc)
            rc = fp_stream_run(s);
        fp_stream_free(s);
        if (!rc)
            rc = fp_model_hidden(m, 0, h0, N * C);
        for (int64_t l = 0; !rc && l < L; l++) {
            rc = fp_model_hidden(m, l + 1, h1, N * C);
            for (int64_t t = 0; !rc && t < N; t++) {
                const float *a = h0 + t * C, *b = h1 + t * C;
                double ab = 0, aa = 0, bb = 0;
                for (int64_t k = 0; k < C; k++) {
                    ab += (double)a[k] * b[k];
                    aa += (double)a[k] * a[k];
                    bb += (double)b[k] * b[k];
                }
                /* a zero vector has no direction: count it as unchanged */
                cos_sum[l] += (aa > 0 && bb > 0) ? ab / sqrt(aa * bb) : 1.0;
            }
            float *sw = h0;
            h0 = h1;
            h1 = sw;
        }
        counted += N;
    }
    for (int64_t l = 0; !rc && l < L; l++)
        scores[l] = 1.0 - cos_sum[l] / (double)counted;
    fp_tensor_free(tid);
    free(ids);
    free(h0);
    free(h1);
    free(cos_sum);
    return rc;
}
