/* config.json: valid Llama / Qwen2 / Mistral configs, each rejected field named,
 * writer round trip, and the tensor-set check against a config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/model_config.h"
#include "fedproxy/safetensors.h"
#include "fp_test.h"

static int parse(fp_model_config *c, const char *json)
{
    return fp_model_config_parse(c, json, strlen(json), "cfg.json");
}

/* Expect code and a message containing want. */
static void reject(const char *json, int code, const char *want)
{
    fp_model_config c;
    CHECK_ERR(parse(&c, json), code);
    CHECKF(strstr(fp_errmsg(), want) != NULL, "message '%s' lacks '%s'", fp_errmsg(), want);
}

#define LLAMA_BASE                                                                               \
    "\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":576,"      \
    "\"intermediate_size\":1536,\"num_hidden_layers\":30,\"num_attention_heads\":9,"            \
    "\"vocab_size\":49152,\"rms_norm_eps\":1e-05,\"bos_token_id\":0,\"eos_token_id\":0"

static void test_valid(void)
{
    fp_model_config c;
    /* SmolLM-135M-like, with harmless extras */
    CHECK_OK(parse(&c, "{" LLAMA_BASE ",\"num_key_value_heads\":3,\"rope_theta\":10000.0,"
                       "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
                       "\"transformers_version\":\"4.40.0\",\"initializer_range\":0.02,"
                       "\"use_cache\":true,\"hidden_act\":\"silu\",\"rope_scaling\":null,"
                       "\"attention_bias\":false,\"mlp_bias\":false,\"attention_dropout\":0.0,"
                       "\"pretraining_tp\":1,\"max_position_embeddings\":2048}"));
    CHECK(c.arch == FP_ARCH_LLAMA && c.hidden_size == 576 && c.num_hidden_layers == 30);
    CHECK(c.num_attention_heads == 9 && c.num_key_value_heads == 3 && c.head_dim == 64);
    CHECK(c.intermediate_size == 1536 && c.vocab_size == 49152 && c.rms_norm_eps == 1e-5);
    CHECK(c.tie_word_embeddings == 1 && c.attention_bias == 0 && c.rope_theta == 10000.0);
    CHECK(c.bos_token_id == 0 && c.n_eos == 1 && c.eos_token_ids[0] == 0);
    CHECK(c.max_position_embeddings == 2048);

    /* defaults: kv heads = heads, rope_theta 10000, eps 1e-6, untied */
    CHECK_OK(parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}"));
    CHECK(c.num_key_value_heads == 4 && c.head_dim == 16 && c.rope_theta == 10000.0);
    CHECK(c.rms_norm_eps == 1e-6 && c.tie_word_embeddings == 0 && c.bos_token_id == -1 && c.n_eos == 0);

    /* Qwen2: q/k/v biases always; an unused window is fine; eos list */
    CHECK_OK(parse(&c, "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\","
                       "\"hidden_size\":896,\"intermediate_size\":4864,\"num_hidden_layers\":24,"
                       "\"num_attention_heads\":14,\"num_key_value_heads\":2,\"vocab_size\":151936,"
                       "\"rope_theta\":1000000.0,\"sliding_window\":32768,\"use_sliding_window\":false,"
                       "\"max_window_layers\":21,\"tie_word_embeddings\":true,"
                       "\"bos_token_id\":151643,\"eos_token_id\":[151645,151643]}"));
    CHECK(c.arch == FP_ARCH_QWEN2 && c.attention_bias == 1 && c.head_dim == 64);
    CHECK(c.rope_theta == 1e6 && c.n_eos == 2 && c.eos_token_ids[1] == 151643);
    CHECK(c.max_position_embeddings == 32768); /* Qwen2Config's default */

    /* Mistral with sliding_window null */
    CHECK_OK(parse(&c, "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\","
                       "\"hidden_size\":4096,\"intermediate_size\":14336,\"num_hidden_layers\":32,"
                       "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"head_dim\":128,"
                       "\"vocab_size\":32768,\"sliding_window\":null,\"rope_theta\":1000000.0}"));
    CHECK(c.arch == FP_ARCH_MISTRAL && c.num_key_value_heads == 8 && c.attention_bias == 0);

    /* architectures alone is enough; transformers v5 rope_parameters */
    CHECK_OK(parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,"
                       "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                       "\"vocab_size\":100,\"rope_parameters\":{\"rope_type\":\"default\","
                       "\"rope_theta\":500000.0}}"));
    CHECK(c.arch == FP_ARCH_LLAMA && c.rope_theta == 500000.0);
}

