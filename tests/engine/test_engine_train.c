/* The training loop: SGD with gradient accumulation against the reference
 * (p -= lr * mean of micro-batch gradients, then the next loss), the
 * warmup + cosine schedule, clipping, exact resume from a checkpoint (the
 * resumed run's losses equal the uninterrupted run's bit for bit, data
 * windows wrapping across epochs; the LoRA run with dropout 0.2), evaluation against the reference, and
 * the token-file reader. */
#include <stdio.h>

#include "engine_fixture.h"
#include "fedproxy/fileio.h"
#include "fedproxy/runtime.h"
#include "fedproxy/safetensors.h"
#include "fedproxy/train.h"

static const fp_llama_config CFG = {24, 2, 4, 2, 6, 40, 37, 1e-5f, 10000.0f, 0, 1, FP_F32};

static void test_schedule(void)
{
    fp_train_config c;
    fp_train_config_default(&c);
    c.lr = 1.0f;
    c.steps = 10;
    c.warmup = 2;
    c.min_lr_ratio = 0.1f;
    CHECK(fabsf(fp_train_lr_at(&c, 0) - 0.5f) < 1e-6f);
    CHECK(fabsf(fp_train_lr_at(&c, 1) - 1.0f) < 1e-6f);
    CHECK(fabsf(fp_train_lr_at(&c, 2) - 1.0f) < 1e-6f);
    CHECK(fabsf(fp_train_lr_at(&c, 6) - (0.1f + 0.9f * 0.5f)) < 1e-6f); /* halfway through the decay */
    CHECK(fabsf(fp_train_lr_at(&c, 10) - 0.1f) < 1e-6f);
    c.min_lr_ratio = -1;
    CHECK(fp_train_lr_at(&c, 7) == 1.0f);
}

/* SGD, accum 2, batch 2, seq 5 windows: device loss of step 2 vs reference */
/* ids below CFG's vocab (37) */
static void random_tokens(int32_t *tok, int n)
{
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)(fp_test_u32() % 37);
}

static void test_sgd_accum(fp_ctx *ctx)
{
    fp_test_seed(11);
    int64_t np = fp_llama_param_count(&CFG);
    float *p = malloc((size_t)np * 4);
    double *pd = malloc((size_t)np * 8), *g1 = malloc((size_t)np * 8), *g2 = malloc((size_t)np * 8);
    eng_random_params(&CFG, p, pd, np);
    enum { NTOK = 64 };
    int32_t tok[NTOK];
    random_tokens(tok, NTOK);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    CHECK_OK(fp_model_upload(m, 0, p, np));
    fp_train_config c;
    fp_train_config_default(&c);
    c.optimizer = FP_OPT_SGD;
    c.lr = 0.05f;
    c.batch = 2;
    c.seq = 5;
    c.accum = 2;
    c.clip = 0;
    fp_trainer *t = NULL;
    CHECK_OK(fp_trainer_create(&t, m, &c, tok, NTOK));
    fp_train_stats s1, s2;
    CHECK_OK(fp_trainer_step(t, &s1));
    CHECK_OK(fp_trainer_step(t, &s2));
    /* reference: micro-batches are windows at positions 0,5 then 10,15 */
    ref_cfg rc = eng_ref_cfg(&CFG);
    int32_t ids[10], tg[10];
    double lsum = 0;
    for (int mb = 0; mb < 2; mb++) {
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 5; i++) {
                ids[b * 5 + i] = tok[(mb * 2 + b) * 5 + i];
                tg[b * 5 + i] = tok[(mb * 2 + b) * 5 + i + 1];
            }
        lsum += ref_llama_run(&rc, pd, NULL, NULL, ids, tg, 2, 5, NULL, mb ? g2 : g1, NULL);
    }
    double e1 = fabs(s1.loss - lsum / 2) / (lsum / 2);
    for (int64_t i = 0; i < np; i++)
        pd[i] -= 0.05 * 0.5 * (g1[i] + g2[i]);
    double l2 = 0;
    for (int mb = 0; mb < 2; mb++) {
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 5; i++) {
                ids[b * 5 + i] = tok[(4 + mb * 2 + b) * 5 + i];
                tg[b * 5 + i] = tok[(4 + mb * 2 + b) * 5 + i + 1];
            }
        l2 += ref_llama_run(&rc, pd, NULL, NULL, ids, tg, 2, 5, NULL, NULL, NULL) / 2;
    }
    double e2 = fabs(s2.loss - l2) / l2;
    printf("  sgd accum 2: step losses %.6f %.6f, reference %.6f %.6f (rel %.1e %.1e), tokens %lld\n", s1.loss,
           s2.loss, lsum / 2, l2, e1, e2, (long long)s1.tokens);
    CHECKF(e1 < 1e-5 && e2 < 1e-5, "sgd losses rel err %g %g", e1, e2);
    CHECK(s1.tokens == 20);
    fp_trainer_free(t);
    fp_model_free(m);
    free(p); free(pd); free(g1); free(g2);
}

