/* The engine trainer (fed.h): the federation's fp_fed_trainer over the Llama
 * engine. One per client: its own fp_ctx, the proxy model with a rank-r LoRA
 * (r = the client's assignment, at most the server's R), the tokenised data.
 * The global vector is in the server's rank-R layout; the client trains the
 * first r components of every A and B (alpha scaled by r / R so the product
 * means the same) and returns zeros beyond r. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/lora_vec.h"
#include "fedproxy/ops_basic.h"
#include "fedproxy/tokenizer.h"
#include "fedproxy/train.h"

typedef struct engine {
    char proxy_dir[FP_FED_PATH_MAX], data[FP_FED_PATH_MAX], eval[FP_FED_PATH_MAX];
    char device[128], profile[128];
    int has_device, has_profile, verbose;
    int max_steps, last_steps; /* the device's per-round budget (0: none); what the last round took */
    fp_ctx *ctx;
    fp_model *m;
    fp_lora_config lc_R; /* the layout the model was set up for */
    int rank;            /* r of the model's adapters */
    fp_lora_vec_layout lay_R, lay_r;
    int32_t *tok, *etok;
    int64_t ntok, netok;
    float *local;  /* rank-r packed vector */
} engine;

/* A file of decimal integers separated by whitespace is token ids. */
static int looks_like_ids(const char *p, size_t n)
{
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (isdigit(c))
            digits++;
        else if (!isspace(c))
            return 0;
    }
    return digits > 0;
}

int fp_engine_data_samples(uint64_t *samples, const char *path)
{
    void *d = NULL;
    size_t n = 0;
    int rc = fp_read_file(&d, &n, path, (size_t)1 << 32);
    if (rc)
        return fp_adderr(rc, "client data");
    if (!looks_like_ids(d, n)) {
        free(d);
        if (n < 2)
            return fp_seterr(FP_EFORMAT, "client data %s: %zu bytes of text; at least 2 are needed", path, n);
        *samples = n;
        return 0;
    }
    uint64_t cnt = 0;
    const char *p = d;
    for (size_t i = 0; i < n; i++)
        cnt += isdigit((unsigned char)p[i]) && (i + 1 == n || !isdigit((unsigned char)p[i + 1]));
    free(d);
    if (cnt < 2)
        return fp_seterr(FP_EFORMAT, "client data %s: %llu token ids; at least 2 are needed", path,
                         (unsigned long long)cnt);
    *samples = cnt;
    return 0;
}

static int load_tokens(int32_t **out, int64_t *n, const char *path, const fp_tokenizer *tk, int64_t vocab)
{
    void *d = NULL;
    size_t len = 0;
    int rc = fp_read_file(&d, &len, path, (size_t)1 << 32);
    if (rc)
        return fp_adderr(rc, "client data");
    if (looks_like_ids(d, len)) {
        free(d);
        rc = fp_tokens_read(out, n, path);
    } else if (!tk) {
        free(d);
        return fp_seterr(FP_ENOTFOUND, "client data %s is text, but the proxy has no tokenizer.json", path);
    } else {
        size_t k = 0;
        rc = fp_tokenizer_encode(out, &k, tk, d, len, 0);
        free(d);
        *n = (int64_t)k;
    }
    if (rc)
        return fp_adderr(rc, "client data %s", path);
    if (*n < 2)
        return fp_seterr(FP_EFORMAT, "client data %s: %lld tokens; at least 2 are needed", path, (long long)*n);
    for (int64_t i = 0; i < *n; i++)
        if ((*out)[i] < 0 || (*out)[i] >= vocab)
            return fp_seterr(FP_EFORMAT, "client data %s: token %lld is id %d, outside the proxy's vocabulary of %lld",
                             path, (long long)i, (*out)[i], (long long)vocab);
    return 0;
}

static void unload(engine *e)
{
    fp_model_free(e->m);
    e->m = NULL;
    fp_lora_vec_layout_free(&e->lay_R);
    fp_lora_vec_layout_free(&e->lay_r);
    free(e->local);
    e->local = NULL;
    e->rank = 0;
}

