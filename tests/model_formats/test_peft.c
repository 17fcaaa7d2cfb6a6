/* PEFT adapters: names and config fields exactly as peft writes them, save/load
 * round trip with mixed ranks and alphas, BF16 input, and refusals. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/peft.h"
#include "fedproxy/safetensors.h"
#include "fp_test.h"

static void fill(float *x, size_t n, float base)
{
    for (size_t i = 0; i < n; i++)
        x[i] = base + (float)i * 0.25f;
}

static const fp_st_tensor *expect_tensor(const fp_st_file *f, const char *name, int64_t d0, int64_t d1)
{
    const fp_st_tensor *t = fp_st_find(f, name);
    CHECKF(t != NULL, "missing %s", name);
    if (t)
        CHECKF(t->dtype == FP_ST_F32 && t->rank == 2 && t->shape[0] == d0 && t->shape[1] == d1,
               "%s shape", name);
    return t;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK_OK(fp_write_file_atomic(p, text, strlen(text), 0644));
}

static void test_round_trip(void)
{
    const char *dir = fp_test_tmpdir("peft");
    fp_lora_adapter a;
    fp_lora_adapter_init(&a, 4, 8.0f, 0.05f, "HuggingFaceTB/SmolLM-135M");
    float qa[4 * 8], qb[8 * 4], va[4 * 8], vb[4 * 4], da[2 * 16], db[8 * 2];
    fill(qa, 32, 1);
    fill(qb, 32, -1);
    fill(va, 32, 2);
    fill(vb, 16, -2);
    fill(da, 32, 3);
    fill(db, 16, -3);
    CHECK_OK(fp_lora_adapter_add(&a, 1, FP_LORA_MOD_DOWN, 2, 16, 8, 4.0f, da, db));
    CHECK_OK(fp_lora_adapter_add(&a, 0, FP_LORA_MOD_Q, 4, 8, 8, 8.0f, qa, qb));
    CHECK_OK(fp_lora_adapter_add(&a, 0, FP_LORA_MOD_V, 4, 8, 4, 8.0f, va, vb));
    CHECK_ERR(fp_lora_adapter_add(&a, 0, FP_LORA_MOD_V, 4, 8, 4, 8.0f, va, vb), FP_EINVAL);
    CHECK_ERR(fp_lora_adapter_add(&a, 0, 9, 4, 8, 4, 8.0f, va, vb), FP_EINVAL);
    CHECK_OK(fp_lora_adapter_save(&a, dir));

    /* The safetensors file, read directly: peft's names and shapes. */
    char p[4200];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    fp_st_file *f;
    CHECK_OK(fp_st_open(&f, p));
    if (f) {
        CHECK(fp_st_count(f) == 6);
        const fp_st_tensor *t =
            expect_tensor(f, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 4, 8);
        CHECK(t && memcmp(t->data, qa, sizeof qa) == 0);
        t = expect_tensor(f, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 8, 4);
        CHECK(t && memcmp(t->data, qb, sizeof qb) == 0);
        expect_tensor(f, "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", 4, 8);
        expect_tensor(f, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", 4, 4);
        t = expect_tensor(f, "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", 2, 16);
        CHECK(t && memcmp(t->data, da, sizeof da) == 0);
        expect_tensor(f, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", 8, 2);
        CHECK(fp_st_metadata(f, "format") && !strcmp(fp_st_metadata(f, "format"), "pt"));
        fp_st_close(f);
    }

    /* adapter_config.json fields */
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    void *txt;
    size_t len;
    CHECK_OK(fp_read_file(&txt, &len, p, 1 << 20));
    cJSON *c = cJSON_Parse(txt);
    free(txt);
    CHECK(c != NULL);
#define S(k) cJSON_GetObjectItemCaseSensitive(c, k)
    CHECK(!strcmp(S("peft_type")->valuestring, "LORA") && !strcmp(S("task_type")->valuestring, "CAUSAL_LM"));
    CHECK(S("r")->valueint == 4 && S("lora_alpha")->valuedouble == 8.0);
    CHECK(S("lora_dropout")->valuedouble > 0.0499 && S("lora_dropout")->valuedouble < 0.0501);
    CHECK(!strcmp(S("bias")->valuestring, "none"));
    CHECK(!strcmp(S("base_model_name_or_path")->valuestring, "HuggingFaceTB/SmolLM-135M"));
    CHECK(cJSON_IsFalse(S("fan_in_fan_out")) && cJSON_IsTrue(S("inference_mode")));
    CHECK(cJSON_IsNull(S("modules_to_save")));
    const cJSON *tm = S("target_modules");
    CHECK(cJSON_GetArraySize(tm) == 3 && !strcmp(cJSON_GetArrayItem(tm, 0)->valuestring, "q_proj") &&
          !strcmp(cJSON_GetArrayItem(tm, 1)->valuestring, "v_proj") &&
          !strcmp(cJSON_GetArrayItem(tm, 2)->valuestring, "down_proj"));
    const cJSON *rp = S("rank_pattern"), *ap = S("alpha_pattern");
    CHECK(cJSON_IsObject(rp) && cJSON_GetArraySize(rp) == 1 &&
          cJSON_GetObjectItemCaseSensitive(rp, "model.layers.1.mlp.down_proj")->valueint == 2);
    CHECK(cJSON_IsObject(ap) && cJSON_GetArraySize(ap) == 1 &&
          cJSON_GetObjectItemCaseSensitive(ap, "model.layers.1.mlp.down_proj")->valuedouble == 4.0);
#undef S
    cJSON_Delete(c);

    /* Load back: sorted by layer, then module. */
    fp_lora_adapter b;
    CHECK_OK(fp_lora_adapter_load(&b, dir));
    CHECK(b.n == 3 && b.r == 4 && b.lora_alpha == 8.0f && !strcmp(b.base_model, "HuggingFaceTB/SmolLM-135M"));
    if (b.n == 3) {
        CHECK(b.pairs[0].layer == 0 && b.pairs[0].module == FP_LORA_MOD_Q && b.pairs[0].rank == 4);
        CHECK(b.pairs[1].layer == 0 && b.pairs[1].module == FP_LORA_MOD_V && b.pairs[1].out == 4);
        CHECK(b.pairs[2].layer == 1 && b.pairs[2].module == FP_LORA_MOD_DOWN && b.pairs[2].rank == 2);
        CHECK(b.pairs[2].in == 16 && b.pairs[2].out == 8 && b.pairs[2].alpha == 4.0f);
        CHECK(memcmp(b.pairs[0].A, qa, sizeof qa) == 0 && memcmp(b.pairs[0].B, qb, sizeof qb) == 0);
        CHECK(memcmp(b.pairs[2].A, da, sizeof da) == 0 && memcmp(b.pairs[2].B, db, sizeof db) == 0);
        CHECK(fp_lora_adapter_find(&b, 1, FP_LORA_MOD_DOWN) == &b.pairs[2]);
        CHECK(fp_lora_adapter_find(&b, 1, FP_LORA_MOD_Q) == NULL);
    }
    fp_lora_adapter_free(&b);
    fp_lora_adapter_free(&a);
}

/* An adapter as peft might write it (BF16, extra config fields), built here. */
static void test_foreign(void)
{
    const char *dir = fp_test_tmpdir("peft_foreign");
    write_text(dir, "adapter_config.json",
               "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":2,\"lora_alpha\":16,"
               "\"lora_dropout\":0.0,\"bias\":\"none\",\"target_modules\":[\"o_proj\"],"
               "\"use_dora\":false,\"use_rslora\":false,\"rank_pattern\":{},\"alpha_pattern\":{},"
               "\"fan_in_fan_out\":false,\"modules_to_save\":null,\"revision\":null,"
               "\"base_model_name_or_path\":null,\"megatron_config\":null}");
    uint16_t A[2 * 3] = {0x3f80, 0x4000, 0x4040, 0xbf80, 0, 0x3f00}; /* 1 2 3 -1 0 0.5 */
    uint16_t B[3 * 2] = {0x4080, 0, 0, 0, 0, 0xc080};                /* 4 0 0 0 0 -4 */
    int64_t sa[2] = {2, 3}, sb[2] = {3, 2};
    fp_st_entry e[2] = {
        {"base_model.model.model.layers.7.self_attn.o_proj.lora_A.weight", FP_ST_BF16, 2, sa, A},
        {"base_model.model.model.layers.7.self_attn.o_proj.lora_B.weight", FP_ST_BF16, 2, sb, B},
    };
    char p[4200];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    CHECK_OK(fp_st_write(p, e, 2, NULL, 0));
    fp_lora_adapter a;
    CHECK_OK(fp_lora_adapter_load(&a, dir));
    CHECK(a.n == 1 && a.r == 2 && a.lora_alpha == 16.0f && a.base_model[0] == '\0');
    if (a.n == 1) {
        CHECK(a.pairs[0].layer == 7 && a.pairs[0].module == FP_LORA_MOD_O && a.pairs[0].in == 3 &&
              a.pairs[0].out == 3 && a.pairs[0].alpha == 16.0f);
        CHECK(a.pairs[0].A[2] == 3.0f && a.pairs[0].A[3] == -1.0f && a.pairs[0].A[5] == 0.5f);
        CHECK(a.pairs[0].B[0] == 4.0f && a.pairs[0].B[5] == -4.0f);
    }
    fp_lora_adapter_free(&a);

    /* refusals, each naming the field or tensor */
    write_text(dir, "adapter_config.json", "{\"peft_type\":\"LORA\",\"r\":2,\"use_dora\":true}");
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EUNSUPPORTED);
    CHECK(strstr(fp_errmsg(), "use_dora") != NULL);
    write_text(dir, "adapter_config.json", "{\"peft_type\":\"IA3\"}");
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EUNSUPPORTED);
    CHECK(strstr(fp_errmsg(), "IA3") != NULL);
    write_text(dir, "adapter_config.json", "{\"peft_type\":\"LORA\",\"r\":2,\"bias\":\"all\"}");
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EUNSUPPORTED);
    CHECK(strstr(fp_errmsg(), "bias 'all'") != NULL);
    write_text(dir, "adapter_config.json",
               "{\"peft_type\":\"LORA\",\"r\":2,\"modules_to_save\":[\"lm_head\"]}");
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EUNSUPPORTED);
    CHECK(strstr(fp_errmsg(), "modules_to_save") != NULL);
    write_text(dir, "adapter_config.json",
               "{\"peft_type\":\"LORA\",\"r\":4,\"rank_pattern\":{\"model.layers.7.self_attn.o_proj\":4}}");
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "rank_pattern") != NULL);

    write_text(dir, "adapter_config.json", "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4}");
    CHECK_OK(fp_st_write(p, e, 1, NULL, 0)); /* A without B */
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "layer 7 o_proj has lora_A but no lora_B") != NULL);
    e[1].name = "base_model.model.model.layers.7.mlp.o_proj.lora_B.weight"; /* wrong block */
    CHECK_OK(fp_st_write(p, e, 2, NULL, 0));
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "mlp.o_proj.lora_B") != NULL);
    e[1].name = "base_model.model.model.layers.7.self_attn.o_proj.lora_B.weight";
    e[1].shape = sa; /* [2, 3]: B's second dim is not A's rank */
    CHECK_OK(fp_st_write(p, e, 2, NULL, 0));
    CHECK_ERR(fp_lora_adapter_load(&a, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "layer 7 o_proj") != NULL);
}

int main(void)
{
    CHECK(!strcmp(fp_lora_module_name(FP_LORA_MOD_GATE), "gate_proj") && fp_lora_module_name(7) == NULL);
    CHECK(fp_lora_module_parse("up_proj") == FP_LORA_MOD_UP && fp_lora_module_parse("lm_head") == -1);
    test_round_trip();
    test_foreign();
    return fp_test_report("test_peft");
}
