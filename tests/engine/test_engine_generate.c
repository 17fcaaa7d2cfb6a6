/* KV-cache inference against the double-precision reference (tests/ref):
 *  - the logits of a prefill chunk, of a later 2-token chunk and of every
 *    one-token decode step equal the reference's full-forward logits at those
 *    positions (NMSE <= 1e-5 per position, the model test's logits bound);
 *  - greedy fp_model_generate equals the argmax of the reference's full
 *    forward over the growing sequence at every step (steps whose reference
 *    top-2 gap is below 1e-4 would be ambiguous and are counted, not compared);
 *  - eos stops generation; sampling is deterministic per seed;
 *  - the sampler (host): greedy, top-k = 1, and the frequencies of top-k and
 *    top-p draws against their renormalised probabilities (20000 draws,
 *    |freq - p| <= 0.02, about 6 standard deviations);
 *  - error paths (no cache, overflow, bad ids, chunk too long).
 * Native profile and every built-in overlay, validation-clean. */
#include <stdio.h>

#include "engine_fixture.h"
#include "fedproxy/ops_attention.h"
#include "fedproxy/ops_train.h"
#include "fedproxy/runtime.h"

#define TOL_LOGITS 1e-5

static const eng_case CASES[] = {
    {"gqa-untied-bias", {24, 2, 4, 2, 6, 40, 37, 1e-5f, 10000.0f, 0, 1, FP_F32}, 1, 11, 4, 8.0f, FP_LORA_ALL},
    {"mha-tied", {40, 2, 5, 5, 8, 56, 101, 1e-6f, 10000.0f, 1, 0, FP_F32}, 1, 11, 3, 6.0f,
     FP_LORA_Q | FP_LORA_V | FP_LORA_O | FP_LORA_DOWN},
};

static int argmax_d(const double *x, int V, double *gap)
{
    int b = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[b])
            b = v;
    double second = -1e300;
    for (int v = 0; v < V; v++)
        if (v != b && x[v] > second)
            second = x[v];
    *gap = x[b] - second;
    return b;
}

static void run_case(fp_ctx *ctx, const eng_case *ec, int lora, uint64_t seed)
{
    const fp_llama_config *c = &ec->cfg;
    ref_cfg rc = eng_ref_cfg(c);
    ref_lora rl = {.rank = ec->lora_rank, .alpha = ec->lora_alpha, .targets = ec->lora_targets};
    fp_lora_config lc = {.rank = ec->lora_rank, .alpha = ec->lora_alpha, .targets = ec->lora_targets};
    fp_test_seed(seed);
    enum { NP = 5, NEW = 6, TOT = NP + NEW };
    int V = (int)c->vocab;
    int64_t np = fp_llama_param_count(c), nl = lora ? fp_lora_param_count(c, &lc) : 0;
    float *p = malloc((size_t)np * 4), *lp = calloc((size_t)nl + 1, 4);
    double *pd = malloc((size_t)np * 8), *lpd = calloc((size_t)nl + 1, 8);
    double *ref = malloc((size_t)TOT * V * 8);
    float *lg = malloc((size_t)TOT * V * 4);
    eng_random_params(c, p, pd, np);
    if (lora)
        eng_random_lora(&rc, &rl, lp, lpd);
    int32_t seq[TOT], tg[TOT];
    for (int i = 0; i < TOT; i++) {
        seq[i] = (int32_t)(fp_test_u32() % (uint32_t)V);
        tg[i] = FP_IGNORE_INDEX;
    }
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, c));
    if (!m)
        goto out;
    CHECK_OK(fp_model_upload(m, 0, p, np));
    if (lora) {
        CHECK_OK(fp_model_lora_enable(m, &lc, 1));
        CHECK_OK(fp_model_upload(m, 1, lp, nl));
    }
    /* 1. cached logits vs the full forward, chunks 5 + 2 + 1 + 1 + 1 + 1 */
    ref_llama_run(&rc, pd, lora ? &rl : NULL, lpd, seq, tg, 1, TOT, ref, NULL, NULL);
    CHECK_OK(fp_model_kv_begin(m, TOT, NP));
    double worst = 0;
    int at = 0, chunks[] = {NP, 2, 1, 1, 1, 1};
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        CHECK_OK(fp_model_kv_feed(m, seq + at, chunks[k], lg, 1));
        for (int i = 0; i < chunks[k]; i++) {
            double e = eng_nmse(lg + (size_t)i * V, ref + (size_t)(at + i) * V, V);
            if (e > worst || e != e)
                worst = e;
        }
        at += chunks[k];
    }
    CHECK(fp_model_kv_pos(m) == TOT);
    CHECKF(worst <= TOL_LOGITS, "%s: cached logits NMSE %.3e", ec->name, worst);
    CHECK_ERR(fp_model_kv_feed(m, seq, 1, NULL, 0), FP_ESHAPE); /* full */
    fp_model_kv_reset(m);
    CHECK_ERR(fp_model_kv_feed(m, seq, NP + 1, NULL, 0), FP_EINVAL); /* chunk too long */
    int32_t bad = (int32_t)V;
    CHECK_ERR(fp_model_kv_feed(m, &bad, 1, NULL, 0), FP_EINVAL);

    /* 2. greedy generation = argmax of the reference over the growing sequence */
    int32_t gen[NEW];
    int64_t ng = 0;
    CHECK_OK(fp_model_generate(m, seq, NP, NEW, NULL, NULL, 0, gen, &ng));
    CHECK(ng == NEW);
    int32_t grow[TOT];
    memcpy(grow, seq, NP * sizeof(int32_t));
    memcpy(grow + NP, gen, NEW * sizeof(int32_t));
    ref_llama_run(&rc, pd, lora ? &rl : NULL, lpd, grow, tg, 1, TOT, ref, NULL, NULL);
    int agree = 0, ambiguous = 0;
    for (int k = 0; k < NEW; k++) {
        double gap;
        int a = argmax_d(ref + (size_t)(NP - 1 + k) * V, V, &gap);
        if (gap < 1e-4)
            ambiguous++;
        else
            agree += a == gen[k];
    }
    CHECKF(agree + ambiguous == NEW, "%s: greedy agrees with the reference argmax at %d of %d steps", ec->name,
           agree, NEW - ambiguous);
    /* 3. eos stops; seeded sampling repeats */
    int32_t g2[NEW];
    int64_t n2 = 0;
    CHECK_OK(fp_model_generate(m, seq, NP, NEW, NULL, &gen[0], 1, g2, &n2));
    CHECK(n2 == 1 && g2[0] == gen[0]);
    fp_sampler sp = {.temperature = 0.9f, .top_k = 7, .top_p = 0.95f, .seed = 42};
    int32_t s1[NEW], s2[NEW];
    int64_t m1 = 0, m2 = 0;
    CHECK_OK(fp_model_generate(m, seq, NP, NEW, &sp, NULL, 0, s1, &m1));
    CHECK_OK(fp_model_generate(m, seq, NP, NEW, &sp, NULL, 0, s2, &m2));
    CHECK(m1 == NEW && m2 == NEW && !memcmp(s1, s2, sizeof s1));
    printf("  %-16s %-4s: cached logits worst NMSE %.2e over %d positions; greedy = reference argmax at %d/%d "
           "steps (%d ambiguous)\n",
           ec->name, lora ? "lora" : "base", worst, TOT, agree, NEW - ambiguous, ambiguous);
