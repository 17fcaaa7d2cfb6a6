/* The device transformer from and to Hugging Face files: config.json +
 * safetensors for the base, PEFT's adapter_config.json +
 * adapter_model.safetensors for LoRA adapters. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/model_config.h"
#include "fedproxy/safetensors.h"
#include "llama_internal.h"
#include "llama_peft.h"

static const char *const TMOD[LLM_NT] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

int fp_model_load_dir(fp_model **out, fp_ctx *ctx, const char *dir) { return fp_model_load_dir_as(out, ctx, dir, FP_F32); }

int fp_model_load_dir_as(fp_model **out, fp_ctx *ctx, const char *dir, fp_dtype base_dtype)
{
    if (!out || !ctx || !dir)
        return fp_seterr(FP_EINVAL, "model load: NULL argument");
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    fp_model_config mc;
    int rc = fp_model_config_load(&mc, path);
    if (rc)
        return rc;
    fp_llama_config c = {.hidden = mc.hidden_size, .layers = mc.num_hidden_layers, .heads = mc.num_attention_heads,
                         .kv_heads = mc.num_key_value_heads, .head_dim = mc.head_dim,
                         .intermediate = mc.intermediate_size, .vocab = mc.vocab_size,
                         .rms_eps = (float)mc.rms_norm_eps, .rope_theta = (float)mc.rope_theta,
                         .tied = mc.tie_word_embeddings, .attn_bias = mc.attention_bias,
                         .base_dtype = base_dtype};
    fp_st_file *st = NULL;
    if ((rc = fp_st_open_dir(&st, dir)))
        return rc;
    if ((rc = fp_model_config_check_tensors(&mc, st))) {
        fp_st_close(st);
        return rc;
    }
    fp_model *m = NULL;
    if ((rc = fp_model_create(&m, ctx, &c))) {
        fp_st_close(st);
        return rc;
    }
    float *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < m->np && !rc; i++) {
        const fp_param_info *pi = &m->p[i].info;
        const fp_st_tensor *t = fp_st_find(st, pi->name);
        if (!t) {
            rc = fp_seterr(FP_EFORMAT, "model load: %s has no tensor '%s'", dir, pi->name);
            break;
        }
        if (t->numel != (uint64_t)pi->numel) {
            rc = fp_seterr(FP_EFORMAT, "model load: %s: '%s' has %llu elements, the config implies %lld", dir,
                           pi->name, (unsigned long long)t->numel, (long long)pi->numel);
            break;
        }
        if ((size_t)pi->numel > cap) {
            free(buf);
            cap = (size_t)pi->numel;
            buf = malloc(cap * sizeof(float));
            if (!buf) {
                rc = fp_seterr(FP_ENOMEM, "model load: out of host memory");
                break;
            }
        }
        rc = fp_st_to_f32(buf, (size_t)pi->numel, t);
        if (!rc)
            rc = fp_model_upload_tensor(m, 0, i, buf, pi->numel);
    }
    free(buf);
    fp_st_close(st);
    if (rc) {
        fp_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Downloads every tensor of a set into one packed host buffer. */
static float *download_packed(const fp_model *m, int lora, int64_t *n)
{
    int64_t total = lora ? fp_lora_param_count(&m->cfg, &m->lc) : fp_llama_param_count(&m->cfg);
    float *buf = malloc((size_t)(total ? total : 1) * sizeof(float));
    if (!buf) {
        fp_seterr(FP_ENOMEM, "model save: out of host memory");
        return NULL;
    }
    if (fp_model_download(m, lora, buf, total)) {
        free(buf);
        return NULL;
    }
    *n = total;
    return buf;
}

