/* The device transformer against the independent double-precision reference
 * (tests/ref, itself checked by finite differences) on tiny random configs
 * with odd sizes: GQA and MHA, tied and untied, with and without attention
 * bias. Checks logits, loss, every parameter's gradient (full fine-tuning),
 * every LoRA gradient (base frozen), and three AdamW steps' losses, on the
 * native profile and under every built-in overlay (all cases on the native
 * profile and "minimal", one case each on the others), validation-clean.
 *
 * Tolerances (f32 device against f64 reference):
 *   logits NMSE <= 1e-5, loss |rel| <= 1e-5,
 *   each gradient tensor NMSE <= 1e-4 (worst reported),
 *   AdamW-step losses |rel| <= 1e-4.
 * LoRA over a frozen base stored as f16 or bf16 (cfg.base_dtype): the
 * reference gets the linear weights pre-rounded to f16/bf16 (round to nearest
 * even, fp_ref_f32_to_* of the training-ops family, not the model's own
 * conversion). The 16-bit values are exact in f32 and every product
 * accumulates in f32, so the same tolerances apply. Also checked: the
 * 16-bit model's parameter bytes (planned and allocated) and the refusal of
 * full fine-tuning over 16-bit weights.
 * LoRA dropout 0.25: the reference applies the mask model.h specifies (its
 * own implementation of the hash) with the same seed and counters, so the
 * same tolerances apply; the reference's dropout gradients are themselves
 * finite-difference checked (test_ref_llama). */
#include <stdio.h>

#include "engine_fixture.h"
#include "fedproxy/ops_attention.h"
#include "fedproxy/ops_matmul.h"
#include "fedproxy/ops_train.h"
#include "fedproxy/runtime.h"

#define TOL_LOGITS 1e-5
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-4
#define TOL_STEP 1e-4

static const eng_case CASES[] = {
    {"gqa-untied-bias", {24, 2, 4, 2, 6, 40, 37, 1e-5f, 10000.0f, 0, 1, FP_F32}, 2, 7, 4, 8.0f, FP_LORA_ALL},
    {"mha-tied", {40, 2, 5, 5, 8, 56, 101, 1e-6f, 10000.0f, 1, 0, FP_F32}, 2, 13, 3, 6.0f,
     FP_LORA_Q | FP_LORA_V | FP_LORA_O | FP_LORA_DOWN},
    {"gqa3-tied-bias", {24, 1, 6, 2, 4, 33, 37, 1e-5f, 500000.0f, 1, 1, FP_F32}, 2, 13, 2, 2.0f,
     FP_LORA_K | FP_LORA_GATE | FP_LORA_UP},
};

static void make_tokens(int32_t *ids, int32_t *tg, int N, int V)
{
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)(fp_test_u32() % (uint32_t)V);
        tg[i] = (i % 6 == 4) ? FP_IGNORE_INDEX : (int32_t)(fp_test_u32() % (uint32_t)V);
    }
}

/* worst per-tensor gradient NMSE over the layout ti */
static double grad_worst(const float *g, const double *ref, const ref_tensor_info *ti, int nt, const char **worst)
{
    double w = 0;
    *worst = "";
    for (int t = 0; t < nt; t++) {
        double e = eng_nmse(g + ti[t].offset, ref + ti[t].offset, ti[t].numel);
        if (e > w || e != e) {
            w = e;
            *worst = ti[t].name;
        }
    }
    return w;
}

/* rounds the linear weights (q/k/v/o/gate/up/down, untied lm_head) of p and pd to dt */
static void round_linear(const ref_tensor_info *ti, int nt, float *p, double *pd, fp_dtype dt)
{
    for (int t = 0; t < nt; t++) {
        if (!strstr(ti[t].name, "_proj.weight") && !strstr(ti[t].name, "lm_head"))
            continue;
        for (int64_t i = 0; i < ti[t].numel; i++) {
            float v = p[ti[t].offset + i];
            v = dt == FP_F16 ? fp_ref_f16_to_f32(fp_ref_f32_to_f16(v)) : fp_ref_bf16_to_f32(fp_ref_f32_to_bf16(v));
            p[ti[t].offset + i] = v;
            pd[ti[t].offset + i] = v;
        }
    }
}

