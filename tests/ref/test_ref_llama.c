/* Ground truth for the model tests: the double-precision reference Llama's
 * gradients (every parameter, full and LoRA) against central finite
 * differences of its own forward, on tiny configs (GQA and MHA, tied and
 * untied, with and without attention bias, ignored targets). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp_test.h"
#include "ref_llama.h"

static double rnd(void) { return (double)fp_test_normal(); }

static void init_params(const ref_cfg *c, double *p, int64_t n)
{
    ref_tensor_info ti[REF_MAX_TENSORS];
    int64_t total;
    int nt = ref_param_layout(c, ti, REF_MAX_TENSORS, &total);
    for (int64_t i = 0; i < n; i++)
        p[i] = 0.4 * rnd();
    for (int t = 0; t < nt; t++)
        if (strstr(ti[t].name, "norm"))
            for (int64_t i = 0; i < ti[t].numel; i++)
                p[ti[t].offset + i] = 1.0 + 0.2 * rnd();
}

/* max |analytic - fd| over max |analytic| for every element. */
static double fd_check(const ref_cfg *c, double *P, const ref_lora *lo, double *LP, const int32_t *ids,
                       const int32_t *tg, int B, int T, int wrt_lora, const double *grad, int64_t n)
{
    const double h = 1e-5;
    double maxg = 0, maxd = 0;
    double *x = wrt_lora ? LP : P;
    for (int64_t i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + h;
        double lp = ref_llama_run(c, P, lo, LP, ids, tg, B, T, NULL, NULL, NULL);
        x[i] = save - h;
        double lm = ref_llama_run(c, P, lo, LP, ids, tg, B, T, NULL, NULL, NULL);
        x[i] = save;
        double fd = (lp - lm) / (2 * h);
        double d = fabs(fd - grad[i]);
        if (d > maxd)
            maxd = d;
        if (fabs(grad[i]) > maxg)
            maxg = fabs(grad[i]);
    }
    return maxg > 0 ? maxd / maxg : 1.0;
}

static void run_case(const ref_cfg *c, const ref_lora *lo, int B, int T, uint64_t seed)
{
    fp_test_seed(seed);
    int64_t np, nl = 0;
    ref_param_layout(c, NULL, 0, &np);
    if (lo)
        ref_lora_layout(c, lo, NULL, 0, &nl);
    double *P = malloc((size_t)np * sizeof(double)), *dP = malloc((size_t)np * sizeof(double));
    double *LP = calloc((size_t)(nl + 1), sizeof(double)), *dL = calloc((size_t)(nl + 1), sizeof(double));
    init_params(c, P, np);
    for (int64_t i = 0; i < nl; i++)
        LP[i] = 0.3 * rnd(); /* B nonzero too, so every LoRA gradient is exercised */
    int N = B * T;
    int32_t *ids = malloc((size_t)N * sizeof(int32_t)), *tg = malloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)(fp_test_u32() % (uint32_t)c->vocab);
        tg[i] = (i % 5 == 3) ? -100 : (int32_t)(fp_test_u32() % (uint32_t)c->vocab);
    }
    double loss = ref_llama_run(c, P, lo, LP, ids, tg, B, T, NULL, dP, lo ? dL : NULL);
    CHECKF(isfinite(loss) && loss > 0, "loss %g", loss);
    double e = fd_check(c, P, lo, LP, ids, tg, B, T, 0, dP, np);
    printf("  C=%d L=%d Hq=%d Hkv=%d D=%d I=%d V=%d tied=%d bias=%d lora=%s B=%d T=%d: loss %.6f, "
           "params %lld rel err %.2e",
           c->hidden, c->layers, c->heads, c->kv_heads, c->head_dim, c->inter, c->vocab, c->tied, c->attn_bias,
           lo ? "yes" : "no", B, T, loss, (long long)np, e);
    CHECKF(e < 1e-6, "parameter gradients vs finite differences: rel err %g", e);
    if (lo) {
        double el = fd_check(c, P, lo, LP, ids, tg, B, T, 1, dL, nl);
        printf(", lora %lld rel err %.2e", (long long)nl, el);
        CHECKF(el < 1e-6, "LoRA gradients vs finite differences: rel err %g", el);
    }
    printf("\n");
    free(P); free(dP); free(LP); free(dL); free(ids); free(tg);
}

