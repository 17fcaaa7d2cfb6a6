/* Fusion exactness (issue 6): a random proxy adapter fused into the LLM as a
 * PEFT adapter and applied at runtime gives the logits of the merged LLM;
 * the LLM adapter's layer map(i) tensors are the proxy adapter's layer i
 * tensors exactly; "spread" puts the scaled delta on every layer of a span;
 * a proxy made from another LLM, or checked against another key, is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/peft.h"
#include "fedproxy/safetensors.h"
#include "proxy_fixture.h"

enum { B = 2, T = 9 };

static float *logits_of(fp_ctx *ctx, const char *dir, const char *adapter, const int32_t *ids, fp_lora_config *lc)
{
    fp_model *m = NULL;
    CHECK_OK(fp_model_load_dir(&m, ctx, dir));
    if (adapter)
        CHECK_OK(fp_model_load_adapter(m, adapter));
    if (lc)
        CHECK(fp_model_lora_get(m, lc) == 1);
    int64_t V = fp_model_cfg(m)->vocab;
    CHECK_OK(fp_model_plan(m, B, T, FP_PLAN_INFERENCE, 0));
    CHECK_OK(fp_model_step_host(m, ids, NULL, B, T, 0, NULL));
    float *lg = malloc((size_t)(B * T * V) * sizeof *lg);
    CHECK_OK(fp_tensor_download(lg, (size_t)(B * T * V) * sizeof *lg, fp_model_logits(m)));
    fp_model_free(m);
    return lg;
}

/* the LLM weight name of (layer, module) */
static void wname(char *out, size_t n, int layer, int module)
{
    snprintf(out, n, "model.layers.%d.%s.%s.weight", layer, module <= 3 ? "self_attn" : "mlp",
             fp_lora_module_name(module));
}

/* max |(W_merged - W_llm) - k (alpha/r) B A| over the weight of (layer, module) */
static double delta_err(const char *merged, const char *llm, int layer, const fp_lora_pair *p, double k)
{
    fp_st_file *a = NULL, *b = NULL;
    CHECK_OK(fp_st_open_dir(&a, merged));
    CHECK_OK(fp_st_open_dir(&b, llm));
    char nm[160];
    wname(nm, sizeof nm, layer, p->module);
    const fp_st_tensor *ta = a ? fp_st_find(a, nm) : NULL, *tb = b ? fp_st_find(b, nm) : NULL;
    CHECK(ta && tb);
    double err = INFINITY;
    if (ta && tb) {
        float *wa = malloc(ta->numel * sizeof *wa), *wb = malloc(tb->numel * sizeof *wb);
        CHECK_OK(fp_st_to_f32(wa, ta->numel, ta));
        CHECK_OK(fp_st_to_f32(wb, tb->numel, tb));
        err = 0;
        for (int o = 0; o < p->out; o++)
            for (int i = 0; i < p->in; i++) {
                double d = 0;
                for (int r = 0; r < p->rank; r++)
                    d += (double)p->B[o * p->rank + r] * p->A[r * p->in + i];
                d *= k * p->alpha / p->rank;
                err = fmax(err, fabs(((double)wa[o * p->in + i] - wb[o * p->in + i]) - d));
            }
        free(wa);
        free(wb);
    }
    fp_st_close(a);
    fp_st_close(b);
    return err;
}

