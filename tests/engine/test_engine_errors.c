/* The engine's error paths: bad configs, bad LoRA settings, plans that do not
 * fit the device (FP_EDEVMEM with a suggestion), wrong id shapes, calls in the
 * wrong state; and the plan byte count against what is really allocated. */
#include <stdio.h>
#include <string.h>

#include "fedproxy/model.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

int main(void)
{
    fp_llama_config ok = {24, 2, 4, 2, 6, 40, 37, 1e-5f, 10000.0f, 0, 1, FP_F32};
    fp_llama_config c = ok;
    CHECK_OK(fp_llama_config_check(&ok));
    c.heads = 5;
    CHECK_ERR(fp_llama_config_check(&c), FP_EINVAL); /* 5 % 2 */
    c = ok;
    c.head_dim = 5;
    CHECK_ERR(fp_llama_config_check(&c), FP_EINVAL);
    c = ok;
    c.rope_theta = 0.5f;
    CHECK_ERR(fp_llama_config_check(&c), FP_EINVAL);
    c = ok;
    c.vocab = 0;
    CHECK_ERR(fp_llama_config_check(&c), FP_EINVAL);
    unsigned t = 0;
    CHECK_OK(fp_lora_targets_parse(&t, "q,v,down_proj"));
    CHECK(t == (FP_LORA_Q | FP_LORA_V | FP_LORA_DOWN));
    CHECK_OK(fp_lora_targets_parse(&t, "all"));
    CHECK(t == FP_LORA_ALL);
    CHECK_ERR(fp_lora_targets_parse(&t, "q,mlp"), FP_EINVAL);
    CHECK(strstr(fp_errmsg(), "mlp") != NULL);

    fp_ctx *ctx = fp_test_ctx(NULL);
    fp_model *m = NULL;
    CHECK_OK(fp_model_create(&m, ctx, &ok));
    CHECK_OK(fp_model_init_random(m, 7));
    int32_t ids[14] = {0};
    float loss;
    CHECK_ERR(fp_model_step_host(m, ids, ids, 2, 7, 0, &loss), FP_ESTATE); /* no plan */
    fp_lora_config bad = {0, 1.0f, FP_LORA_Q, 0};
    CHECK_ERR(fp_model_lora_enable(m, &bad, 1), FP_EINVAL);
    bad.rank = 2;
    bad.targets = 0;
    CHECK_ERR(fp_model_lora_enable(m, &bad, 1), FP_EINVAL);
    /* a plan far beyond the device: clear error with a smaller suggestion */
    CHECK_ERR(fp_model_plan(m, 1 << 12, 1 << 14, 1, 2), FP_EDEVMEM);
    printf("  oversized plan: %s\n", fp_errmsg());
    CHECK(strstr(fp_errmsg(), "--batch") != NULL || strstr(fp_errmsg(), "does not fit") != NULL);
    /* planned bytes = what the plan allocates */
    fp_mem_stats before, after;
    fp_ctx_mem_stats(ctx, &before);
    CHECK_OK(fp_model_plan(m, 2, 7, 1, 0));
    fp_ctx_mem_stats(ctx, &after);
    fp_plan_bytes pb;
    CHECK_OK(fp_model_plan_bytes(&pb, &ok, NULL, 2, 7, 1, 0));
    uint64_t grew = after.in_use - before.in_use;
    printf("  plan 2x7: activations %llu + grads %llu bytes planned, %llu allocated\n",
           (unsigned long long)pb.activations, (unsigned long long)pb.grads, (unsigned long long)grew);
    CHECK(grew >= pb.activations + pb.grads && grew <= pb.activations + pb.grads + 4096);
    CHECK_OK(fp_model_step_host(m, ids, ids, 2, 7, 1, &loss));
    /* inference plans share one layer's activations across the layers */
    fp_plan_bytes pi1, pi2;
    fp_llama_config deep = ok;
    deep.layers = 6;
    CHECK_OK(fp_model_plan_bytes(&pi1, &ok, NULL, 2, 7, 0, 0));
    CHECK_OK(fp_model_plan_bytes(&pi2, &deep, NULL, 2, 7, 0, 0));
    CHECK(pi1.activations == pi2.activations && pi1.activations < pb.activations);
    CHECK_ERR(fp_model_step_host(m, ids, ids, 1, 7, 0, &loss), FP_ESTATE); /* not the planned shape */
    /* wrong id tensors */
    fp_tensor *f = NULL;
    int64_t n = 14;
    CHECK_OK(fp_tensor_new(&f, ctx, FP_F32, 1, &n));
    fp_stream *s = NULL;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_ERR(fp_model_forward(m, s, f, NULL), FP_ESHAPE);
    CHECK_ERR(fp_model_backward(m, s, 1.0f), FP_ESTATE); /* no forward with targets */
    fp_stream_free(s);
    fp_tensor_free(f);
    /* upload size mismatch */
    float x[4];
    CHECK_ERR(fp_model_upload(m, 0, x, 4), FP_ESHAPE);
    CHECK_ERR(fp_model_download(m, 1, x, 4), FP_ESTATE); /* no LoRA */
    CHECK_ERR(fp_model_tensor_find(m, 0, "model.layers.9.mlp.up_proj.weight"), FP_ENOTFOUND);
    CHECK(fp_model_tensor_find(m, 0, "model.layers.1.mlp.up_proj.weight") > 0);
    fp_model_free(m);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_engine_errors");
}
