/* LoRA on a subset of layers (fp_lora_config.layers): a subset model computes
 * exactly what an all-layer model computes when the left-out layers' adapters
 * are zero (forward, LoRA gradients, KV-cache inference), and its PEFT files
 * round-trip with the subset. Also fp_model_hidden's layer 0 is the embedding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/model.h"
#include "fp_test.h"

static const fp_llama_config CFG = {.hidden = 16, .layers = 3, .heads = 4, .kv_heads = 2, .head_dim = 4,
                                    .intermediate = 24, .vocab = 29, .rms_eps = 1e-5f, .rope_theta = 10000.0f};
enum { B = 2, T = 5, N = B * T };

static float *download_logits(fp_model *m)
{
    float *lg = malloc((size_t)N * CFG.vocab * sizeof *lg);
    CHECK_OK(fp_tensor_download(lg, (size_t)N * CFG.vocab * sizeof *lg, fp_model_logits(m)));
    return lg;
}

/* the subset model's tensor (by name) copied into the full model's packed vector */
static void copy_by_name(fp_model *full, float *fv, fp_model *sub, const float *sv)
{
    for (int i = 0; i < fp_model_tensor_count(sub, 1); i++) {
        fp_param_info si, fi;
        CHECK_OK(fp_model_tensor_info(sub, 1, i, &si));
        int j = fp_model_tensor_find(full, 1, si.name);
        CHECK(j >= 0);
        CHECK_OK(fp_model_tensor_info(full, 1, j, &fi));
        memcpy(fv + fi.offset, sv + si.offset, (size_t)si.numel * sizeof *fv);
    }
}

