/* Building the proxy model from the LLM (proxy.h): the same shapes with P of
 * its L layers, every tensor copied exactly (no re-initialisation), so an
 * undistilled proxy layer is bit for bit its LLM layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/proxy.h"

/* "model.layers.I.rest" of the proxy -> the LLM's name for it */
static int llm_name(char *out, size_t cap, const char *proxy_name, const fp_proxy_map *map)
{
    int i = -1, pos = 0;
    if (sscanf(proxy_name, "model.layers.%d.%n", &i, &pos) == 1 && pos > 0) {
        if (i < 0 || i >= map->proxy_layers)
            return fp_seterr(FP_EINVAL, "proxy build: tensor %s is outside the map's %d layers", proxy_name,
                             map->proxy_layers);
        snprintf(out, cap, "model.layers.%d.%s", map->layers[i].llm, proxy_name + pos);
    } else {
        snprintf(out, cap, "%s", proxy_name);
    }
    return 0;
}

int fp_proxy_build(fp_model **out, const fp_model *llm, const fp_proxy_map *map)
{
    if (!out || !llm || !map)
        return fp_seterr(FP_EINVAL, "proxy build: NULL argument");
    *out = NULL;
    fp_llama_config pc = *fp_model_cfg(llm);
    if (map->llm_layers != pc.layers || map->proxy_layers < 1 || map->proxy_layers > map->llm_layers)
        return fp_seterr(FP_EINVAL, "proxy build: the map is for %d LLM layers with %d kept, the LLM has %lld",
                         map->llm_layers, map->proxy_layers, (long long)pc.layers);
    pc.layers = map->proxy_layers;
    pc.base_dtype = FP_F32; /* the proxy is fully fine-tuned by distillation; widening is exact */
    int64_t nl = fp_llama_param_count(fp_model_cfg(llm)), np = fp_llama_param_count(&pc);
    float *lv = malloc((size_t)nl * sizeof *lv), *pv = malloc((size_t)np * sizeof *pv);
    fp_model *p = NULL;
    int rc = (!lv || !pv) ? fp_seterr(FP_ENOMEM, "proxy build: out of host memory") : 0;
    if (!rc)
        rc = fp_model_download(llm, 0, lv, nl);
    if (!rc)
        rc = fp_model_create(&p, fp_model_ctx(llm), &pc);
    for (int i = 0; !rc && i < fp_model_tensor_count(p, 0); i++) {
        fp_param_info pi, li;
        char nm[128];
        rc = fp_model_tensor_info(p, 0, i, &pi);
        if (!rc)
            rc = llm_name(nm, sizeof nm, pi.name, map);
        int j = rc ? -1 : fp_model_tensor_find(llm, 0, nm);
        if (!rc && j < 0)
            rc = j;
        if (!rc)
            rc = fp_model_tensor_info(llm, 0, j, &li);
        if (!rc && li.numel != pi.numel)
            rc = fp_seterr(FP_ESHAPE, "proxy build: %s has %lld elements, %s %lld", pi.name, (long long)pi.numel, nm,
                           (long long)li.numel);
        if (!rc)
            memcpy(pv + pi.offset, lv + li.offset, (size_t)pi.numel * sizeof *pv);
    }
    if (!rc)
        rc = fp_model_upload(p, 0, pv, np);
    free(lv);
    free(pv);
    if (rc) {
        fp_model_free(p);
        return rc;
    }
    *out = p;
    return 0;
}