/* Loads the proxy (once) and sets up LoRA at rank r for layout lc (R). */
static int setup(engine *e, const fp_lora_config *lc, int r)
{
    int rc = 0;
    if (e->m && e->rank == r && !memcmp(&e->lc_R, lc, sizeof *lc))
        return 0;
    unload(e); /* LoRA is enabled once per model: a new rank means a fresh model */
    if (!e->ctx) {
        fp_ctx_opts o;
        memset(&o, 0, sizeof o);
        o.device = e->has_device ? e->device : NULL;
        o.profile = e->has_profile ? e->profile : NULL;
        o.validate = -1;
        rc = fp_ctx_create(&e->ctx, &o);
        if (rc)
            return fp_adderr(rc, "engine trainer: device");
    }
    rc = fp_model_load_dir(&e->m, e->ctx, e->proxy_dir);
    if (rc)
        return fp_adderr(rc, "engine trainer: proxy %s", e->proxy_dir);
    const fp_llama_config *cfg = fp_model_cfg(e->m);
    fp_lora_config lr = *lc;
    lr.rank = r;
    lr.alpha = lc->alpha * (float)r / (float)lc->rank; /* scale alpha / R for every rank */
    rc = fp_lora_vec_layout_build(&e->lay_R, cfg, lc);
    if (!rc)
        rc = fp_lora_vec_layout_build(&e->lay_r, cfg, &lr);
    if (!rc)
        rc = fp_model_lora_enable(e->m, &lr, 1);
    if (!rc && fp_lora_param_count(cfg, &lr) != (int64_t)e->lay_r.dim)
        rc = fp_seterr(FP_ESTATE, "engine trainer: the engine packs %lld LoRA values, the layout %zu",
                       (long long)fp_lora_param_count(cfg, &lr), e->lay_r.dim);
    if (!rc && !(e->local = malloc(e->lay_r.dim * sizeof(float))))
        rc = fp_seterr(FP_ENOMEM, "engine trainer: out of host memory");
    if (!rc && !e->tok) {
        fp_tokenizer *tk = NULL;
        char tp[FP_FED_PATH_MAX + 32];
        snprintf(tp, sizeof tp, "%s/tokenizer.json", e->proxy_dir);
        FILE *f = fopen(tp, "rb");
        if (f) {
            fclose(f);
            rc = fp_tokenizer_load(&tk, tp);
        }
        if (!rc)
            rc = load_tokens(&e->tok, &e->ntok, e->data, tk, cfg->vocab);
        if (!rc && e->eval[0])
            rc = load_tokens(&e->etok, &e->netok, e->eval, tk, cfg->vocab);
        fp_tokenizer_free(tk);
    }
    if (rc) {
        unload(e);
        return rc;
    }
    e->lc_R = *lc;
    e->rank = r;
    return 0;
}

/* R-layout <-> r-layout: the first r rows of each A, the first r columns of each B. */
static void to_r(float *dst, const float *src, const fp_lora_vec_layout *R, const fp_lora_vec_layout *r)
{
    size_t rr = (size_t)r->lc.rank, RR = (size_t)R->lc.rank;
    for (size_t k = 0; k < R->n; k++) {
        const fp_lora_slot *a = &R->slots[k], *b = &r->slots[k];
        memcpy(dst + b->a_off, src + a->a_off, rr * (size_t)a->in * sizeof(float));
        for (int64_t o = 0; o < a->out; o++)
            memcpy(dst + b->b_off + (size_t)o * rr, src + a->b_off + (size_t)o * RR, rr * sizeof(float));
    }
}

static void from_r(float *dst, const float *src, const fp_lora_vec_layout *R, const fp_lora_vec_layout *r)
{
    size_t rr = (size_t)r->lc.rank, RR = (size_t)R->lc.rank;
    memset(dst, 0, R->dim * sizeof(float));
    for (size_t k = 0; k < R->n; k++) {
        const fp_lora_slot *a = &R->slots[k], *b = &r->slots[k];
        memcpy(dst + a->a_off, src + b->a_off, rr * (size_t)a->in * sizeof(float));
        for (int64_t o = 0; o < a->out; o++)
            memcpy(dst + a->b_off + (size_t)o * RR, src + b->b_off + (size_t)o * rr, rr * sizeof(float));
    }
}