int fp_model_save_dir(const fp_model *m, const char *dir)
{
    if (!m || !dir)
        return fp_seterr(FP_EINVAL, "model save: NULL argument");
    int rc = fp_mkdirs(dir, 0755);
    if (rc)
        return rc;
    const fp_llama_config *c = &m->cfg;
    fp_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.arch = c->attn_bias ? FP_ARCH_QWEN2 : FP_ARCH_LLAMA;
    mc.hidden_size = c->hidden;
    mc.num_hidden_layers = c->layers;
    mc.num_attention_heads = c->heads;
    mc.num_key_value_heads = c->kv_heads;
    mc.head_dim = c->head_dim;
    mc.intermediate_size = c->intermediate;
    mc.vocab_size = c->vocab;
    mc.max_position_embeddings = 4096;
    mc.rms_norm_eps = c->rms_eps;
    mc.rope_theta = c->rope_theta;
    mc.tie_word_embeddings = c->tied;
    mc.attention_bias = c->attn_bias;
    mc.bos_token_id = -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = fp_model_config_save(path, &mc)))
        return rc;
    int64_t n;
    float *buf = download_packed(m, 0, &n);
    if (!buf)
        return FP_ENOMEM;
    fp_st_entry *e = calloc((size_t)m->np, sizeof *e);
    int64_t(*shapes)[2] = calloc((size_t)m->np, sizeof *shapes);
    if (!e || !shapes) {
        free(buf);
        free(e);
        free(shapes);
        return fp_seterr(FP_ENOMEM, "model save: out of host memory");
    }
    for (int i = 0; i < m->np; i++) {
        const fp_param_info *pi = &m->p[i].info;
        shapes[i][0] = pi->rows;
        shapes[i][1] = pi->cols;
        e[i] = (fp_st_entry){pi->name, FP_ST_F32, pi->cols == 1 ? 1 : 2, shapes[i], buf + pi->offset};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[2] = {"format", "pt"};
    rc = fp_st_write(path, e, (size_t)m->np, meta, 1);
    free(buf);
    free(e);
    free(shapes);
    return rc;
}

/* Adapters go through peft.h (src/model/peft.c: PEFT's names, rank/alpha
 * patterns, validation) via the bridge in llama_peft.h. */
int fp_model_save_adapter(const fp_model *m, const char *dir)
{
    if (!m || !dir)
        return fp_seterr(FP_EINVAL, "adapter save: NULL argument");
    if (!m->lora_on)
        return fp_seterr(FP_ESTATE, "adapter save: the model has no LoRA adapters");
    int64_t n;
    float *buf = download_packed(m, 1, &n);
    if (!buf)
        return FP_ENOMEM;
    llm_peft_pair *pairs = calloc((size_t)m->nl / 2 + 1, sizeof *pairs);
    if (!pairs) {
        free(buf);
        return fp_seterr(FP_ENOMEM, "adapter save: out of host memory");
    }
    size_t np = 0;
    for (int64_t l = 0; l < m->cfg.layers; l++)
        for (int t = 0; t < LLM_NT; t++) {
            int li = m->lix[l][t];
            if (li < 0)
                continue;
            const fp_param_info *A = &m->lp[li].info, *B = &m->lp[li + 1].info;
            pairs[np++] = (llm_peft_pair){(int)l, t, m->lc.rank, (int)A->cols, (int)B->rows, m->lc.alpha,
                                          buf + A->offset, buf + B->offset};
        }
    int rc = llm_peft_save(dir, m->lc.rank, m->lc.alpha, m->drop_p, pairs, np);
    free(pairs);
    free(buf);
    return rc;
}