int main(void)
{
    fp_test_seed(7);
    fp_ctx *ctx = fp_test_ctx(NULL);
    fp_model *full = NULL, *sub = NULL;
    CHECK_OK(fp_model_create(&full, ctx, &CFG));
    CHECK_OK(fp_model_create(&sub, ctx, &CFG));
    CHECK_OK(fp_model_init_random(full, 11));
    CHECK_OK(fp_model_init_random(sub, 11));
    fp_lora_config lf = {.rank = 3, .alpha = 6.0f, .targets = FP_LORA_ALL};
    fp_lora_config ls = lf;
    ls.layers = 0x5; /* layers 0 and 2 */
    CHECK_OK(fp_model_lora_enable(full, &lf, 1));
    CHECK_OK(fp_model_lora_enable(sub, &ls, 1));
    int64_t nf = fp_lora_param_count(&CFG, &lf), ns = fp_lora_param_count(&CFG, &ls);
    CHECK(ns * 3 == nf * 2);
    CHECK(fp_model_tensor_count(sub, 1) == 28);
    CHECK(fp_model_tensor_find(sub, 1, "model.layers.1.self_attn.q_proj.lora_A.weight") < 0);
    fp_lora_config got;
    CHECK(fp_model_lora_get(sub, &got) == 1 && got.layers == 0x5);

    float *sv = malloc((size_t)ns * sizeof *sv), *fv = calloc((size_t)nf, sizeof *fv);
    for (int64_t i = 0; i < ns; i++)
        sv[i] = 0.3f * fp_test_normal();
    copy_by_name(full, fv, sub, sv);
    /* layer 1 of the full model: A random, B zero (no contribution) */
    for (int i = 0; i < fp_model_tensor_count(full, 1); i++) {
        fp_param_info fi;
        CHECK_OK(fp_model_tensor_info(full, 1, i, &fi));
        if (strstr(fi.name, "layers.1.") && strstr(fi.name, "lora_A"))
            for (int64_t j = 0; j < fi.numel; j++)
                fv[fi.offset + j] = fp_test_normal();
    }
    CHECK_OK(fp_model_upload(sub, 1, sv, ns));
    CHECK_OK(fp_model_upload(full, 1, fv, nf));

    int32_t ids[N], tg[N];
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)(fp_test_u32() % CFG.vocab);
        tg[i] = (int32_t)(fp_test_u32() % CFG.vocab);
    }
    CHECK_OK(fp_model_plan(full, B, T, 1, 0));
    CHECK_OK(fp_model_plan(sub, B, T, 1, 0));
    float lossf, losss;
    /* logits from forward-only steps (the backward turns them into their gradient in place) */
    CHECK_OK(fp_model_step_host(full, ids, tg, B, T, 0, &lossf));
    CHECK_OK(fp_model_step_host(sub, ids, tg, B, T, 0, &losss));
    float *lgf = download_logits(full), *lgs = download_logits(sub);
    CHECK_OK(fp_model_step_host(full, ids, tg, B, T, 1, &lossf));
    CHECK_OK(fp_model_step_host(sub, ids, tg, B, T, 1, &losss));
    double e = fp_test_nmse(lgs, lgf, (size_t)N * CFG.vocab);
    CHECKF(e < 1e-12, "subset vs zero-padded full logits NMSE %g", e);
    CHECKF(fabsf(lossf - losss) < 1e-6f, "loss %g vs %g", (double)lossf, (double)losss);
    /* the subset's gradients are the full model's on the same tensors */
    float *gs = malloc((size_t)ns * sizeof *gs), *gf = malloc((size_t)nf * sizeof *gf);
    float *gfs = calloc((size_t)ns, sizeof *gfs);
    CHECK_OK(fp_model_download_grads(sub, gs, ns));
    CHECK_OK(fp_model_download_grads(full, gf, nf));
    for (int i = 0; i < fp_model_tensor_count(sub, 1); i++) {
        fp_param_info si, fi;
        CHECK_OK(fp_model_tensor_info(sub, 1, i, &si));
        CHECK_OK(fp_model_tensor_info(full, 1, fp_model_tensor_find(full, 1, si.name), &fi));
        memcpy(gfs + si.offset, gf + fi.offset, (size_t)si.numel * sizeof *gfs);
    }
    e = fp_test_nmse(gs, gfs, (size_t)ns);
    CHECKF(e < 1e-10, "subset vs full LoRA gradients NMSE %g", e);

    /* hidden state 0 is the embedding of the ids */
    float *h0 = malloc((size_t)N * CFG.hidden * sizeof *h0);
    int64_t np = fp_llama_param_count(&CFG);
    float *pp = malloc((size_t)np * sizeof *pp);
    CHECK_OK(fp_model_hidden(sub, 0, h0, (int64_t)N * CFG.hidden));
    CHECK_OK(fp_model_download(sub, 0, pp, np));
    int emb_ok = 1;
    for (int n = 0; n < N; n++)
        emb_ok &= !memcmp(h0 + n * CFG.hidden, pp + ids[n] * CFG.hidden, (size_t)CFG.hidden * sizeof *h0);
    CHECK(emb_ok);
    CHECK_ERR(fp_model_hidden(sub, 4, h0, (int64_t)N * CFG.hidden), FP_EINVAL);
    CHECK_ERR(fp_model_hidden(sub, 1, h0, 5), FP_ESHAPE);

    /* KV-cache inference of the subset model gives the training forward's logits */
    float *kvl = malloc((size_t)T * CFG.vocab * sizeof *kvl);
    CHECK_OK(fp_model_kv_begin(sub, T, T));
    CHECK_OK(fp_model_kv_feed(sub, ids, T, kvl, 1));
    e = fp_test_nmse(kvl, lgs, (size_t)T * CFG.vocab);
    CHECKF(e < 1e-10, "KV-cache vs training logits of the subset model NMSE %g", e);

    /* PEFT round trip keeps the subset */
    const char *dir = fp_test_tmpdir("lora_subset");
    CHECK_OK(fp_model_save_adapter(sub, dir));
    fp_model *re = NULL;
    CHECK_OK(fp_model_create(&re, ctx, &CFG));
    CHECK_OK(fp_model_init_random(re, 11));
    CHECK_OK(fp_model_load_adapter(re, dir));
    CHECK(fp_model_lora_get(re, &got) == 1 && got.layers == 0x5 && got.rank == 3 && got.targets == FP_LORA_ALL);
    float *rv = malloc((size_t)ns * sizeof *rv);
    CHECK_OK(fp_model_download(re, 1, rv, ns));
    CHECK(!memcmp(rv, sv, (size_t)ns * sizeof *rv));
    /* an adapter on layer 1 does not fit the subset model */
    char d2[600];
    snprintf(d2, sizeof d2, "%s/full", dir);
    CHECK_OK(fp_model_save_adapter(full, d2));
    CHECK_ERR(fp_model_load_adapter(sub, d2), FP_ESHAPE);
    /* ...but the subset adapter loads into an all-layer model (layer 1 stays zero) */
    CHECK_OK(fp_model_load_adapter(full, dir));

    free(rv); free(kvl); free(pp); free(h0); free(gs); free(gf); free(gfs); free(lgf); free(lgs); free(sv); free(fv);
    fp_model_free(re);
    fp_model_free(full);
    fp_model_free(sub);
    fp_test_ctx_done(ctx);
    return fp_test_report("lora_subset");
}
