/* Layer selection (proxy.h): which LLM layers the proxy keeps and which
 * dropped layers each kept one stands for. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/proxy.h"

int fp_proxy_select(fp_proxy_map *out, const double *scores, int32_t L, int keep_first, int keep_last, int middle,
                    const char *method)
{
    if (!out || !method)
        return fp_seterr(FP_EINVAL, "layer selection: NULL argument");
    if (L < 1 || L > FP_PROXY_MAX_LAYERS)
        return fp_seterr(FP_EINVAL, "layer selection: the LLM has %d layers (1..%d supported)", L,
                         FP_PROXY_MAX_LAYERS);
    if (keep_first < 0 || keep_last < 0 || middle < 0)
        return fp_seterr(FP_EINVAL, "layer selection: negative count (keep-first %d, keep-last %d, middle %d)",
                         keep_first, keep_last, middle);
    if (keep_first + keep_last > L)
        return fp_seterr(FP_EINVAL, "layer selection: keep-first %d + keep-last %d is more than the LLM's %d layers",
                         keep_first, keep_last, L);
    int n_mid = L - keep_first - keep_last;
    if (middle > n_mid)
        return fp_seterr(FP_EINVAL, "layer selection: middle %d is more than the %d layers between the first %d and "
                                    "the last %d", middle, n_mid, keep_first, keep_last);
    if (keep_first + keep_last + middle < 1)
        return fp_seterr(FP_EINVAL, "layer selection: the proxy would have no layer");
    int influence = !strcmp(method, "influence"), uniform = !strcmp(method, "uniform");
    if (!influence && !uniform)
        return fp_seterr(FP_EINVAL, "layer selection: unknown method '%s' (influence or uniform)", method);
    if (influence && !scores)
        return fp_seterr(FP_EINVAL, "layer selection: influence selection needs the layers' scores");
    for (int l = 0; influence && l < L; l++)
        if (!isfinite(scores[l]))
            return fp_seterr(FP_EINVAL, "layer selection: the score of layer %d is not finite", l);
    memset(out, 0, sizeof *out);
    unsigned char keep[FP_PROXY_MAX_LAYERS] = {0};
    for (int l = 0; l < keep_first; l++)
        keep[l] = 1;
    for (int l = L - keep_last; l < L; l++)
        keep[l] = 1;
    if (uniform) {
        /* Offsite-Tuning's uniform_choose_layers: stride (n-1)/(m-1), index
         * round(i * stride) with Python's round (half to even = rint) */
        double stride = middle > 1 ? (double)(n_mid - 1) / (double)(middle - 1) : 0.0;
        for (int i = 0; i < middle; i++)
            keep[keep_first + (int)rint((double)i * stride)] = 1;
    } else {
        /* the `middle` highest scores of the middle layers, ties to the lower layer */
        unsigned char taken[FP_PROXY_MAX_LAYERS] = {0};
        for (int k = 0; k < middle; k++) {
            int best = -1;
            for (int l = keep_first; l < L - keep_last; l++)
                if (!taken[l] && (best < 0 || scores[l] > scores[best]))
                    best = l;
            taken[best] = keep[best] = 1;
        }
    }
    int P = 0;
    for (int l = 0; l < L; l++)
        if (keep[l]) {
            out->layers[P].llm = l;
            out->layers[P].span_first = P == 0 ? 0 : l;
            if (P > 0)
                out->layers[P - 1].span_last = l - 1;
            P++;
        }
    out->layers[P - 1].span_last = L - 1;
    out->llm_layers = L;
    out->proxy_layers = P;
    snprintf(out->select, sizeof out->select, "%s", method);
    out->has_scores = scores != NULL;
    for (int l = 0; scores && l < L; l++)
        out->scores[l] = scores[l];
    return 0;
}