int fp_model_load_adapter(fp_model *m, const char *dir)
{
    if (!m || !dir)
        return fp_seterr(FP_EINVAL, "adapter load: NULL argument");
    int r = 0;
    float alpha = 0, dropout = 0;
    llm_peft_pair *pairs = NULL;
    size_t np = 0;
    int rc = llm_peft_load(dir, &r, &alpha, &dropout, &pairs, &np);
    if (rc)
        return rc;
    fp_lora_config lc = {0};
    const fp_llama_config *c = &m->cfg;
    int64_t C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->intermediate;
    const int64_t in_of[LLM_NT] = {C, C, C, qd, C, C, I}, out_of[LLM_NT] = {qd, kd, kd, C, I, I, C};
    if (!np)
        rc = fp_seterr(FP_EFORMAT, "adapter load: %s holds no LoRA pairs", dir);
    for (size_t i = 0; i < np && !rc; i++) {
        const llm_peft_pair *q = &pairs[i];
        if (i == 0) {
            lc.rank = q->rank;
            lc.alpha = q->alpha;
        }
        if (q->rank != lc.rank || q->alpha != lc.alpha)
            rc = fp_seterr(FP_EUNSUPPORTED, "adapter load: %s: layer %d %s has rank %d alpha %g but layer %d %s "
                                            "rank %d alpha %g; this engine uses one rank and alpha for all",
                           dir, q->layer, TMOD[q->module], q->rank, (double)q->alpha, pairs[0].layer,
                           TMOD[pairs[0].module], lc.rank, (double)lc.alpha);
        else if (q->layer < 0 || q->layer >= c->layers || q->module < 0 || q->module >= LLM_NT)
            rc = fp_seterr(FP_EFORMAT, "adapter load: %s has a pair for layer %d, the model has %lld layers", dir,
                           q->layer, (long long)c->layers);
        else if (q->in != in_of[q->module] || q->out != out_of[q->module])
            rc = fp_seterr(FP_EFORMAT, "adapter load: %s: layer %d %s adapts a [%d, %d] weight, the model's is "
                                       "[%lld, %lld]", dir, q->layer, TMOD[q->module], q->out, q->in,
                           (long long)out_of[q->module], (long long)in_of[q->module]);
        else {
            lc.targets |= 1u << q->module;
            if (q->layer < 64)
                lc.layers |= 1ull << q->layer;
        }
    }
    /* the layers the file adapts become the model's layer subset (0 = all of
     * them, also when the model is too deep for a mask) */
    if (!rc && (c->layers > 64 || lc.layers == (c->layers == 64 ? ~0ull : (1ull << c->layers) - 1)))
        lc.layers = 0;
    if (!rc && m->lora_on) {
        if (m->lc.rank != lc.rank || m->lc.targets != lc.targets)
            rc = fp_seterr(FP_ESHAPE, "adapter load: %s has rank %d targets 0x%x, the model's adapters rank %d "
                                      "targets 0x%x", dir, lc.rank, lc.targets, m->lc.rank, m->lc.targets);
        for (size_t i = 0; i < np && !rc; i++)
            if (m->lix[pairs[i].layer][pairs[i].module] < 0)
                rc = fp_seterr(FP_ESHAPE, "adapter load: %s adapts layer %d %s, which the model's adapters (layers "
                                          "mask 0x%llx) do not cover", dir, pairs[i].layer, TMOD[pairs[i].module],
                               (unsigned long long)m->lc.layers);
        if (!rc)
            m->lc.alpha = lc.alpha;
    } else if (!rc) {
        rc = fp_model_lora_enable(m, &lc, 0);
    }
    /* pairs the file lacks (PEFT's layers_to_transform) stay zero: no contribution */
    int64_t total = rc ? 0 : fp_lora_param_count(c, &m->lc);
    float *buf = rc ? NULL : calloc((size_t)total + 1, sizeof(float));
    if (!rc && !buf)
        rc = fp_seterr(FP_ENOMEM, "adapter load: out of host memory");
    for (size_t i = 0; i < np && !rc; i++) {
        int li = m->lix[pairs[i].layer][pairs[i].module];
        memcpy(buf + m->lp[li].info.offset, pairs[i].A, (size_t)m->lp[li].info.numel * sizeof(float));
        memcpy(buf + m->lp[li + 1].info.offset, pairs[i].B, (size_t)m->lp[li + 1].info.numel * sizeof(float));
    }
    if (!rc)
        rc = fp_model_upload(m, 1, buf, total);
    if (!rc && dropout >= 0 && dropout < 1) /* PEFT's lora_dropout: used when training goes on */
        m->drop_p = dropout;
    free(buf);
    llm_peft_free(pairs, np);
    return rc;
}