static void run_case(fp_ctx *ctx, const eng_case *ec, int lora, uint64_t seed, fp_dtype wdt, float drop)
{
    fp_llama_config cfg16 = ec->cfg;
    cfg16.base_dtype = wdt;
    const fp_llama_config *c = &cfg16;
    ref_cfg rc = eng_ref_cfg(c);
    ref_lora rl = {.rank = ec->lora_rank, .alpha = ec->lora_alpha, .targets = ec->lora_targets,
                   .dropout = drop, .drop_seed = seed * 31};
    fp_lora_config lc = {.rank = ec->lora_rank, .alpha = ec->lora_alpha, .targets = ec->lora_targets};
    fp_test_seed(seed);
    int64_t np = fp_llama_param_count(c), npr, nl = 0;
    static ref_tensor_info ti[REF_MAX_TENSORS], tl[REF_MAX_TENSORS];
    int nt = ref_param_layout(&rc, ti, REF_MAX_TENSORS, &npr), ntl = 0;
    CHECK(np == npr);
    if (lora) {
        ntl = ref_lora_layout(&rc, &rl, tl, REF_MAX_TENSORS, &nl);
        CHECK(nl == fp_lora_param_count(c, &lc));
    }
    int N = ec->B * ec->T, V = (int)c->vocab;
    float *p = malloc((size_t)np * 4), *g = malloc((size_t)(np > nl ? np : nl) * 4), *lp = calloc((size_t)nl + 1, 4);
    double *pd = malloc((size_t)np * 8), *gd = malloc((size_t)np * 8), *lpd = calloc((size_t)nl + 1, 8);
    double *lgd = calloc((size_t)nl + 1, 8), *logd = malloc((size_t)N * V * 8);
    float *logits = malloc((size_t)N * V * 4);
    int32_t *ids = malloc((size_t)N * 4), *tg = malloc((size_t)N * 4);
    eng_random_params(c, p, pd, np);
    if (wdt != FP_F32)
        round_linear(ti, nt, p, pd, wdt);
    if (lora)
        eng_random_lora(&rc, &rl, lp, lpd);
    make_tokens(ids, tg, N, V);

    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, c));
    if (!m)
        goto out;
    /* the two layouts agree tensor by tensor */
    int names_ok = fp_model_tensor_count(m, 0) == nt;
    for (int i = 0; names_ok && i < nt; i++) {
        fp_param_info in;
        fp_model_tensor_info(m, 0, i, &in);
        names_ok = !strcmp(in.name, ti[i].name) && in.offset == ti[i].offset && in.numel == ti[i].numel;
    }
    CHECK(names_ok);
    CHECK_OK(fp_model_upload(m, 0, p, np));
    if (lora) {
        CHECK_OK(fp_model_lora_enable(m, &lc, 1));
        CHECK_OK(fp_model_upload(m, 1, lp, nl));
        if (drop > 0)
            CHECK_OK(fp_model_lora_set_dropout(m, drop, seed * 31));
        int lnames_ok = fp_model_tensor_count(m, 1) == ntl;
        for (int i = 0; lnames_ok && i < ntl; i++) {
            fp_param_info in;
            fp_model_tensor_info(m, 1, i, &in);
            lnames_ok = !strcmp(in.name, tl[i].name) && in.numel == tl[i].numel;
        }
        CHECK(lnames_ok);
    }
    CHECK_OK(fp_model_plan(m, ec->B, ec->T, 1, 2));

    /* forward: logits and loss */
    float loss = 0;
    fp_model_lora_dropout_seek(m, 7);
    rl.drop_ctr = 7;
    CHECK_OK(fp_model_step_host(m, ids, tg, ec->B, ec->T, 0, &loss));
    CHECK_OK(fp_tensor_download(logits, (size_t)N * V * 4, fp_model_logits(m)));
    double ref_loss = ref_llama_run(&rc, pd, lora ? &rl : NULL, lpd, ids, tg, ec->B, ec->T, logd, NULL, NULL);
    double e_log = eng_nmse(logits, logd, (int64_t)N * V), e_loss = fabs(loss - ref_loss) / fabs(ref_loss);
    CHECKF(e_log <= TOL_LOGITS, "%s: logits NMSE %.3e", ec->name, e_log);
    CHECKF(e_loss <= TOL_LOSS, "%s: loss %.7f vs reference %.7f", ec->name, loss, ref_loss);

    /* backward */
    fp_model_lora_dropout_seek(m, 8);
    rl.drop_ctr = 8;
    CHECK_OK(fp_model_step_host(m, ids, tg, ec->B, ec->T, 1, &loss));
    ref_llama_run(&rc, pd, lora ? &rl : NULL, lpd, ids, tg, ec->B, ec->T, NULL, lora ? NULL : gd, lora ? lgd : NULL);
    const char *worst;
    double e_grad;
    if (lora) {
        CHECK_OK(fp_model_download_grads(m, g, nl));
        e_grad = grad_worst(g, lgd, tl, ntl, &worst);
    } else {
        CHECK_OK(fp_model_download_grads(m, g, np));
        e_grad = grad_worst(g, gd, ti, nt, &worst);
    }
    CHECKF(e_grad <= TOL_GRAD, "%s: gradient NMSE %.3e at %s", ec->name, e_grad, worst);

    /* three AdamW steps: losses before each update */
    fp_tensor *tp = fp_model_train_params(m), *tgr = fp_model_train_grads(m), *mm = NULL, *vv = NULL;
    int64_t ne = fp_tensor_numel(tp);
    CHECK_OK(fp_tensor_new(&mm, ctx, FP_F32, 1, &ne));
    CHECK_OK(fp_tensor_new(&vv, ctx, FP_F32, 1, &ne));
    fp_tensor_zero(mm);
    fp_tensor_zero(vv);
    int64_t nt_el = lora ? nl : np;
    double *am = calloc((size_t)nt_el, 8), *av = calloc((size_t)nt_el, 8);
    double worst_step = 0;
    fp_tensor *tid = NULL, *ttg = NULL;
    int64_t nn = N;
    CHECK_OK(fp_tensor_new(&tid, ctx, FP_I32, 1, &nn));
    CHECK_OK(fp_tensor_new(&ttg, ctx, FP_I32, 1, &nn));
    fp_tensor_upload(tid, ids, (size_t)N * 4);
    fp_tensor_upload(ttg, tg, (size_t)N * 4);
    const double lr = 3e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    for (int step = 1; step <= 3 && mm && vv; step++) {
        fp_stream *s = NULL;
        CHECK_OK(fp_stream_new(&s, ctx));
        CHECK_OK(fp_model_zero_grads(m));
        fp_model_lora_dropout_seek(m, 100 + (uint64_t)step);
        rl.drop_ctr = 100 + (uint64_t)step;
        CHECK_OK(fp_model_forward(m, s, tid, ttg));
        CHECK_OK(fp_model_backward(m, s, 1.0f));
        fp_adamw_params hp = {(float)lr, (float)b1, (float)b2, (float)eps, (float)wd, (uint32_t)step};
        CHECK_OK(fp_adamw_step(s, tp, tgr, mm, vv, &hp, NULL));
        CHECK_OK(fp_stream_run(s));
        fp_stream_free(s);
        CHECK_OK(fp_model_loss(m, &loss, NULL));
        double rl_ = ref_llama_run(&rc, pd, lora ? &rl : NULL, lpd, ids, tg, ec->B, ec->T, NULL, lora ? NULL : gd,
                                   lora ? lgd : NULL);
        if (lora)
            ref_adamw(lpd, lgd, am, av, nl, lr, b1, b2, eps, wd, step);
        else
            ref_adamw(pd, gd, am, av, np, lr, b1, b2, eps, wd, step);
        double e = fabs(loss - rl_) / fabs(rl_);
        if (e > worst_step || e != e)
            worst_step = e;
        if (step == 3)
            printf("    step losses: device %.6f reference %.6f\n", loss, rl_);
    }
    CHECKF(worst_step <= TOL_STEP, "%s: AdamW step loss rel err %.3e", ec->name, worst_step);
    printf("  %-16s %-4s %-4s%s B=%d T=%d: logits NMSE %.2e, loss rel %.2e, grads worst NMSE %.2e (%s), 3 AdamW steps "
           "loss rel %.2e\n",
           ec->name, lora ? "lora" : "full", fp_dtype_name(wdt), drop > 0 ? " drop" : "", ec->B, ec->T, e_log, e_loss, e_grad, worst, worst_step);
    fp_tensor_free(tid);
    fp_tensor_free(ttg);
    fp_tensor_free(mm);
    fp_tensor_free(vv);
    free(am);
    free(av);