/* fp_trainer_profile: runs (accum forward+backward streams plus the optimizer's
 * per step) and dispatches always; GPU time per pipeline only on a profiling
 * context, the entries summing to the total; reset clears everything. */
static void profile_case(fp_ctx *ctx, int profiling)
{
    enum { NTOK = 64 };
    int32_t tok[NTOK];
    random_tokens(tok, NTOK);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    CHECK_OK(fp_model_init_random(m, 3));
    fp_lora_config lc = {.rank = 2, .alpha = 4.0f, .targets = FP_LORA_ALL};
    CHECK_OK(fp_model_lora_enable(m, &lc, 9));
    fp_train_config c;
    fp_train_config_default(&c);
    c.batch = 2;
    c.seq = 5;
    c.accum = 2;
    fp_trainer *t = NULL;
    CHECK_OK(fp_trainer_create(&t, m, &c, tok, NTOK));
    fp_train_stats st;
    CHECK_OK(fp_trainer_step(t, &st));
    CHECK_OK(fp_trainer_step(t, &st));
    fp_train_profile p;
    fp_train_prof_entry e[64];
    uint32_t n = 99;
    CHECK_OK(fp_trainer_profile(t, &p, e, 64, &n));
    CHECKF(p.steps == 2 && p.runs == 6, "profile: %lld steps, %u runs (want 2, 6)", (long long)p.steps, p.runs);
    CHECK(p.dispatches > 20 && p.barriers > 0 && p.barriers <= p.dispatches);
    CHECK(p.wall_s > 0 && p.run_s > 0 && p.run_s <= p.wall_s && fabs(p.record_s - (p.wall_s - p.run_s)) < 1e-9);
    if (!profiling) {
        CHECKF(n == 0 && p.gpu_us == 0, "profile without timestamps: %u entries, %g us", n, p.gpu_us);
    } else {
        double sum = 0;
        uint32_t d = 0;
        CHECK(n > 5 && n <= 64);
        for (uint32_t i = 0; i < n && i < 64; i++) {
            CHECK(e[i].pipeline && e[i].pipeline[0] && e[i].dispatches > 0 && e[i].gpu_us >= 0);
            for (uint32_t j = 0; j < i; j++)
                CHECKF(strcmp(e[i].pipeline, e[j].pipeline), "pipeline %s listed twice", e[i].pipeline);
            sum += e[i].gpu_us;
            d += e[i].dispatches;
        }
        CHECKF(d == p.dispatches, "entries count %u dispatches, totals %u", d, p.dispatches);
        CHECKF(p.gpu_us > 0 && fabs(sum - p.gpu_us) <= 1e-6 * p.gpu_us, "entries sum %g us, total %g", sum, p.gpu_us);
        printf("  profile: %u pipelines, %u dispatches, %.0f us GPU of %.0f us wall\n", n, d, p.gpu_us,
               p.wall_s * 1e6);
    }
    fp_trainer_profile_reset(t);
    CHECK_OK(fp_trainer_profile(t, &p, e, 64, &n));
    CHECK(n == 0 && p.steps == 0 && p.runs == 0 && p.dispatches == 0 && p.gpu_us == 0 && p.wall_s == 0);
    CHECK(fp_trainer_profile(NULL, &p, e, 64, &n) == FP_EINVAL);
    fp_trainer_free(t);
    fp_model_free(m);
}

static void test_profile(fp_ctx *ctx)
{
    profile_case(ctx, 0);
    fp_ctx_opts o = {0};
    o.validate = 1;
    o.profiling = 1;
    fp_ctx *pc = NULL;
    CHECK_OK(fp_ctx_create(&pc, &o));
    profile_case(pc, 1);
    fp_test_ctx_done(pc);
}

