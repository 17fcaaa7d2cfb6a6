/* PEFT LoRA adapters: adapter_config.json and adapter_model.safetensors with
 * peft's own names, so an adapter trained here loads with
 * PeftModel.from_pretrained and one trained with peft loads here. */
#include "fedproxy/peft.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/safetensors.h"

static const char *const module_names[FP_LORA_NMODULES] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

const char *fp_lora_module_name(int m)
{
    return m >= 0 && m < FP_LORA_NMODULES ? module_names[m] : NULL;
}

int fp_lora_module_parse(const char *name)
{
    for (int m = 0; name && m < FP_LORA_NMODULES; m++)
        if (!strcmp(name, module_names[m]))
            return m;
    return -1;
}

/* The block holding a module in a Llama-family decoder layer. */
static const char *block_of(int m) { return m <= FP_LORA_MOD_O ? "self_attn" : "mlp"; }

void fp_lora_adapter_init(fp_lora_adapter *a, int r, float lora_alpha, float lora_dropout,
                          const char *base_model)
{
    memset(a, 0, sizeof *a);
    a->r = r;
    a->lora_alpha = lora_alpha;
    a->lora_dropout = lora_dropout;
    snprintf(a->base_model, sizeof a->base_model, "%s", base_model ? base_model : "");
}

fp_lora_pair *fp_lora_adapter_find(const fp_lora_adapter *a, int layer, int module)
{
    for (size_t i = 0; a && i < a->n; i++)
        if (a->pairs[i].layer == layer && a->pairs[i].module == module)
            return &a->pairs[i];
    return NULL;
}

void fp_lora_adapter_free(fp_lora_adapter *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->pairs[i].A);
        free(a->pairs[i].B);
    }
    free(a->pairs);
    a->pairs = NULL;
    a->n = 0;
}

/* Appends a pair taking ownership of A and B (freed on failure). */
static int add_owned(fp_lora_adapter *a, const fp_lora_pair *p)
{
    fp_lora_pair *q = realloc(a->pairs, (a->n + 1) * sizeof *q);
    if (!q) {
        free(p->A);
        free(p->B);
        return fp_seterr(FP_ENOMEM, "out of memory for a LoRA pair");
    }
    a->pairs = q;
    a->pairs[a->n++] = *p;
    return 0;
}

int fp_lora_adapter_add(fp_lora_adapter *a, int layer, int module, int rank, int in, int out,
                        float alpha, const float *A, const float *B)
{
    if (!a || !A || !B)
        return fp_seterr(FP_EINVAL, "fp_lora_adapter_add: NULL argument");
    if (layer < 0 || !fp_lora_module_name(module) || rank <= 0 || in <= 0 || out <= 0)
        return fp_seterr(FP_EINVAL, "LoRA pair layer %d module %d: bad layer, module, rank %d or "
                                    "shape [%d, %d]", layer, module, rank, out, in);
    if (fp_lora_adapter_find(a, layer, module))
        return fp_seterr(FP_EINVAL, "LoRA pair for layer %d %s given twice", layer,
                         fp_lora_module_name(module));
    fp_lora_pair p = {layer, module, rank, in, out, alpha, NULL, NULL};
    size_t na = (size_t)rank * (size_t)in, nb = (size_t)out * (size_t)rank;
    p.A = malloc(na * sizeof(float));
    p.B = malloc(nb * sizeof(float));
    if (!p.A || !p.B) {
        free(p.A);
        free(p.B);
        return fp_seterr(FP_ENOMEM, "out of memory for LoRA pair layer %d %s", layer,
                         fp_lora_module_name(module));
    }
    memcpy(p.A, A, na * sizeof(float));
    memcpy(p.B, B, nb * sizeof(float));
    return add_owned(a, &p);
}

static void module_path(char *out, size_t cap, int layer, int module)
{
    snprintf(out, cap, "model.layers.%d.%s.%s", layer, block_of(module), module_names[module]);
}