out:
    fp_model_free(m);
    free(p); free(g); free(lp); free(pd); free(gd); free(lpd); free(lgd); free(logd); free(logits);
    free(ids); free(tg);
}

/* 16-bit storage halves the linear weights' bytes; full fine-tuning over them is refused */
static void test_half_memory(fp_ctx *ctx)
{
    fp_llama_config c = CASES[0].cfg;
    fp_plan_bytes b32, b16;
    fp_lora_config lc = {4, 8.0f, FP_LORA_ALL, 0};
    CHECK_OK(fp_model_plan_bytes(&b32, &c, &lc, 2, 7, 1, 2));
    c.base_dtype = FP_BF16;
    CHECK_OK(fp_model_plan_bytes(&b16, &c, &lc, 2, 7, 1, 2));
    int64_t C = c.hidden, qd = c.heads * c.head_dim, kd = c.kv_heads * c.head_dim, I = c.intermediate;
    int64_t lin = c.layers * (2 * qd * C + 2 * kd * C + 3 * I * C) + c.vocab * C; /* untied head */
    printf("  params f32 %llu bytes, bf16 base %llu bytes (linear weights: %lld elements)\n",
           (unsigned long long)b32.params, (unsigned long long)b16.params, (long long)lin);
    CHECK(b32.params - b16.params >= (uint64_t)lin * 2 - 4096 && b32.params - b16.params <= (uint64_t)lin * 2 + 4096);
    CHECK(b16.grads == b32.grads && b16.activations == b32.activations);
    fp_mem_stats m0, m1;
    fp_ctx_mem_stats(ctx, &m0);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &c));
    fp_ctx_mem_stats(ctx, &m1);
    fp_plan_bytes pb;
    CHECK_OK(fp_model_plan_bytes(&pb, &c, NULL, 1, 1, 0, 0));
    CHECK(m1.in_use - m0.in_use >= pb.params && m1.in_use - m0.in_use <= pb.params + 4096);
    /* the device holds bf16: a random f32 init comes back rounded (low 16 bits zero) in the linear weights only */
    CHECK_OK(fp_model_init_random(m, 3));
    int64_t np = fp_llama_param_count(&c);
    float *w = malloc((size_t)np * 4);
    CHECK_OK(fp_model_download(m, 0, w, np));
    int64_t lin_ok = 0, lin_n = 0, other_full = 0;
    for (int i = 0; i < fp_model_tensor_count(m, 0); i++) {
        fp_param_info in;
        fp_model_tensor_info(m, 0, i, &in);
        int linear = strstr(in.name, "_proj.weight") || strstr(in.name, "lm_head");
        for (int64_t j = 0; j < in.numel; j++) {
            uint32_t u;
            memcpy(&u, &w[in.offset + j], 4);
            if (linear) {
                lin_n++;
                lin_ok += (u & 0xffff) == 0;
            } else {
                other_full += (u & 0xffff) != 0;
            }
        }
    }
    free(w);
    CHECK(lin_n == lin && lin_ok == lin_n && other_full > 0);
    CHECK_ERR(fp_model_plan(m, 2, 7, 1, 2), FP_EUNSUPPORTED); /* full fine-tuning over bf16 weights */
    CHECK_OK(fp_model_plan(m, 2, 7, 0, 0));                   /* inference is fine */
    fp_model_free(m);
    c.base_dtype = FP_I32;
    CHECK_ERR(fp_llama_config_check(&c), FP_EINVAL);
}