/* losses of steps [from, to) after optionally loading dir; saves at save_at */
static int run_train(fp_ctx *ctx, int lora, const int32_t *tok, int64_t n, int steps, const char *load,
                     const char *save, int save_at, float *losses)
{
    fp_model *m = NULL;
    fp_trainer *t = NULL;
    int rc = fp_model_create(&m, ctx, &CFG);
    if (!rc)
        rc = fp_model_init_random(m, 5);
    fp_lora_config lc = {3, 6.0f, FP_LORA_Q | FP_LORA_V | FP_LORA_DOWN, 0};
    if (!rc && lora)
        rc = fp_model_lora_enable(m, &lc, 9);
    if (!rc && lora) /* dropout masks follow the step counter, so a resumed run repeats them */
        rc = fp_model_lora_set_dropout(m, 0.2f, 4);
    fp_train_config c;
    fp_train_config_default(&c);
    c.lr = 1e-2f;
    c.steps = steps;
    c.warmup = 2;
    c.min_lr_ratio = 0.1f;
    c.batch = 2;
    c.seq = 7;
    c.accum = 2;
    c.clip = 0.5f;
    c.weight_decay = 0.01f;
    c.seed = 3;
    if (!rc)
        rc = fp_trainer_create(&t, m, &c, tok, n);
    if (!rc && load)
        rc = fp_trainer_load(t, load);
    while (!rc && fp_trainer_steps_done(t) < steps) {
        fp_train_stats st;
        rc = fp_trainer_step(t, &st);
        if (!rc)
            losses[st.step - 1] = st.loss;
        if (!rc && save && st.step == save_at)
            rc = fp_trainer_save(t, save);
    }
    fp_trainer_free(t);
    fp_model_free(m);
    return rc;
}

static void test_resume(fp_ctx *ctx, int lora)
{
    enum { NTOK = 50, STEPS = 6 };
    int32_t tok[NTOK];
    fp_test_seed(21);
    for (int i = 0; i < NTOK; i++)
        tok[i] = (int32_t)(fp_test_u32() % 37);
    float a[STEPS] = {0}, b[STEPS] = {0};
    const char *dir = fp_test_tmpdir(lora ? "resume-lora" : "resume-full");
    CHECK_OK(run_train(ctx, lora, tok, NTOK, STEPS, NULL, dir, 3, a));
    CHECK_OK(run_train(ctx, lora, tok, NTOK, STEPS, dir, NULL, 0, b));
    int same = 1;
    for (int i = 3; i < STEPS; i++)
        same &= a[i] == b[i];
    printf("  resume (%s): uninterrupted %.6f %.6f %.6f, resumed %.6f %.6f %.6f\n", lora ? "lora" : "full", a[3],
           a[4], a[5], b[3], b[4], b[5]);
    CHECK(same);
    CHECK(a[5] < a[0]); /* it learns */
    /* a checkpoint of another run shape is refused */
    fp_model *m = NULL;
    fp_trainer *t = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    fp_train_config c;
    fp_train_config_default(&c);
    c.batch = 1;
    c.seq = 7;
    CHECK_OK(fp_trainer_create(&t, m, &c, tok, NTOK));
    CHECK_ERR(fp_trainer_load(t, dir), FP_ESTATE);
    fp_trainer_free(t);
    fp_model_free(m);
}

static void test_eval(fp_ctx *ctx)
{
    fp_test_seed(31);
    int64_t np = fp_llama_param_count(&CFG);
    float *p = malloc((size_t)np * 4);
    double *pd = malloc((size_t)np * 8);
    eng_random_params(&CFG, p, pd, np);
    int32_t tok[12];
    for (int i = 0; i < 12; i++)
        tok[i] = (int32_t)(fp_test_u32() % 37);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    CHECK_OK(fp_model_upload(m, 0, p, np));
    fp_eval_result r;
    CHECK_OK(fp_model_eval_tokens(m, tok, 12, 0, &r));
    ref_cfg rc = eng_ref_cfg(&CFG);
    double *logits = malloc(11 * 37 * 8);
    double ref = ref_llama_run(&rc, pd, NULL, NULL, tok, tok + 1, 1, 11, logits, NULL, NULL);
    int correct = 0;
    for (int i = 0; i < 11; i++) {
        int best = 0;
        for (int v = 1; v < 37; v++)
            if (logits[i * 37 + v] > logits[i * 37 + best])
                best = v;
        correct += best == tok[i + 1];
    }
    printf("  eval: loss %.6f (reference %.6f) ppl %.3f acc %.3f (reference %.3f)\n", r.loss, ref, r.ppl, r.accuracy,
           correct / 11.0);
    CHECK(r.tokens == 11 && fabs(r.loss - ref) / ref < 1e-5 && fabs(r.accuracy - correct / 11.0) < 1e-9);
    /* windows of 4: 3 windows (the last padded) cover all 11 targets */
    CHECK_OK(fp_model_eval_tokens(m, tok, 12, 4, &r));
    CHECK(r.tokens == 11);
    int32_t badtok[3] = {1, 99, 2};
    CHECK_ERR(fp_model_eval_tokens(m, badtok, 3, 0, &r), FP_EINVAL);
    fp_model_free(m);
    free(p); free(pd); free(logits);
}

