/* lora_vec.h: the layout equals the engine's packed LoRA order (checked by
 * name and offset against fp_model_tensor_info), init is deterministic and
 * PEFT-shaped, truncation zeroes exactly the ranks beyond r, and a PEFT round
 * trip (including a smaller-rank file, zero-padded and rescaled) is exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/lora_vec.h"
#include "fedproxy/peft.h"
#include "fp_test.h"

static const fp_llama_config CFG = {.hidden = 12, .layers = 3, .heads = 3, .kv_heads = 1, .head_dim = 4,
                                    .intermediate = 20, .vocab = 17, .rms_eps = 1e-5f, .rope_theta = 10000.0f};

static void check_against_engine(fp_ctx *ctx, unsigned targets, int rank, uint64_t layers)
{
    fp_lora_config lc = {.rank = rank, .alpha = 2.0f * (float)rank, .targets = targets, .layers = layers};
    fp_lora_vec_layout l;
    CHECK_OK(fp_lora_vec_layout_build(&l, &CFG, &lc));
    CHECK(l.dim == (size_t)fp_lora_param_count(&CFG, &lc));
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &CFG));
    CHECK_OK(fp_model_lora_enable(m, &lc, 1));
    int nt = fp_model_tensor_count(m, 1);
    CHECK(nt == (int)(2 * l.n));
    for (size_t k = 0; k < l.n && 2 * (int)k + 1 < nt; k++) {
        fp_param_info a, b;
        CHECK_OK(fp_model_tensor_info(m, 1, (int)(2 * k), &a));
        CHECK_OK(fp_model_tensor_info(m, 1, (int)(2 * k + 1), &b));
        char want[96];
        snprintf(want, sizeof want, "model.layers.%d.%s.%s.lora_A.weight", l.slots[k].layer,
                 l.slots[k].module <= 3 ? "self_attn" : "mlp", fp_lora_module_name(l.slots[k].module));
        CHECK(!strcmp(a.name, want));
        CHECK(a.offset == (int64_t)l.slots[k].a_off && a.rows == rank && a.cols == l.slots[k].in);
        CHECK(b.offset == (int64_t)l.slots[k].b_off && b.rows == l.slots[k].out && b.cols == rank);
    }
    fp_model_free(m);
    fp_lora_vec_layout_free(&l);
}

int main(void)
{
    fp_ctx *ctx = fp_test_ctx(NULL);
    check_against_engine(ctx, FP_LORA_ALL, 3, 0);
    check_against_engine(ctx, FP_LORA_Q | FP_LORA_V | FP_LORA_DOWN, 2, 0);
    /* layer subsets (Offsite-Tuning's first/last layers): the same order with the other layers skipped */
    check_against_engine(ctx, FP_LORA_ALL, 2, 0x5);
    check_against_engine(ctx, FP_LORA_O | FP_LORA_UP, 3, 0x2);
    {
        fp_lora_config sub = {.rank = 2, .alpha = 4.0f, .targets = FP_LORA_ALL, .layers = 0x5};
        fp_lora_vec_layout ls;
        CHECK_OK(fp_lora_vec_layout_build(&ls, &CFG, &sub));
        CHECK(ls.n == 14 && ls.slots[0].layer == 0 && ls.slots[7].layer == 2);
        fp_lora_vec_layout_free(&ls);
        fp_model *m = NULL;
        CHECK_OK(fp_model_create(&m, ctx, &CFG));
        sub.layers = 0x8; /* layer 3 of a 3-layer model */
        CHECK_ERR(fp_model_lora_enable(m, &sub, 1), FP_EINVAL);
        CHECK_ERR(fp_lora_vec_layout_build(&ls, &CFG, &sub), FP_EINVAL);
        fp_model_free(m);
    }
    fp_test_ctx_done(ctx);

    fp_lora_config lc = {.rank = 4, .alpha = 8.0f, .targets = FP_LORA_ALL};
    fp_lora_vec_layout l;
    CHECK_OK(fp_lora_vec_layout_build(&l, &CFG, &lc));
    float *v = malloc(l.dim * sizeof *v), *w = malloc(l.dim * sizeof *w);
    CHECK_OK(fp_lora_vec_init(v, l.dim, &l, 42));
    CHECK_OK(fp_lora_vec_init(w, l.dim, &l, 42));
    CHECK(!memcmp(v, w, l.dim * sizeof *v));
    CHECK_OK(fp_lora_vec_init(w, l.dim, &l, 43));
    CHECK(memcmp(v, w, l.dim * sizeof *v) != 0);
    /* A within the Kaiming bound and not degenerate, B zero */
    double sumsq = 0;
    size_t na = 0;
    for (size_t k = 0; k < l.n; k++) {
        const fp_lora_slot *s = &l.slots[k];
        float bound = 1.0f / sqrtf((float)s->in);
        for (size_t i = 0; i < (size_t)(4 * s->in); i++) {
            CHECK(fabsf(v[s->a_off + i]) <= bound);
            sumsq += (double)v[s->a_off + i] * v[s->a_off + i] / ((double)bound * bound);
            na++;
        }
        for (size_t i = 0; i < (size_t)(4 * s->out); i++)
            CHECK(v[s->b_off + i] == 0.0f);
    }
    CHECK(fabs(sumsq / (double)na - 1.0 / 3.0) < 0.05); /* variance of U(-1,1) */

    /* truncation to rank 2 zeroes rows 2..3 of A and columns 2..3 of B only */
    for (size_t i = 0; i < l.dim; i++)
        w[i] = (float)(i + 1);
    CHECK_OK(fp_lora_vec_truncate(w, l.dim, &l, 2));
    const fp_lora_slot *s1 = &l.slots[1];
    CHECK(w[s1->a_off + 2 * s1->in - 1] != 0 && w[s1->a_off + 2 * s1->in] == 0);
    CHECK(w[s1->b_off + 1] != 0 && w[s1->b_off + 2] == 0 && w[s1->b_off + 3] == 0 && w[s1->b_off + 4] != 0);
    CHECK_ERR(fp_lora_vec_truncate(w, l.dim, &l, 5), FP_EINVAL);
    CHECK_ERR(fp_lora_vec_truncate(w, l.dim - 1, &l, 2), FP_ESHAPE);

    /* PEFT round trip */
    const char *dir = fp_test_tmpdir("lora_vec");
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/full", dir);
    snprintf(d2, sizeof d2, "%s/small", dir);
    for (size_t i = 0; i < l.dim; i++)
        v[i] = fp_test_normal();
    CHECK_OK(fp_lora_vec_save_peft(&l, v, l.dim, 0.05f, "tiny", d1));
    memset(w, 0, l.dim * sizeof *w);
    CHECK_OK(fp_lora_vec_load_peft(w, l.dim, &l, d1));
    CHECK(!memcmp(v, w, l.dim * sizeof *v));

    /* a rank-2 adapter with alpha 2 (scale 1) loads into the rank-4 alpha-8
     * layout (scale 2): zero-padded, B halved, so every product is unchanged */
    fp_lora_config lc2 = {.rank = 2, .alpha = 2.0f, .targets = FP_LORA_ALL};
    fp_lora_vec_layout l2;
    CHECK_OK(fp_lora_vec_layout_build(&l2, &CFG, &lc2));
    float *u = malloc(l2.dim * sizeof *u);
    for (size_t i = 0; i < l2.dim; i++)
        u[i] = fp_test_normal();
    CHECK_OK(fp_lora_vec_save_peft(&l2, u, l2.dim, 0.0f, "tiny", d2));
    CHECK_OK(fp_lora_vec_load_peft(w, l.dim, &l, d2));
    double maxd = 0;
    for (size_t k = 0; k < l.n; k++) {
        const fp_lora_slot *a = &l.slots[k], *b = &l2.slots[k];
        for (int64_t o = 0; o < a->out; o++)
            for (int64_t i = 0; i < a->in; i++) {
                double p4 = 0, p2 = 0;
                for (int j = 0; j < 4; j++)
                    p4 += 2.0 * w[a->b_off + o * 4 + j] * w[a->a_off + j * a->in + i];
                for (int j = 0; j < 2; j++)
                    p2 += 1.0 * u[b->b_off + o * 2 + j] * u[b->a_off + j * b->in + i];
                maxd = fmax(maxd, fabs(p4 - p2));
            }
    }
    CHECK(maxd < 1e-5);
    /* a layout without v has no slot for the file's v pairs */
    fp_lora_config lc3 = {.rank = 4, .alpha = 8.0f, .targets = FP_LORA_Q};
    fp_lora_vec_layout l3;
    CHECK_OK(fp_lora_vec_layout_build(&l3, &CFG, &lc3));
    float *z = malloc(l3.dim * sizeof *z);
    CHECK_ERR(fp_lora_vec_load_peft(z, l3.dim, &l3, d1), FP_EFORMAT);
    fp_lora_config bad = {.rank = 4, .alpha = 8.0f, .targets = FP_LORA_ALL, .layers = 1u << 3};
    fp_lora_vec_layout lb;
    CHECK_ERR(fp_lora_vec_layout_build(&lb, &CFG, &bad), FP_EINVAL);
    free(z); free(u); free(v); free(w);
    fp_lora_vec_layout_free(&l); fp_lora_vec_layout_free(&l2); fp_lora_vec_layout_free(&l3);
    return fp_test_report("lora_vec");
}