static void test_rejected(void)
{
    reject("{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", FP_EUNSUPPORTED,
           "rope_scaling (linear)");
    reject("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}}",
           FP_EUNSUPPORTED, "rope_scaling (llama3)");
    reject("{" LLAMA_BASE ",\"num_local_experts\":8}", FP_EUNSUPPORTED, "num_local_experts");
    reject("{" LLAMA_BASE ",\"num_experts_per_tok\":2}", FP_EUNSUPPORTED, "num_experts_per_tok");
    reject("{" LLAMA_BASE ",\"num_experts\":60}", FP_EUNSUPPORTED, "mixture of experts");
    reject("{" LLAMA_BASE ",\"hidden_act\":\"gelu\"}", FP_EUNSUPPORTED, "hidden_act 'gelu'");
    reject("{" LLAMA_BASE ",\"mlp_bias\":true}", FP_EUNSUPPORTED, "mlp_bias");
    reject("{" LLAMA_BASE ",\"attention_dropout\":0.1}", FP_EUNSUPPORTED, "attention_dropout");
    reject("{" LLAMA_BASE ",\"quantization_config\":{\"quant_method\":\"gptq\"}}", FP_EUNSUPPORTED,
           "quantization_config");
    reject("{" LLAMA_BASE ",\"layer_types\":[\"sliding_attention\"]}", FP_EUNSUPPORTED, "layer_types");
    reject("{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\",\"hidden_size\":64,"
           "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
           "\"vocab_size\":100,\"sliding_window\":4096}",
           FP_EUNSUPPORTED, "sliding_window 4096");
    reject("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
           "\"use_sliding_window\":true,\"sliding_window\":4096}",
           FP_EUNSUPPORTED, "use_sliding_window");
    reject("{\"architectures\":[\"GPTNeoXForCausalLM\"],\"hidden_size\":64}", FP_EUNSUPPORTED,
           "GPTNeoXForCausalLM");
    reject("{\"model_type\":\"gemma\",\"hidden_size\":64}", FP_EUNSUPPORTED, "model_type 'gemma'");
    reject("{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"llama\"}", FP_EFORMAT,
           "disagrees");
    reject("{\"hidden_size\":64}", FP_EFORMAT, "model_type");
    reject("{\"model_type\":\"llama\",\"intermediate_size\":128,\"num_hidden_layers\":2,"
           "\"num_attention_heads\":4,\"vocab_size\":100}",
           FP_EFORMAT, "'hidden_size' is missing");
    reject("{\"model_type\":\"llama\",\"hidden_size\":\"64\",\"intermediate_size\":128,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
           FP_EFORMAT, "'hidden_size' is not an integer");
    reject("{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":3,"
           "\"vocab_size\":100}",
           FP_EFORMAT, "num_key_value_heads 3");
    reject("{" LLAMA_BASE ",\"eos_token_id\":50000}", FP_EFORMAT, "'eos_token_id' appears twice");
    reject("{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
           "\"eos_token_id\":[2,100]}",
           FP_EFORMAT, "eos_token_id 100 is outside");
    reject("{" LLAMA_BASE ",\"tie_word_embeddings\":\"yes\"}", FP_EFORMAT, "tie_word_embeddings");
    reject("[1]", FP_EFORMAT, "not a JSON object");
    reject("{", FP_EFORMAT, "not valid JSON");
}

static void test_writer(void)
{
    fp_model_config c = {0};
    c.arch = FP_ARCH_QWEN2;
    c.hidden_size = 128;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 344;
    c.vocab_size = 8002;
    c.max_position_embeddings = 1024;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 500000;
    c.tie_word_embeddings = 1;
    c.attention_bias = 1;
    c.bos_token_id = -1;
    c.n_eos = 2;
    c.eos_token_ids[0] = 0;
    c.eos_token_ids[1] = 1;
    char *json;
    CHECK_OK(fp_model_config_to_json(&json, &c));
    CHECK(strstr(json, "\"Qwen2ForCausalLM\"") && strstr(json, "\"rope_scaling\":\tnull"));
    fp_model_config d;
    CHECK_OK(parse(&d, json));
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    free(json);
    c.arch = FP_ARCH_LLAMA;
    c.attention_bias = 0;
    c.n_eos = 1;
    c.eos_token_ids[1] = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", fp_test_tmpdir("model_config"));
    CHECK_OK(fp_model_config_save(path, &c));
    CHECK_OK(fp_model_config_load(&d, path));
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    c.num_key_value_heads = 3;
    CHECK_ERR(fp_model_config_to_json(&json, &c), FP_EFORMAT);
}