/* HF directory and PEFT adapter round trips: same logits after reload */
static void test_files(fp_ctx *ctx)
{
    const char *dir = fp_test_tmpdir("hfdir");
    fp_model *m = NULL, *m2 = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    CHECK_OK(fp_model_init_random(m, 77));
    fp_lora_config lc = {2, 4.0f, FP_LORA_Q | FP_LORA_UP, 0};
    CHECK_OK(fp_model_save_dir(m, dir));
    CHECK_OK(fp_model_lora_enable(m, &lc, 5));
    int64_t nl = fp_lora_param_count(&CFG, &lc);
    float *l = malloc((size_t)nl * 4), *l2 = malloc((size_t)nl * 4);
    for (int64_t i = 0; i < nl; i++)
        l[i] = fp_test_uniform(-0.5f, 0.5f);
    CHECK_OK(fp_model_upload(m, 1, l, nl));
    CHECK_OK(fp_model_save_adapter(m, dir));
    {   /* PEFT's tensor names, through peft.h */
        char ap[600];
        snprintf(ap, sizeof ap, "%s/adapter_model.safetensors", dir);
        fp_st_file *st = NULL;
        CHECK_OK(fp_st_open(&st, ap));
        CHECK(st && fp_st_find(st, "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight") != NULL);
        CHECK(st && fp_st_find(st, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") != NULL);
        fp_st_close(st);
        /* an adapter for other shapes is refused by name */
        fp_llama_config other = CFG;
        other.hidden = 16;
        fp_model *mo = NULL;
        CHECK_OK(fp_model_create(&mo, ctx, &other));
        CHECK_ERR(fp_model_load_adapter(mo, dir), FP_EFORMAT);
        printf("  adapter for other shapes: %s\n", fp_errmsg());
        fp_model_free(mo);
    }
    CHECK_OK(fp_model_load_dir(&m2, ctx, dir));
    if (m2) {
        CHECK_OK(fp_model_load_adapter(m2, dir));
        CHECK_OK(fp_model_download(m2, 1, l2, nl));
        CHECK(!memcmp(l, l2, (size_t)nl * 4));
        int32_t tok[9] = {1, 5, 9, 2, 36, 0, 7, 7, 3};
        fp_eval_result r1, r2;
        CHECK_OK(fp_model_eval_tokens(m, tok, 9, 0, &r1));
        CHECK_OK(fp_model_eval_tokens(m2, tok, 9, 0, &r2));
        CHECK(r1.loss == r2.loss);
    }
    fp_model_free(m2);
    fp_model_free(m);
    free(l);
    free(l2);
}

static void test_tokens_file(void)
{
    const char *dir = fp_test_tmpdir("tokens");
    char path[512];
    snprintf(path, sizeof path, "%s/t.txt", dir);
    const char *txt = " 1 2\n3\t40  \n";
    CHECK_OK(fp_write_file_atomic(path, txt, strlen(txt), 0644));
    int32_t *v = NULL;
    int64_t n = 0;
    CHECK_OK(fp_tokens_read(&v, &n, path));
    CHECK(n == 4 && v && v[0] == 1 && v[3] == 40);
    free(v);
    CHECK_OK(fp_write_file_atomic(path, "1 x2", 4, 0644));
    CHECK_ERR(fp_tokens_read(&v, &n, path), FP_EFORMAT);
    CHECK_OK(fp_write_file_atomic(path, "1 -2", 4, 0644));
    CHECK_ERR(fp_tokens_read(&v, &n, path), FP_EFORMAT);
}

int main(void)
{
    test_schedule();
    test_tokens_file();
    fp_ctx *ctx = fp_test_ctx(NULL);
    test_sgd_accum(ctx);
    test_resume(ctx, 0);
    test_resume(ctx, 1);
    test_eval(ctx);
    test_files(ctx);
    test_profile(ctx);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_engine_train");
}