static int engine_train(void *ctx, float *update, uint64_t *samples, float *loss, const float *global, size_t dim,
                        const fp_fed_task *task)
{
    engine *e = ctx;
    const fp_lora_config *lc = &task->lora;
    if (lc->rank < 1)
        return fp_seterr(FP_EPROTO, "engine trainer: the server sent no LoRA layout (is it serving a proxy?)");
    int r = task->rank < 1 ? lc->rank : (task->rank < lc->rank ? task->rank : lc->rank);
    /* The device's budget may end the round before the server's step count. */
    int steps = e->max_steps > 0 && e->max_steps < task->steps ? e->max_steps : task->steps;
    int rc = setup(e, lc, r);
    if (rc)
        return rc;
    if (dim != e->lay_R.dim)
        return fp_seterr(FP_ESHAPE, "engine trainer: the server's vector has %zu elements, the proxy's rank-%d "
                                    "layout %zu", dim, lc->rank, e->lay_R.dim);
    fp_model *m = e->m;
    to_r(e->local, global, &e->lay_R, &e->lay_r);
    rc = fp_model_upload(m, 1, e->local, (int64_t)e->lay_r.dim);
    if (rc)
        return rc;
    /* The federated evaluation: the global adapter (at our rank) on held-out data. */
    const int32_t *et = e->etok ? e->etok : e->tok;
    int64_t en = e->etok ? e->netok : e->ntok;
    if (en > FP_ENGINE_EVAL_MAX)
        en = FP_ENGINE_EVAL_MAX;
    fp_eval_result ev;
    rc = fp_model_eval_tokens(m, et, en, task->seq > 0 ? task->seq : 0, &ev);
    if (rc)
        return fp_adderr(rc, "engine trainer: evaluation");
    *loss = (float)ev.loss;
    /* This round's data: continue where the previous round's steps ended (from
     * task->index alone, so a retry repeats it), wrapping around the file. */
    int64_t B = task->batch > 0 ? task->batch : 1, T = task->seq > 0 ? task->seq : 0;
    if (T > 0 && T < e->ntok - 1 && B > (e->ntok - 1 + T - 1) / T)
        B = (e->ntok - 1 + T - 1) / T; /* a step reads the data at most once: more rows would repeat it */
    int64_t per_round = (int64_t)steps * B * (T > 0 ? T : e->ntok);
    int64_t start = (int64_t)(((uint64_t)task->index * (uint64_t)per_round) % (uint64_t)e->ntok);
    int32_t *rot = malloc((size_t)e->ntok * sizeof(int32_t));
    if (!rot)
        return fp_seterr(FP_ENOMEM, "engine trainer: out of host memory");
    memcpy(rot, e->tok + start, (size_t)(e->ntok - start) * sizeof(int32_t));
    memcpy(rot + (e->ntok - start), e->tok, (size_t)start * sizeof(int32_t));
    fp_train_config tc;
    fp_train_config_default(&tc);
    tc.lr = task->lr;
    tc.steps = steps;
    tc.batch = B;
    tc.seq = T;
    tc.seed = 0x6665640000000000ull ^ (uint64_t)task->index; /* "fed" */
    fp_trainer *t = NULL;
    fp_tensor *anchor = NULL;
    rc = fp_trainer_create(&t, m, &tc, rot, e->ntok);
    if (!rc && task->prox_mu > 0) {
        fp_tensor *p = fp_model_train_params(m);
        int64_t ne = fp_tensor_numel(p);
        rc = fp_tensor_new(&anchor, e->ctx, FP_F32, 1, &ne);
        fp_stream *s = NULL;
        if (!rc)
            rc = fp_stream_new(&s, e->ctx);
        if (!rc)
            rc = fp_op_copy(s, anchor, p);
        if (!rc)
            rc = fp_stream_run(s);
        fp_stream_free(s);
        if (!rc)
            rc = fp_trainer_set_prox(t, anchor, task->prox_mu);
    }
    int64_t tokens = 0;
    float last = NAN;
    for (int k = 0; !rc && k < steps; k++) {
        fp_train_stats st;
        rc = fp_trainer_step(t, &st);
        tokens += st.tokens;
        last = st.loss;
    }
    fp_trainer_free(t);
    fp_tensor_free(anchor);
    free(rot);
    if (!rc)
        rc = fp_model_download(m, 1, e->local, (int64_t)e->lay_r.dim);
    if (rc)
        return fp_adderr(rc, "engine trainer: local training");
    from_r(update, e->local, &e->lay_R, &e->lay_r);
    /* update = local - global within rank r; zero beyond (the global's higher
     * components are not ours to move). */
    float *gt = malloc(dim * sizeof(float));
    if (!gt)
        return fp_seterr(FP_ENOMEM, "engine trainer: out of host memory");
    memcpy(gt, global, dim * sizeof(float));
    rc = fp_lora_vec_truncate(gt, dim, &e->lay_R, r);
    for (size_t i = 0; !rc && i < dim; i++)
        update[i] -= gt[i];
    free(gt);
    if (rc)
        return rc;
    *samples = (uint64_t)tokens;
    e->last_steps = steps;
    if (e->verbose)
        fed_log("engine trainer: round %u: rank %d/%d, global loss %.4f, %d steps, last step loss %.4f, %lld tokens\n",
                task->round, r, lc->rank, (double)*loss, steps, (double)last, (long long)tokens);
    return 0;
}