static char *config_json(const fp_lora_adapter *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *ap = cJSON_AddObjectToObject(o, "alpha_pattern");
    cJSON_AddNullToObject(o, "auto_mapping");
    if (a->base_model[0])
        cJSON_AddStringToObject(o, "base_model_name_or_path", a->base_model);
    else
        cJSON_AddNullToObject(o, "base_model_name_or_path");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddFalseToObject(o, "fan_in_fan_out");
    cJSON_AddTrueToObject(o, "inference_mode");
    cJSON_AddTrueToObject(o, "init_lora_weights");
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON_AddNullToObject(o, "layers_to_transform");
    cJSON_AddNumberToObject(o, "lora_alpha", a->lora_alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", a->lora_dropout);
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", a->r);
    cJSON *rp = cJSON_AddObjectToObject(o, "rank_pattern");
    cJSON_AddNullToObject(o, "revision");
    cJSON *tm = cJSON_AddArrayToObject(o, "target_modules");
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddFalseToObject(o, "use_dora");
    cJSON_AddFalseToObject(o, "use_rslora");
    int used[FP_LORA_NMODULES] = {0};
    for (size_t i = 0; i < a->n; i++) {
        const fp_lora_pair *p = &a->pairs[i];
        used[p->module] = 1;
        char path[128];
        module_path(path, sizeof path, p->layer, p->module);
        if (p->rank != a->r)
            cJSON_AddNumberToObject(rp, path, p->rank);
        if (p->alpha != a->lora_alpha)
            cJSON_AddNumberToObject(ap, path, p->alpha);
    }
    for (int m = 0; m < FP_LORA_NMODULES; m++)
        if (used[m])
            cJSON_AddItemToArray(tm, cJSON_CreateString(module_names[m]));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

int fp_lora_adapter_save(const fp_lora_adapter *a, const char *dir)
{
    if (!a || !dir)
        return fp_seterr(FP_EINVAL, "fp_lora_adapter_save: NULL argument");
    if (a->r <= 0)
        return fp_seterr(FP_EINVAL, "%s: adapter rank r = %d must be positive", dir, a->r);
    for (size_t i = 0; i < a->n; i++) {
        const fp_lora_pair *p = &a->pairs[i];
        if (!fp_lora_module_name(p->module) || p->layer < 0 || p->rank <= 0 || p->in <= 0 ||
            p->out <= 0 || !p->A || !p->B)
            return fp_seterr(FP_EINVAL, "%s: LoRA pair %zu is malformed", dir, i);
    }
    int rc = fp_mkdirs(dir, 0755);
    if (rc)
        return rc;
    fp_st_entry *e = calloc(2 * a->n + 1, sizeof *e);
    char (*names)[160] = calloc(2 * a->n + 1, sizeof *names);
    int64_t (*shapes)[2] = calloc(2 * a->n + 1, sizeof *shapes);
    char path[4200];
    if (!e || !names || !shapes) {
        rc = fp_seterr(FP_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < a->n; i++) {
        const fp_lora_pair *p = &a->pairs[i];
        char mp[128];
        module_path(mp, sizeof mp, p->layer, p->module);
        snprintf(names[2 * i], sizeof names[0], "base_model.model.%s.lora_A.weight", mp);
        snprintf(names[2 * i + 1], sizeof names[0], "base_model.model.%s.lora_B.weight", mp);
        shapes[2 * i][0] = p->rank;
        shapes[2 * i][1] = p->in;
        shapes[2 * i + 1][0] = p->out;
        shapes[2 * i + 1][1] = p->rank;
        e[2 * i] = (fp_st_entry){names[2 * i], FP_ST_F32, 2, shapes[2 * i], p->A};
        e[2 * i + 1] = (fp_st_entry){names[2 * i + 1], FP_ST_F32, 2, shapes[2 * i + 1], p->B};
    }
    const char *meta[2] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if ((rc = fp_st_write(path, e, 2 * a->n, meta, 1)))
        goto out;
    char *js = config_json(a);
    if (!js) {
        rc = fp_seterr(FP_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = fp_write_file_atomic(path, js, strlen(js), 0644);
    free(js);
out:
    free(e);
    free(names);
    free(shapes);
    return rc;
}

/* ---- loading ---- */

static int cfg_num(const cJSON *o, const char *k, double def, double *out, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return fp_seterr(FP_EFORMAT, "%s: field '%s' is not a number", path, k);
    *out = v->valuedouble;
    return 0;
}

static int cfg_true(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* A pattern's value for (layer, module): the full module path or the bare
 * module name as key. 0 if neither is present. */
static int pattern(const cJSON *pat, int layer, int module, double *v)
{
    char mp[128];
    module_path(mp, sizeof mp, layer, module);
    const cJSON *e = cJSON_IsObject(pat) ? cJSON_GetObjectItemCaseSensitive(pat, mp) : NULL;
    if (!e && cJSON_IsObject(pat))
        e = cJSON_GetObjectItemCaseSensitive(pat, module_names[module]);
    if (!cJSON_IsNumber(e))
        return 0;
    *v = e->valuedouble;
    return 1;
}

static int parse_config(fp_lora_adapter *a, cJSON **pats, const char *text, size_t len,
                        const char *path)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return fp_seterr(FP_EFORMAT, "%s: not a JSON object", path);
    }
    int rc = 0;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(o, "peft_type");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(o, "task_type");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(o, "bias");
    const cJSON *mts = cJSON_GetObjectItemCaseSensitive(o, "modules_to_save");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(o, "base_model_name_or_path");
    double r, alpha, dropout;
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: peft_type '%s' is not supported (only LORA)", path,
                       cJSON_IsString(pt) ? pt->valuestring : "?");
    else if (tt && !cJSON_IsNull(tt) && !(cJSON_IsString(tt) && !strcmp(tt->valuestring, "CAUSAL_LM")))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: task_type '%s' is not supported (only CAUSAL_LM)", path,
                       cJSON_IsString(tt) ? tt->valuestring : "?");
    else if (bias && !cJSON_IsNull(bias) && !(cJSON_IsString(bias) && !strcmp(bias->valuestring, "none")))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: bias '%s' is not supported (only \"none\")", path,
                       cJSON_IsString(bias) ? bias->valuestring : "?");
    else if (cfg_true(o, "use_dora"))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: use_dora true (DoRA) is not supported", path);
    else if (cfg_true(o, "use_rslora"))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: use_rslora true is not supported", path);
    else if (cfg_true(o, "fan_in_fan_out"))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: fan_in_fan_out true is not supported", path);
    else if (mts && !cJSON_IsNull(mts) && !(cJSON_IsArray(mts) && cJSON_GetArraySize(mts) == 0))
        rc = fp_seterr(FP_EUNSUPPORTED, "%s: modules_to_save is not supported", path);
    else if (!(rc = cfg_num(o, "r", 8, &r, path)) && !(rc = cfg_num(o, "lora_alpha", 8, &alpha, path)) &&
             !(rc = cfg_num(o, "lora_dropout", 0, &dropout, path))) {
        if (r < 1 || r > 1e6 || floor(r) != r)
            rc = fp_seterr(FP_EFORMAT, "%s: field 'r' = %g is not a positive integer", path, r);
        else
            fp_lora_adapter_init(a, (int)r, (float)alpha, (float)dropout,
                                 cJSON_IsString(base) ? base->valuestring : "");
    }
    if (rc) {
        cJSON_Delete(o);
        return rc;
    }
    *pats = o;
    return 0;
}

/* "base_model.model.model.layers.{i}.{block}.{module}.lora_{A|B}.weight" */
static int parse_name(const char *name, int *layer, int *module, int *is_b)
{
    const char *pre = "base_model.model.model.layers.";
    size_t pl = strlen(pre);
    if (strncmp(name, pre, pl))
        return 0;
    const char *p = name + pl;
    char *end;
    if (*p < '0' || *p > '9')
        return 0;
    long l = strtol(p, &end, 10);
    if (*end != '.' || l > 1000000 || (p[0] == '0' && end - p > 1))
        return 0;
    p = end + 1;
    for (int m = 0; m < FP_LORA_NMODULES; m++) {
        char tail[96];
        for (int b = 0; b < 2; b++) {
            snprintf(tail, sizeof tail, "%s.%s.lora_%c.weight", block_of(m), module_names[m],
                     b ? 'B' : 'A');
            if (!strcmp(p, tail)) {
                *layer = (int)l;
                *module = m;
                *is_b = b;
                return 1;
            }
        }
    }
    return 0;
}

static int cmp_pair(const void *x, const void *y)
{
    const fp_lora_pair *a = x, *b = y;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return (a->module > b->module) - (a->module < b->module);
}

static int load_pairs(fp_lora_adapter *a, const fp_st_file *st, const cJSON *cfg, const char *path)
{
    size_t n = fp_st_count(st);
    /* A and B tensors of each (layer, module), by tensor index */
    struct slot {
        int layer, module;
        const fp_st_tensor *t[2];
    } *s = calloc(n + 1, sizeof *s);
    size_t ns = 0;
    int rc = 0;
    if (!s)
        return fp_seterr(FP_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n && !rc; i++) {
        const fp_st_tensor *t = fp_st_at(st, i);
        int layer, module, is_b;
        if (!parse_name(t->name, &layer, &module, &is_b)) {
            rc = fp_seterr(FP_EFORMAT, "%s: tensor '%s' is not a LoRA A/B weight of a Llama-family "
                                       "layer", path, t->name);
            break;
        }
        size_t k = 0;
        while (k < ns && !(s[k].layer == layer && s[k].module == module))
            k++;
        if (k == ns)
            s[ns++] = (struct slot){layer, module, {NULL, NULL}};
        s[k].t[is_b] = t;
    }
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cfg, "rank_pattern");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(cfg, "alpha_pattern");
    for (size_t k = 0; k < ns && !rc; k++) {
        const fp_st_tensor *A = s[k].t[0], *B = s[k].t[1];
        const char *mn = module_names[s[k].module];
        if (!A || !B) {
            rc = fp_seterr(FP_EFORMAT, "%s: layer %d %s has lora_%s but no lora_%s", path, s[k].layer,
                           mn, A ? "A" : "B", A ? "B" : "A");
            break;
        }
        if (A->rank != 2 || B->rank != 2 || A->shape[0] != B->shape[1] || A->shape[0] <= 0 ||
            A->shape[1] <= 0 || B->shape[0] <= 0 || A->shape[0] > (1 << 20) ||
            A->shape[1] > (1 << 30) || B->shape[0] > (1 << 30)) {
            rc = fp_seterr(FP_EFORMAT, "%s: layer %d %s: lora_A and lora_B shapes do not form "
                                       "[r, in] and [out, r]", path, s[k].layer, mn);
            break;
        }
        double want;
        int rank = (int)A->shape[0];
        if (pattern(rp, s[k].layer, s[k].module, &want) && want != rank) {
            rc = fp_seterr(FP_EFORMAT, "%s: layer %d %s has rank %d but rank_pattern says %g", path,
                           s[k].layer, mn, rank, want);
            break;
        }
        double alpha = a->lora_alpha;
        pattern(ap, s[k].layer, s[k].module, &alpha);
        fp_lora_pair p = {s[k].layer, s[k].module, rank, (int)A->shape[1], (int)B->shape[0],
                          (float)alpha, malloc(A->numel * sizeof(float)), malloc(B->numel * sizeof(float))};
        if (!p.A || !p.B) {
            free(p.A);
            free(p.B);
            rc = fp_seterr(FP_ENOMEM, "%s: out of memory", path);
            break;
        }
        if ((rc = fp_st_to_f32(p.A, A->numel, A)) || (rc = fp_st_to_f32(p.B, B->numel, B))) {
            free(p.A);
            free(p.B);
            rc = fp_adderr(rc, "%s", path);
            break;
        }
        rc = add_owned(a, &p);
    }
    free(s);
    if (!rc)
        qsort(a->pairs, a->n, sizeof *a->pairs, cmp_pair);
    return rc;
}

int fp_lora_adapter_load(fp_lora_adapter *a, const char *dir)
{
    if (!a || !dir)
        return fp_seterr(FP_EINVAL, "fp_lora_adapter_load: NULL argument");
    memset(a, 0, sizeof *a);
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    void *text;
    size_t len;
    int rc = fp_read_file(&text, &len, path, 16u << 20);
    if (rc)
        return rc;
    cJSON *cfg = NULL;
    rc = parse_config(a, &cfg, text, len, path);
    free(text);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    fp_st_file *st = NULL;
    if (!(rc = fp_st_open(&st, path)))
        rc = load_pairs(a, st, cfg, path);
    fp_st_close(st);
    cJSON_Delete(cfg);
    if (rc)
        fp_lora_adapter_free(a);
    return rc;
}
