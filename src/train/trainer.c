/* The training loop (train.h): data windows from a token array, accumulation,
 * clipping, AdamW/SGD with a warmup + cosine schedule, checkpoint and exact
 * resume, and evaluation. */
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/ops_train.h"
#include "fedproxy/train.h"

#define TRY(x)                                                                                    \
    do {                                                                                          \
        int rc_ = (x);                                                                            \
        if (rc_)                                                                                  \
            return rc_;                                                                           \
    } while (0)

struct fp_trainer {
    fp_model *m;
    fp_ctx *ctx;
    fp_train_config c;
    const int32_t *tok;
    int64_t n, B, T, pos, step;
    int whole;
    uint64_t rng;
    fp_tensor *mom, *var, *ids, *tgt, *norm, *nwork;
    int32_t *hid, *htg;
    const fp_tensor *prox_anchor; /* FedProx (borrowed) */
    float prox_mu;
    /* fp_trainer_profile */
    fp_train_profile prof;
    fp_train_prof_entry *pe;
    uint32_t npe, cap_pe;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define PROF_MAX_ENTRIES 256

/* Runs s and books it in the profile: run time, dispatch counts and, on
 * profiling contexts, each dispatch's GPU time under its pipeline. */
static int run_profiled(fp_trainer *t, fp_stream *s)
{
    double t0 = now_s();
    int rc = fp_stream_run(s);
    t->prof.run_s += now_s() - t0;
    if (rc)
        return rc;
    fp_stream_stats ss;
    fp_stream_stats_get(s, &ss);
    t->prof.runs++;
    t->prof.dispatches += ss.dispatches;
    t->prof.barriers += ss.barriers;
    uint32_t n = 0;
    if (fp_stream_timings(s, NULL, 0, &n) != 0) {
        fp_errclear(); /* not a profiling context: counts only */
        return 0;
    }
    fp_dispatch_time *dt = n ? malloc(n * sizeof *dt) : NULL;
    if (n && !dt)
        return fp_seterr(FP_ENOMEM, "trainer profile: out of host memory");
    if (n && fp_stream_timings(s, dt, n, &n) != 0) {
        free(dt);
        return fp_adderr(FP_ESTATE, "trainer profile");
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t e = 0;
        while (e < t->npe && t->pe[e].pipeline != dt[i].pipeline && strcmp(t->pe[e].pipeline, dt[i].pipeline))
            e++;
        if (e == t->npe) {
            if (t->npe == PROF_MAX_ENTRIES)
                continue;
            if (t->npe == t->cap_pe) {
                uint32_t nc = t->cap_pe ? 2 * t->cap_pe : 32;
                fp_train_prof_entry *np = realloc(t->pe, nc * sizeof *np);
                if (!np) {
                    free(dt);
                    return fp_seterr(FP_ENOMEM, "trainer profile: out of host memory");
                }
                t->pe = np, t->cap_pe = nc;
            }
            t->pe[t->npe++] = (fp_train_prof_entry){dt[i].pipeline, 0, 0};
        }
        t->pe[e].gpu_us += dt[i].us;
        t->pe[e].dispatches++;
        t->prof.gpu_us += dt[i].us;
    }
    free(dt);
    return 0;
}

void fp_train_config_default(fp_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->optimizer = FP_OPT_ADAMW;
    c->lr = 1e-4f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->steps = 100;
    c->min_lr_ratio = -1.0f;
    c->batch = 1;
    c->accum = 1;
    c->clip = 1.0f;
}

float fp_train_lr_at(const fp_train_config *c, int64_t step)
{
    if (c->warmup > 0 && step < c->warmup)
        return c->lr * (float)(step + 1) / (float)c->warmup;
    if (c->min_lr_ratio < 0 || c->steps <= c->warmup)
        return c->lr;
    double prog = (double)(step - c->warmup) / (double)(c->steps - c->warmup);
    if (prog > 1)
        prog = 1;
    double minr = c->min_lr_ratio;
    return (float)(c->lr * (minr + (1.0 - minr) * 0.5 * (1.0 + cos(M_PI * prog))));
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void fp_trainer_free(fp_trainer *t)
{
    if (!t)
        return;
    fp_tensor_free(t->mom);
    fp_tensor_free(t->var);
    fp_tensor_free(t->ids);
    fp_tensor_free(t->tgt);
    fp_tensor_free(t->norm);
    fp_tensor_free(t->nwork);
    free(t->hid);
    free(t->htg);
    free(t->pe);
    free(t);
}

int fp_trainer_profile(const fp_trainer *t, fp_train_profile *totals, fp_train_prof_entry *out, uint32_t max,
                       uint32_t *count)
{
    if (!t || !totals || (max && !out) || !count)
        return fp_seterr(FP_EINVAL, "fp_trainer_profile: NULL argument");
    *totals = t->prof;
    totals->record_s = t->prof.wall_s - t->prof.run_s; /* everything in a step that is not a stream run */
    for (uint32_t i = 0; i < t->npe && i < max; i++)
        out[i] = t->pe[i];
    *count = t->npe;
    return 0;
}

void fp_trainer_profile_reset(fp_trainer *t)
{
    if (!t)
        return;
    memset(&t->prof, 0, sizeof t->prof);
    t->npe = 0;
}

int fp_trainer_create(fp_trainer **out, fp_model *m, const fp_train_config *c, const int32_t *tokens, int64_t n)
{
    if (!out || !m || !c || !tokens)
        return fp_seterr(FP_EINVAL, "trainer: NULL argument");
    *out = NULL;
    if (n < 2)
        return fp_seterr(FP_EINVAL, "trainer: %lld tokens; at least 2 are needed (one input, one target)", (long long)n);
    if (c->accum < 1 || c->batch < 1 || !(c->lr >= 0) || c->steps < 0)
        return fp_seterr(FP_EINVAL, "trainer: batch %lld, accum %d, lr %g, steps %lld: out of range",
                         (long long)c->batch, c->accum, (double)c->lr, (long long)c->steps);
    if (c->optimizer != FP_OPT_ADAMW && c->optimizer != FP_OPT_SGD)
        return fp_seterr(FP_EINVAL, "trainer: unknown optimizer %d", (int)c->optimizer);
    int64_t V = fp_model_cfg(m)->vocab;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return fp_seterr(FP_EINVAL, "trainer: token %lld is id %d, outside the vocabulary 0..%lld", (long long)i,
                             tokens[i], (long long)V - 1);
    fp_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return fp_seterr(FP_ENOMEM, "trainer: out of host memory");
    t->m = m;
    t->ctx = fp_model_ctx(m);
    t->c = *c;
    t->tok = tokens;
    t->n = n;
    t->rng = c->seed ^ 0x5eed5eedull;
    t->whole = c->seq <= 0 || c->seq >= n - 1;
    t->B = t->whole ? 1 : c->batch;
    t->T = t->whole ? n - 1 : c->seq;
    int rc = fp_model_plan(m, t->B, t->T, 1, c->optimizer == FP_OPT_ADAMW ? 2 : 0);
    int64_t N = t->B * t->T, two = 2;
    fp_tensor *g = fp_model_train_grads(m);
    if (!rc)
        rc = fp_tensor_new(&t->ids, t->ctx, FP_I32, 1, &N);
    if (!rc)
        rc = fp_tensor_new(&t->tgt, t->ctx, FP_I32, 1, &N);
    if (!rc)
        rc = fp_tensor_new(&t->norm, t->ctx, FP_F32, 1, &two);
    if (!rc) {
        const fp_tensor *gl[1] = {g};
        int64_t w = fp_grad_norm_work_size(t->ctx, gl, 1);
        rc = fp_tensor_new(&t->nwork, t->ctx, FP_F32, 1, &w);
    }
    if (!rc && c->optimizer == FP_OPT_ADAMW) {
        int64_t ne = fp_tensor_numel(g);
        rc = fp_tensor_new(&t->mom, t->ctx, FP_F32, 1, &ne);
        if (!rc)
            rc = fp_tensor_new(&t->var, t->ctx, FP_F32, 1, &ne);
        if (!rc)
            rc = fp_tensor_zero(t->mom);
        if (!rc)
            rc = fp_tensor_zero(t->var);
    }
    t->hid = malloc((size_t)N * sizeof(int32_t));
    t->htg = malloc((size_t)N * sizeof(int32_t));
    if (!rc && (!t->hid || !t->htg))
        rc = fp_seterr(FP_ENOMEM, "trainer: out of host memory");
    if (rc) {
        fp_trainer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static void fill_batch(fp_trainer *t)
{
    if (t->whole) {
        memcpy(t->hid, t->tok, (size_t)t->T * sizeof(int32_t));
        memcpy(t->htg, t->tok + 1, (size_t)t->T * sizeof(int32_t));
        return;
    }
    for (int64_t b = 0; b < t->B; b++) {
        if (t->pos + t->T + 1 > t->n) {
            int64_t span = t->n - t->T; /* starts 0..span-1 fit */
            int64_t r = span < t->T ? span : t->T;
            t->pos = (int64_t)(rng_next(&t->rng) % (uint64_t)(r > 0 ? r : 1));
        }
        memcpy(t->hid + b * t->T, t->tok + t->pos, (size_t)t->T * sizeof(int32_t));
        memcpy(t->htg + b * t->T, t->tok + t->pos + 1, (size_t)t->T * sizeof(int32_t));
        t->pos += t->T;
    }
}

int fp_trainer_step(fp_trainer *t, fp_train_stats *st)
{
    if (!t)
        return fp_seterr(FP_EINVAL, "trainer step: NULL trainer");
    double t0 = now_s();
    fp_model *m = t->m;
    int64_t N = t->B * t->T;
    TRY(fp_model_zero_grads(m));
    double loss_sum = 0;
    int64_t ntok = 0;
    for (int a = 0; a < t->c.accum; a++) {
        fill_batch(t);
        fp_model_lora_dropout_seek(m, (uint64_t)t->step * (uint64_t)t->c.accum + (uint64_t)a);
        TRY(fp_tensor_upload(t->ids, t->hid, (size_t)N * 4));
        TRY(fp_tensor_upload(t->tgt, t->htg, (size_t)N * 4));
        fp_stream *s = NULL;
        TRY(fp_stream_new(&s, t->ctx));
        int rc = fp_model_forward(m, s, t->ids, t->tgt);
        if (!rc)
            rc = fp_model_backward(m, s, 1.0f / (float)t->c.accum);
        if (!rc)
            rc = run_profiled(t, s);
        fp_stream_free(s);
        TRY(rc);
        float l;
        int64_t nv;
        TRY(fp_model_loss(m, &l, &nv));
        loss_sum += l;
        ntok += nv;
    }
    float lr = fp_train_lr_at(&t->c, t->step);
    fp_tensor *p = fp_model_train_params(m), *g = fp_model_train_grads(m);
    fp_stream *s = NULL;
    TRY(fp_stream_new(&s, t->ctx));
    const fp_tensor *gl[1] = {g};
    int rc = 0;
    if (t->prox_mu > 0) { /* g += mu * (p - anchor) */
        rc = fp_axpy(s, g, t->prox_mu, p);
        if (!rc)
            rc = fp_axpy(s, g, -t->prox_mu, t->prox_anchor);
    }
    if (!rc)
        rc = fp_grad_norm(s, t->norm, t->nwork, gl, 1, t->c.clip);
    if (!rc && t->c.optimizer == FP_OPT_ADAMW) {
        fp_adamw_params hp = {lr, t->c.beta1, t->c.beta2, t->c.eps, t->c.weight_decay, (uint32_t)(t->step + 1)};
        rc = fp_adamw_step(s, p, g, t->mom, t->var, &hp, t->norm);
    } else if (!rc) {
        rc = fp_sgd_step(s, p, g, lr, 0.0f, t->norm);
    }
    if (!rc)
        rc = run_profiled(t, s);
    fp_stream_free(s);
    TRY(rc);
    float nrm[2];
    TRY(fp_tensor_download(nrm, sizeof nrm, t->norm));
    t->step++;
    t->prof.steps++;
    t->prof.wall_s += now_s() - t0;
    if (st) {
        st->step = t->step;
        st->loss = (float)(loss_sum / t->c.accum);
        st->grad_norm = nrm[0];
        st->lr = lr;
        st->tokens = ntok;
        st->seconds = now_s() - t0;
    }
    return 0;
}

int fp_trainer_set_prox(fp_trainer *t, const fp_tensor *anchor, float mu)
{
    if (!t || !(mu >= 0) || (mu > 0 && !anchor))
        return fp_seterr(FP_EINVAL, "trainer prox: NULL trainer, negative mu or no anchor");
    if (mu > 0 && (anchor->dtype != FP_F32 || fp_tensor_numel(anchor) != fp_tensor_numel(fp_model_train_params(t->m))))
        return fp_seterr(FP_ESHAPE, "trainer prox: the anchor has %lld elements, the trained set %lld",
                         (long long)fp_tensor_numel(anchor), (long long)fp_tensor_numel(fp_model_train_params(t->m)));
    t->prox_anchor = mu > 0 ? anchor : NULL;
    t->prox_mu = mu;
    return 0;
}

int64_t fp_trainer_steps_done(const fp_trainer *t) { return t ? t->step : 0; }

void fp_trainer_shape(const fp_trainer *t, int64_t *batch, int64_t *seq)
{
    if (batch)
        *batch = t ? t->B : 0;
    if (seq)
        *seq = t ? t->T : 0;
}

/* ---- checkpoints ---------------------------------------------------------- */

#define CK_MAGIC "FPCKPT01"

static cJSON *identity_json(const fp_trainer *t)
{
    const fp_llama_config *c = fp_model_cfg(t->m);
    fp_lora_config lc;
    int lora = fp_model_lora_get(t->m, &lc);
    char buf[512];
    snprintf(buf, sizeof buf,
             "C%lld L%lld H%lld/%lld D%lld I%lld V%lld eps%.9g theta%.9g tied%d bias%d lora%d r%d a%.9g t%u opt%d "
             "B%lld T%lld accum%d ntok%lld wdt%d drop%.9g",
             (long long)c->hidden, (long long)c->layers, (long long)c->heads, (long long)c->kv_heads,
             (long long)c->head_dim, (long long)c->intermediate, (long long)c->vocab, (double)c->rms_eps,
             (double)c->rope_theta, c->tied, c->attn_bias, lora, lora ? lc.rank : 0, lora ? (double)lc.alpha : 0.0,
             lora ? lc.targets : 0u, (int)t->c.optimizer, (long long)t->B, (long long)t->T, t->c.accum,
             (long long)t->n, (int)c->base_dtype, (double)fp_model_lora_dropout(t->m));
    if (lora && lc.layers) { /* a layer subset (older checkpoints had none: their strings are unchanged) */
        size_t k = strlen(buf);
        snprintf(buf + k, sizeof buf - k, " layers%llx", (unsigned long long)lc.layers);
    }
    return cJSON_CreateString(buf);
}

int fp_trainer_save(const fp_trainer *t, const char *dir)
{
    if (!t || !dir)
        return fp_seterr(FP_EINVAL, "checkpoint save: NULL argument");
    TRY(fp_mkdirs(dir, 0755));
    fp_tensor *p = fp_model_train_params(t->m);
    uint64_t pb = p->nbytes, ob = t->mom ? t->mom->nbytes : 0;
    cJSON *j = cJSON_CreateObject();
    char hex[32];
    cJSON_AddStringToObject(j, "format", "fedproxy-checkpoint");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddItemToObject(j, "identity", identity_json(t));
    cJSON_AddNumberToObject(j, "step", (double)t->step);
    cJSON_AddNumberToObject(j, "data_pos", (double)t->pos);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)t->rng);
    cJSON_AddStringToObject(j, "rng", hex);
    cJSON_AddNumberToObject(j, "param_bytes", (double)pb);
    cJSON_AddNumberToObject(j, "opt_bytes", (double)ob);
    char *hdr = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!hdr)
        return fp_seterr(FP_ENOMEM, "checkpoint save: out of host memory");
    uint64_t hl = strlen(hdr);
    size_t total = 8 + 8 + hl + pb + 2 * ob;
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(hdr);
        return fp_seterr(FP_ENOMEM, "checkpoint save: out of host memory (%zu bytes)", total);
    }
    memcpy(buf, CK_MAGIC, 8);
    for (int i = 0; i < 8; i++)
        buf[8 + i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 16, hdr, hl);
    free(hdr);
    int rc = fp_tensor_download(buf + 16 + hl, pb, p);
    if (!rc && ob)
        rc = fp_tensor_download(buf + 16 + hl + pb, ob, t->mom);
    if (!rc && ob)
        rc = fp_tensor_download(buf + 16 + hl + pb + ob, ob, t->var);
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.fpck", dir);
    if (!rc)
        rc = fp_write_file_atomic(path, buf, total, 0644);
    free(buf);
    return rc;
}