static int engine_last_steps(void *ctx)
{
    return ((const engine *)ctx)->last_steps;
}

static void engine_destroy(void *ctx)
{
    engine *e = ctx;
    if (!e)
        return;
    unload(e);
    free(e->tok);
    free(e->etok);
    fp_ctx_destroy(e->ctx);
    free(e);
}

int fp_engine_trainer(fp_fed_trainer *out, const fp_engine_trainer_opts *o)
{
    if (!out || !o || !o->proxy_dir || !o->proxy_dir[0] || !o->data || !o->data[0])
        return fp_seterr(FP_EINVAL, "engine trainer: a proxy directory and a data file are required");
    memset(out, 0, sizeof *out);
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return fp_seterr(FP_ENOMEM, "engine trainer: out of memory");
    int bad = snprintf(e->proxy_dir, sizeof e->proxy_dir, "%s", o->proxy_dir) >= (int)sizeof e->proxy_dir;
    bad |= snprintf(e->data, sizeof e->data, "%s", o->data) >= (int)sizeof e->data;
    bad |= snprintf(e->eval, sizeof e->eval, "%s", o->eval ? o->eval : "") >= (int)sizeof e->eval;
    bad |= snprintf(e->device, sizeof e->device, "%s", o->device ? o->device : "") >= (int)sizeof e->device;
    bad |= snprintf(e->profile, sizeof e->profile, "%s", o->profile ? o->profile : "") >= (int)sizeof e->profile;
    if (bad) {
        free(e);
        return fp_seterr(FP_EINVAL, "engine trainer: a path or device name is too long");
    }
    e->has_device = o->device != NULL;
    e->has_profile = o->profile != NULL;
    e->verbose = o->verbose;
    if (o->max_steps < 0 || o->max_steps > 1000000) {
        free(e);
        return fp_seterr(FP_EINVAL, "engine trainer: max_steps %d is not in 0..1000000", o->max_steps);
    }
    e->max_steps = o->max_steps;
    /* Fail early on data that cannot work (missing, empty). */
    uint64_t n = 0;
    int rc = fp_engine_data_samples(&n, o->data);
    if (!rc && o->eval && o->eval[0])
        rc = fp_engine_data_samples(&n, o->eval);
    if (rc) {
        free(e);
        return rc;
    }
    out->ctx = e;
    out->train = engine_train;
    out->destroy = engine_destroy;
    out->last_steps = engine_last_steps;
    return 0;
}