out:
    fp_model_free(m);
    free(p); free(lp); free(pd); free(lpd); free(ref); free(lg);
}

static void test_sampler(void)
{
    float lg[6] = {1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f};
    uint64_t r = 7;
    CHECK(fp_sample(lg, 6, NULL, &r) == 1); /* ties: the lowest id */
    fp_sampler g = {0};
    CHECK(fp_sample(lg, 6, &g, &r) == 1);
    fp_sampler k1 = {.temperature = 1.0f, .top_k = 1};
    CHECK(fp_sample(lg, 6, &k1, &r) == 1);
    CHECK_ERR(fp_sample(lg, 0, &k1, &r), FP_EINVAL);
    /* probabilities 0.5, 0.3, 0.15, 0.05 */
    float pl[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    enum { DRAWS = 20000 };
    int cnt[3][4] = {{0}};
    fp_sampler sv[3] = {{1.0f, 0, 1.0f, 0}, {1.0f, 2, 1.0f, 0}, {1.0f, 0, 0.7f, 0}};
    double want[3][4] = {{0.5, 0.3, 0.15, 0.05}, {0.625, 0.375, 0, 0}, {0.625, 0.375, 0, 0}};
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        uint64_t rng = 1234 + (uint64_t)k;
        for (int i = 0; i < DRAWS; i++) {
            int32_t t = fp_sample(pl, 4, &sv[k], &rng);
            if (t >= 0 && t < 4)
                cnt[k][t]++;
        }
        for (int t = 0; t < 4; t++) {
            double e = fabs(cnt[k][t] / (double)DRAWS - want[k][t]);
            worst = e > worst ? e : worst;
        }
    }
    printf("  sampler: plain/top-k 2/top-p 0.7 frequencies within %.4f of the renormalised probabilities\n", worst);
    CHECK(worst <= 0.02);
    CHECK(cnt[1][2] == 0 && cnt[1][3] == 0 && cnt[2][2] == 0 && cnt[2][3] == 0);
    /* temperature sharpens: at T = 0.25 token 0 dominates */
    fp_sampler cold = {0.25f, 0, 1.0f, 0};
    uint64_t rng = 5;
    int zero = 0;
    for (int i = 0; i < 2000; i++)
        zero += fp_sample(pl, 4, &cold, &rng) == 0;
    CHECK(zero > 2000 * 0.85); /* p0 = 0.5^4 / sum p^4 = 0.876 */
}

int main(void)
{
    printf("generation: %s\n", fp_model_generate_mode());
    test_sampler();
    int nprof = 0;
    while (fp_overlay_builtin_names[nprof])
        nprof++;
    for (int pi = -1; pi < nprof; pi++) {
        const char *prof = pi < 0 ? "" : fp_overlay_builtin_names[pi];
        fp_ctx *ctx = fp_test_ctx(prof);
        printf("profile '%s': attention variant %s\n", prof, fp_attention_variant(ctx));
        for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
            run_case(ctx, &CASES[i], (int)((i + (size_t)(pi + 1)) % 2), 300 + i);
        if (pi < 0) { /* the other LoRA/base pairing on the native profile */
            for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
                run_case(ctx, &CASES[i], (int)((i + 1) % 2), 400 + i);
            fp_model *m = NULL;
            CHECK_OK(fp_model_create(&m, ctx, &CASES[0].cfg));
            int32_t id = 1;
            CHECK_ERR(fp_model_kv_feed(m, &id, 1, NULL, 0), FP_ESTATE);
            CHECK_ERR(fp_model_kv_begin(m, 4, 5), FP_EINVAL);
            fp_model_free(m);
        }
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_engine_generate");
}