int fp_trainer_load(fp_trainer *t, const char *dir)
{
    if (!t || !dir)
        return fp_seterr(FP_EINVAL, "checkpoint load: NULL argument");
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.fpck", dir);
    void *data = NULL;
    size_t len = 0;
    TRY(fp_read_file(&data, &len, path, (size_t)1 << 40));
    unsigned char *b = data;
    int rc = 0;
    cJSON *j = NULL;
    uint64_t hl = 0;
    if (len < 16 || memcmp(b, CK_MAGIC, 8)) {
        rc = fp_seterr(FP_EFORMAT, "checkpoint load: %s is not a fedproxy checkpoint", path);
        goto out;
    }
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)b[8 + i] << (8 * i);
    if (hl > len - 16) {
        rc = fp_seterr(FP_EFORMAT, "checkpoint load: %s is truncated (header of %llu bytes)", path,
                       (unsigned long long)hl);
        goto out;
    }
    j = cJSON_ParseWithLength((const char *)b + 16, hl);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "identity");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step"), *pos = cJSON_GetObjectItemCaseSensitive(j, "data_pos");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
    const cJSON *pbj = cJSON_GetObjectItemCaseSensitive(j, "param_bytes"), *obj = cJSON_GetObjectItemCaseSensitive(j, "opt_bytes");
    if (!cJSON_IsString(id) || !cJSON_IsNumber(step) || !cJSON_IsNumber(pos) || !cJSON_IsString(rng) ||
        !cJSON_IsNumber(pbj) || !cJSON_IsNumber(obj)) {
        rc = fp_seterr(FP_EFORMAT, "checkpoint load: %s has a malformed header", path);
        goto out;
    }
    cJSON *mine = identity_json(t);
    int same = !strcmp(mine->valuestring, id->valuestring);
    if (!same)
        rc = fp_seterr(FP_ESTATE, "checkpoint load: %s was written for '%s', this run is '%s'", path, id->valuestring,
                       mine->valuestring);
    cJSON_Delete(mine);
    if (rc)
        goto out;
    fp_tensor *p = fp_model_train_params(t->m);
    uint64_t pb = (uint64_t)pbj->valuedouble, ob = (uint64_t)obj->valuedouble;
    if (pb != p->nbytes || ob != (t->mom ? t->mom->nbytes : 0) || len != 16 + hl + pb + 2 * ob) {
        rc = fp_seterr(FP_EFORMAT, "checkpoint load: %s holds %llu + 2x%llu bytes of state in %zu bytes; this run "
                                   "needs %llu + 2x%llu", path, (unsigned long long)pb, (unsigned long long)ob, len,
                       (unsigned long long)p->nbytes, (unsigned long long)(t->mom ? t->mom->nbytes : 0));
        goto out;
    }
    rc = fp_tensor_upload(p, b + 16 + hl, pb);
    if (!rc && ob)
        rc = fp_tensor_upload(t->mom, b + 16 + hl + pb, ob);
    if (!rc && ob)
        rc = fp_tensor_upload(t->var, b + 16 + hl + pb + ob, ob);
    if (!rc) {
        t->step = (int64_t)step->valuedouble;
        t->pos = (int64_t)pos->valuedouble;
        t->rng = strtoull(rng->valuestring, NULL, 16);
    }