int main(void)
{
    fp_test_seed(5);
    fp_ctx *ctx = fp_test_ctx(NULL);
    pfx f;
    pfx_init(&f, "proxy_fuse", 8, ctx);
    char proxy[1400], adir[1400], pdir[1400], mdir[1400], sdir[1400], smdir[1400], other[1400];
    snprintf(proxy, sizeof proxy, "%s/proxy", f.root);
    snprintf(adir, sizeof adir, "%s/proxy_adapter", f.root);
    snprintf(pdir, sizeof pdir, "%s/llm_peft", f.root);
    snprintf(mdir, sizeof mdir, "%s/llm_merged", f.root);
    snprintf(sdir, sizeof sdir, "%s/llm_peft_spread", f.root);
    snprintf(smdir, sizeof smdir, "%s/llm_merged_spread", f.root);
    snprintf(other, sizeof other, "%s/other_llm", f.root);
    /* uniform proxy: LLM layers 0,1,2,5,6,7; proxy layer 2 stands for 2..4 */
    fp_compress_opts o;
    fp_compress_opts_default(&o);
    o.select = "uniform";
    o.middle = 2;
    o.quiet = 1;
    CHECK_OK(fp_proxy_compress(ctx, f.llm, proxy, &o, &f.server));
    fp_proxy_map map;
    CHECK_OK(fp_proxy_read(&map, proxy, f.server.pk));
    CHECK(map.proxy_layers == 6 && map.layers[2].llm == 2 && map.layers[2].span_last == 4);

    /* a random proxy adapter (rank 3, alpha 6, every module) */
    pfx_random_adapter(ctx, proxy, adir, 0.5f);

    fp_fuse_opts none = {"none", 0.0f, 0};
    CHECK_OK(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &none, NULL, pdir));
    CHECK_OK(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &none, mdir, NULL));

    /* the LLM adapter is the proxy adapter moved to the mapped layers, bit for bit */
    fp_lora_adapter pa, la;
    CHECK_OK(fp_lora_adapter_load(&pa, adir));
    CHECK_OK(fp_lora_adapter_load(&la, pdir));
    CHECK(pa.n == 6 * 7 && la.n == pa.n);
    for (size_t k = 0; k < pa.n; k++) {
        const fp_lora_pair *p = &pa.pairs[k];
        const fp_lora_pair *q = fp_lora_adapter_find(&la, map.layers[p->layer].llm, p->module);
        CHECKF(q != NULL, "no LLM pair for proxy layer %d %s", p->layer, fp_lora_module_name(p->module));
        if (!q)
            continue;
        CHECK(q->rank == p->rank && q->alpha == p->alpha && q->in == p->in && q->out == p->out);
        CHECK(!memcmp(q->A, p->A, (size_t)p->rank * p->in * sizeof(float)));
        CHECK(!memcmp(q->B, p->B, (size_t)p->out * p->rank * sizeof(float)));
    }
    for (int l = 3; l <= 4; l++)
        CHECK(fp_lora_adapter_find(&la, l, 0) == NULL); /* dropped layers get nothing with span none */
    fp_lora_adapter_free(&la);

    /* runtime adapter on the LLM == merged LLM */
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)(fp_test_u32() % f.cfg.vocab);
    fp_lora_config got;
    float *base = logits_of(ctx, f.llm, NULL, ids, NULL);
    float *rt = logits_of(ctx, f.llm, pdir, ids, &got);
    float *mg = logits_of(ctx, mdir, NULL, ids, NULL);
    size_t nv = (size_t)(B * T * f.cfg.vocab);
    CHECK(got.layers == 0xE7 && got.rank == 3); /* layers 0,1,2,5,6,7 */
    double e = fp_test_nmse(mg, rt, nv), moved = fp_test_nmse(base, rt, nv);
    printf("fusion: merged vs runtime-adapter logits NMSE %.3g (the adapter moves them by NMSE %.3g)\n", e, moved);
    CHECKF(e <= 1e-10, "merged vs runtime adapter logits NMSE %g", e);
    CHECKF(moved > 1e-3, "the adapter barely changes the logits (NMSE %g): not a test", moved);
    free(base);
    free(rt);
    free(mg);
    char p1[1500], p2[1500];
    snprintf(p1, sizeof p1, "%s/config.json", f.llm);
    snprintf(p2, sizeof p2, "%s/config.json", mdir);
    size_t l1 = 0, l2 = 0;
    char *c1 = pfx_read(p1, &l1), *c2 = pfx_read(p2, &l2);
    CHECK(c1 && c2 && l1 == l2 && !memcmp(c1, c2, l1));
    free(c1);
    free(c2);

    /* spread: every other layer of proxy layer 2's span (3, 4) gets B / 3 (and the
     * same A); the merged weights move by a third of the delta there */
    fp_fuse_opts spread = {"spread", 0.0f, 0};
    CHECK_OK(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &spread, NULL, sdir));
    CHECK_OK(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &spread, smdir, NULL));
    CHECK_OK(fp_lora_adapter_load(&la, sdir));
    CHECK(la.n == 8 * 7);
    for (int mod = 0; mod < 7; mod++) {
        const fp_lora_pair *p = fp_lora_adapter_find(&pa, 2, mod);
        for (int l = 2; l <= 4 && p; l++) {
            const fp_lora_pair *q = fp_lora_adapter_find(&la, l, mod);
            CHECK(q != NULL);
            if (!q)
                continue;
            CHECK(!memcmp(q->A, p->A, (size_t)p->rank * p->in * sizeof(float)));
            int ok = 1;
            float k = l == 2 ? 1.0f : 1.0f / 3.0f;
            for (int i = 0; i < p->out * p->rank; i++)
                ok &= q->B[i] == k * p->B[i];
            CHECKF(ok, "layer %d %s: B is not %g x the proxy's", l, fp_lora_module_name(mod), (double)k);
            double de = delta_err(smdir, f.llm, l, p, k);
            CHECKF(de < 1e-5, "merged spread layer %d %s: delta off by %g", l, fp_lora_module_name(mod), de);
        }
    }
    fp_lora_adapter_free(&la);
    /* an explicit scale */
    spread.spread_scale = 0.5f;
    CHECK_OK(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &spread, NULL, sdir));
    CHECK_OK(fp_lora_adapter_load(&la, sdir));
    const fp_lora_pair *q4 = fp_lora_adapter_find(&la, 4, 6), *p2d = fp_lora_adapter_find(&pa, 2, 6);
    CHECK(q4 && p2d && q4->B[0] == 0.5f * p2d->B[0]);
    fp_lora_adapter_free(&la);

    /* refusals */
    pfx_llm(&f, other, 8, 999, ctx);
    CHECK_ERR(fp_proxy_fuse(other, proxy, adir, f.server.pk, &none, NULL, pdir), FP_ECRYPTO);
    CHECKF(strstr(fp_errmsg(), "another LLM") != NULL, "message: %s", fp_errmsg());
    CHECK_ERR(fp_proxy_fuse(f.llm, proxy, adir, f.other.pk, &none, NULL, pdir), FP_ECRYPTO);
    CHECK_ERR(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &none, mdir, pdir), FP_EINVAL);
    CHECK_ERR(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &none, NULL, NULL), FP_EINVAL);
    fp_fuse_opts badspan = {"everywhere", 0.0f, 0};
    CHECK_ERR(fp_proxy_fuse(f.llm, proxy, adir, f.server.pk, &badspan, NULL, pdir), FP_EINVAL);
    /* an adapter for a layer the proxy does not have */
    {
        char bad[1400];
        snprintf(bad, sizeof bad, "%s/bad_adapter", f.root);
        const fp_lora_pair *p = &pa.pairs[0];
        fp_lora_adapter ba;
        fp_lora_adapter_init(&ba, p->rank, p->alpha, 0.0f, "");
        CHECK_OK(fp_lora_adapter_add(&ba, 6, p->module, p->rank, p->in, p->out, p->alpha, p->A, p->B));
        CHECK_OK(fp_lora_adapter_save(&ba, bad));
        fp_lora_adapter_free(&ba);
        CHECK_ERR(fp_proxy_fuse(f.llm, proxy, bad, f.server.pk, &none, NULL, pdir), FP_EFORMAT);
        CHECKF(strstr(fp_errmsg(), "proxy layer 6") != NULL, "message: %s", fp_errmsg());
    }
    fp_lora_adapter_free(&pa);
    pfx_done(&f);
    fp_test_ctx_done(ctx);
    return fp_test_report("proxy_fuse");
}