/* A tiny checkpoint for the tensor check: H=8, 2 heads of 4, 1 kv head, I=12,
 * V=10, 2 layers. */
struct tb {
    fp_st_entry e[64];
    int64_t shapes[64][2];
    char names[64][96];
    int n;
};

static float zeros[10 * 12];

static void add(struct tb *b, const char *name, int rank, int64_t d0, int64_t d1)
{
    snprintf(b->names[b->n], sizeof b->names[0], "%s", name);
    b->shapes[b->n][0] = d0;
    b->shapes[b->n][1] = d1;
    b->e[b->n] = (fp_st_entry){b->names[b->n], FP_ST_BF16, rank, b->shapes[b->n], zeros};
    b->n++;
}

static void build(struct tb *b, int bias, int lm_head, const char *skip, const char *bad_shape)
{
    char n[96];
    b->n = 0;
    add(b, "model.embed_tokens.weight", 2, 10, 8);
    for (int i = 0; i < 2; i++) {
        const char *mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        const int64_t d0[] = {8, 4, 4, 8, 12, 12, 8}, d1[] = {8, 8, 8, 8, 8, 8, 12};
        for (int m = 0; m < 7; m++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", i, mods[m]);
            if (skip && !strcmp(n, skip))
                continue;
            add(b, n, 2, d0[m], bad_shape && !strcmp(n, bad_shape) ? d1[m] + 1 : d1[m]);
            if (bias && m < 3) {
                snprintf(n, sizeof n, "model.layers.%d.%s.bias", i, mods[m]);
                add(b, n, 1, d0[m], 0);
            }
        }
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", i);
        add(b, n, 1, 8, 0);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", i);
        add(b, n, 1, 8, 0);
    }
    add(b, "model.norm.weight", 1, 8, 0);
    if (lm_head)
        add(b, "lm_head.weight", 2, 10, 8);
}

static int check(const fp_model_config *c, struct tb *b)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/m.safetensors", fp_test_tmpdir("model_config"));
    CHECK_OK(fp_st_write(path, b->e, (size_t)b->n, NULL, 0));
    fp_st_file *f;
    int rc = fp_st_open(&f, path);
    if (rc)
        return rc;
    rc = fp_model_config_check_tensors(c, f);
    fp_st_close(f);
    return rc;
}

static void test_tensors(void)
{
    fp_model_config c;
    CHECK_OK(parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":12,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                       "\"vocab_size\":10}"));
    struct tb *b = calloc(1, sizeof *b);
    build(b, 0, 1, NULL, NULL);
    CHECK_OK(check(&c, b));
    build(b, 0, 0, NULL, NULL); /* untied needs lm_head */
    CHECK_ERR(check(&c, b), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "'lm_head.weight'") != NULL);
    c.tie_word_embeddings = 1; /* tied: absent is right, present is tolerated */
    CHECK_OK(check(&c, b));
    build(b, 0, 1, NULL, NULL);
    CHECK_OK(check(&c, b));
    build(b, 0, 1, "model.layers.1.mlp.up_proj.weight", NULL);
    CHECK_ERR(check(&c, b), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "lacks tensor 'model.layers.1.mlp.up_proj.weight'") != NULL);
    build(b, 0, 1, NULL, "model.layers.0.self_attn.k_proj.weight");
    CHECK_ERR(check(&c, b), FP_EFORMAT);
    CHECKF(strstr(fp_errmsg(), "'model.layers.0.self_attn.k_proj.weight' has shape [4, 9], the "
                               "config implies [4, 8]") != NULL, "%s", fp_errmsg());
    build(b, 1, 1, NULL, NULL); /* biases the config does not declare */
    CHECK_ERR(check(&c, b), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "model.layers.0.self_attn.q_proj.bias") != NULL);
    c.attention_bias = 1;
    CHECK_OK(check(&c, b));
    build(b, 0, 1, NULL, NULL);
    CHECK_ERR(check(&c, b), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "lacks tensor 'model.layers.0.self_attn.q_proj.bias'") != NULL);
    free(b);
}

int main(void)
{
    test_valid();
    test_rejected();
    test_writer();
    test_tensors();
    return fp_test_report("test_model_config");
}