out:
    cJSON_Delete(j);
    free(data);
    return rc;
}

/* ---- evaluation and token files ----------------------------------------------- */

int fp_model_eval_tokens(fp_model *m, const int32_t *tokens, int64_t n, int64_t seq, fp_eval_result *out)
{
    if (!m || !tokens || !out)
        return fp_seterr(FP_EINVAL, "eval: NULL argument");
    if (n < 2)
        return fp_seterr(FP_EINVAL, "eval: %lld tokens; at least 2 are needed", (long long)n);
    int64_t V = fp_model_cfg(m)->vocab;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return fp_seterr(FP_EINVAL, "eval: token %lld is id %d, outside the vocabulary 0..%lld", (long long)i,
                             tokens[i], (long long)V - 1);
    int64_t T = (seq <= 0 || seq >= n - 1) ? n - 1 : seq;
    TRY(fp_model_plan(m, 1, T, 0, 0));
    int32_t *ids = malloc((size_t)T * 4), *tg = malloc((size_t)T * 4);
    float *logits = malloc((size_t)T * (size_t)V * 4), *losses = malloc((size_t)T * 4);
    int rc = (!ids || !tg || !logits || !losses) ? fp_seterr(FP_ENOMEM, "eval: out of host memory") : 0;
    double sum = 0;
    int64_t cnt = 0, correct = 0;
    for (int64_t start = 0; !rc && start + 1 < n; start += T) {
        for (int64_t i = 0; i < T; i++) {
            int64_t k = start + i;
            ids[i] = k < n ? tokens[k] : 0;
            tg[i] = k + 1 < n ? tokens[k + 1] : FP_IGNORE_INDEX;
        }
        float l;
        rc = fp_model_step_host(m, ids, tg, 1, T, 0, &l);
        if (!rc)
            rc = fp_tensor_download(logits, (size_t)T * V * 4, fp_model_logits(m));
        if (!rc)
            rc = fp_tensor_download(losses, (size_t)T * 4, fp_model_token_losses(m));
        for (int64_t i = 0; !rc && i < T; i++) {
            if (tg[i] == FP_IGNORE_INDEX)
                continue;
            const float *r = logits + i * V;
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (r[v] > r[best])
                    best = v;
            correct += best == tg[i];
            sum += losses[i];
            cnt++;
        }
    }
    free(ids);
    free(tg);
    free(logits);
    free(losses);
    if (rc)
        return rc;
    out->tokens = cnt;
    out->loss = cnt ? sum / cnt : 0;
    out->ppl = exp(out->loss);
    out->accuracy = cnt ? (double)correct / cnt : 0;
    return 0;
}

int fp_tokens_read(int32_t **out, int64_t *n, const char *path)
{
    if (!out || !n || !path)
        return fp_seterr(FP_EINVAL, "tokens: NULL argument");
    void *data = NULL;
    size_t len = 0;
    TRY(fp_read_file(&data, &len, path, (size_t)1 << 32));
    const char *s = data;
    int64_t cap = 1024, cnt = 0;
    int32_t *v = malloc((size_t)cap * 4);
    int rc = v ? 0 : fp_seterr(FP_ENOMEM, "tokens: out of host memory");
    while (!rc && *s) {
        while (isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX || (*end && !isspace((unsigned char)*end))) {
            rc = fp_seterr(FP_EFORMAT, "tokens: %s: token %lld is not a non-negative integer id ('%.20s')", path,
                           (long long)cnt, s);
            break;
        }
        if (cnt == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * 4);
            if (!nv) {
                rc = fp_seterr(FP_ENOMEM, "tokens: out of host memory");
                break;
            }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        s = end;
    }
    free(data);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}