int main(void)
{
    /* GQA, untied, attention bias (Qwen2 shape) */
    ref_cfg a = {.hidden = 10, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 4, .inter = 14, .vocab = 13,
                 .rms_eps = 1e-5, .rope_theta = 10000.0, .tied = 0, .attn_bias = 1};
    run_case(&a, NULL, 2, 5, 1);
    ref_lora la = {.rank = 2, .alpha = 3.0, .targets = 0x7f};
    run_case(&a, &la, 2, 5, 2);
    /* MHA, tied, no bias (Llama/SmolLM shape), odd sizes, small theta so RoPE angles are large */
    ref_cfg b = {.hidden = 7, .layers = 2, .heads = 3, .kv_heads = 3, .head_dim = 6, .inter = 9, .vocab = 11,
                 .rms_eps = 1e-6, .rope_theta = 7.0, .tied = 1, .attn_bias = 0};
    run_case(&b, NULL, 1, 6, 3);
    ref_lora lb = {.rank = 3, .alpha = 5.0, .targets = (1u << REF_Q) | (1u << REF_V) | (1u << REF_DOWN)};
    run_case(&b, &lb, 2, 4, 4);
    /* LoRA dropout: with the mask fixed by (seed, counter) the loss is smooth in
     * every parameter, so the same finite-difference check applies */
    ref_lora ld = {.rank = 2, .alpha = 3.0, .targets = 0x7f, .dropout = 0.3, .drop_seed = 77, .drop_ctr = 5};
    run_case(&a, &ld, 2, 5, 5);
    /* and the mask really drops about p of the adapter inputs: a changed counter changes the loss */
    {
        int64_t np, nl;
        ref_param_layout(&a, NULL, 0, &np);
        ref_lora_layout(&a, &ld, NULL, 0, &nl);
        double *P = malloc((size_t)np * 8), *LP = malloc((size_t)nl * 8);
        fp_test_seed(9);
        init_params(&a, P, np);
        for (int64_t i = 0; i < nl; i++)
            LP[i] = 0.3 * rnd();
        int32_t ids[10], tg[10];
        for (int i = 0; i < 10; i++) {
            ids[i] = (int32_t)(fp_test_u32() % 13);
            tg[i] = (int32_t)(fp_test_u32() % 13);
        }
        double l1 = ref_llama_run(&a, P, &ld, LP, ids, tg, 2, 5, NULL, NULL, NULL);
        ref_lora ld2 = ld;
        ld2.drop_ctr = 6;
        double l2 = ref_llama_run(&a, P, &ld2, LP, ids, tg, 2, 5, NULL, NULL, NULL);
        ref_lora l0 = ld;
        l0.dropout = 0;
        double lz = ref_llama_run(&a, P, &l0, LP, ids, tg, 2, 5, NULL, NULL, NULL);
        printf("  dropout 0.3: loss %.6f (counter 5) %.6f (counter 6) %.6f (no dropout)\n", l1, l2, lz);
        CHECK(l1 != l2 && l1 != lz);
        free(P);
        free(LP);
    }

    /* the layout names and sizes agree with the shapes */
    ref_tensor_info ti[REF_MAX_TENSORS];
    int64_t total;
    int nt = ref_param_layout(&a, ti, REF_MAX_TENSORS, &total);
    CHECK(nt == 1 + 2 * 12 + 1 + 1);
    CHECK(!strcmp(ti[0].name, "model.embed_tokens.weight") && ti[0].numel == 13 * 10);
    CHECK(!strcmp(ti[nt - 1].name, "lm_head.weight") && ti[nt - 1].offset + ti[nt - 1].numel == total);
    nt = ref_param_layout(&b, ti, REF_MAX_TENSORS, &total);
    CHECK(nt == 1 + 2 * 9 + 1 && !strcmp(ti[nt - 1].name, "model.norm.weight"));
    return fp_test_report("test_ref_llama");
}