/* the dropout mask keeps about 1 - p of the elements; the key depends on seed, counter and salt */
static void test_dropout_mask(void)
{
    uint32_t th = fp_lora_dropout_threshold(0.25f), k = fp_lora_dropout_key(5, 9, 3);
    int kept = 0, n = 200000;
    for (int i = 0; i < n; i++)
        kept += fp_lora_dropout_keep(k, (uint32_t)i, th);
    printf("  dropout 0.25 mask keeps %.4f of %d elements\n", kept / (double)n, n);
    CHECK(fabs(kept / (double)n - 0.75) < 0.005);
    CHECK(fp_lora_dropout_key(5, 9, 3) != fp_lora_dropout_key(5, 10, 3));
    CHECK(fp_lora_dropout_key(5, 9, 3) != fp_lora_dropout_key(5, 9, 4));
    CHECK(fp_lora_dropout_key(5, 9, 3) != fp_lora_dropout_key(6, 9, 3));
    CHECK(fp_lora_dropout_threshold(0.0f) == 0);
}

int main(void)
{
    test_dropout_mask();
    /* the native profile and "minimal" run every case; the other built-in
     * overlays one case each (full, LoRA, LoRA over a 16-bit base), in turn */
    int nprof = 0;
    while (fp_overlay_builtin_names[nprof])
        nprof++;
    for (int pi = -1; pi < nprof; pi++) {
        const char *prof = pi < 0 ? "" : fp_overlay_builtin_names[pi];
        int all = pi < 0 || !strcmp(prof, "minimal");
        fp_ctx *ctx = fp_test_ctx(prof);
        printf("profile '%s': attention variant %s, matmul variant (14x40x24) %s\n", prof,
               fp_attention_variant(ctx), fp_matmul_pick(ctx, 14, 40, 24));
        for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
            if (!all && i != (size_t)(pi + 3) % 3)
                continue;
            run_case(ctx, &CASES[i], 0, 100 + i, FP_F32, 0.0f);
            run_case(ctx, &CASES[i], 1, 200 + i, FP_F32, 0.0f);
            /* LoRA over a 16-bit base: f16 and bf16 on alternating cases */
            run_case(ctx, &CASES[i], 1, 300 + i, (i + (size_t)(pi + 1)) % 2 ? FP_BF16 : FP_F16, 0.0f);
            /* LoRA dropout 0.25 (masks from the documented hash, re-implemented by the reference) */
            if (all)
                run_case(ctx, &CASES[i], 1, 400 + i, FP_F32, 0.25f);
        }
        if (pi < 0)
            test_half_memory(ctx);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_engine_model");
}
