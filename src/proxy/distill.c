/* Distillation (proxy.h): the proxy (student, full fine-tuning with AdamW)
 * learns from the LLM (teacher, forward only on an activations plan of the
 * same context) with LM + KD + hidden-state losses. The losses and their
 * gradients are computed on the host from downloaded logits and residuals
 * (the models this runs on are small); the backward and the update run on
 * the device through fp_model_backward_ex and the AdamW kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error_internal.h"
#include "fedproxy/ops_train.h"
#include "fedproxy/proxy.h"

typedef struct dstate {
    fp_ctx *ctx;
    int64_t B, T, N, C, V, P;
    fp_tensor *ids, *tgt, *dlog, **dh, *mom, *var, *norm, *nwork;
    int32_t *hid, *htg;
    float *sl, *tl, *hs, *ht, *gl, *gh;
} dstate;

static void dstate_free(dstate *d)
{
    fp_tensor_free(d->ids);
    fp_tensor_free(d->tgt);
    fp_tensor_free(d->dlog);
    for (int64_t i = 0; d->dh && i <= d->P; i++)
        fp_tensor_free(d->dh[i]);
    free(d->dh);
    fp_tensor_free(d->mom);
    fp_tensor_free(d->var);
    fp_tensor_free(d->norm);
    fp_tensor_free(d->nwork);
    free(d->hid);
    free(d->htg);
    free(d->sl);
    free(d->tl);
    free(d->hs);
    free(d->ht);
    free(d->gl);
    free(d->gh);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_forward(fp_model *m, fp_ctx *ctx, const fp_tensor *ids, const fp_tensor *tgt)
{
    fp_stream *s = NULL;
    int rc = fp_stream_new(&s, ctx);
    if (!rc)
        rc = fp_model_forward(m, s, ids, tgt);
    if (!rc)
        rc = fp_stream_run(s);
    fp_stream_free(s);
    return rc;
}

static int setup(dstate *d, fp_model *student, const fp_compress_opts *o)
{
    int64_t N = d->N, one = 1, two = 2;
    int rc = fp_tensor_new(&d->ids, d->ctx, FP_I32, 1, &N);
    if (!rc)
        rc = fp_tensor_new(&d->tgt, d->ctx, FP_I32, 1, &N);
    int64_t nv = N * d->V, nc = N * d->C;
    if (!rc && o->kd_weight > 0)
        rc = fp_tensor_new(&d->dlog, d->ctx, FP_F32, 1, &nv);
    d->dh = calloc((size_t)d->P + 1, sizeof *d->dh);
    if (!rc && !d->dh)
        rc = fp_seterr(FP_ENOMEM, "distill: out of host memory");
    for (int64_t i = 1; !rc && o->hidden_weight > 0 && i <= d->P; i++)
        rc = fp_tensor_new(&d->dh[i], d->ctx, FP_F32, 1, &nc);
    fp_tensor *p = fp_model_train_params(student);
    int64_t pn = p ? fp_tensor_numel(p) : 0;
    if (!rc)
        rc = fp_tensor_new(&d->mom, d->ctx, FP_F32, 1, &pn);
    if (!rc)
        rc = fp_tensor_new(&d->var, d->ctx, FP_F32, 1, &pn);
    if (!rc)
        rc = fp_tensor_zero(d->mom);
    if (!rc)
        rc = fp_tensor_zero(d->var);
    if (!rc)
        rc = fp_tensor_new(&d->norm, d->ctx, FP_F32, 1, &two);
    const fp_tensor *gl[1] = {fp_model_train_grads(student)};
    int64_t wn = rc ? one : fp_grad_norm_work_size(d->ctx, gl, 1);
    if (!rc)
        rc = fp_tensor_new(&d->nwork, d->ctx, FP_F32, 1, &wn);
    d->hid = malloc((size_t)N * sizeof *d->hid);
    d->htg = malloc((size_t)N * sizeof *d->htg);
    d->sl = malloc((size_t)nv * sizeof *d->sl);
    d->tl = malloc((size_t)nv * sizeof *d->tl);
    d->gl = malloc((size_t)nv * sizeof *d->gl);
    d->hs = malloc((size_t)nc * sizeof *d->hs);
    d->ht = malloc((size_t)(nc * d->P) * sizeof *d->ht);
    d->gh = malloc((size_t)nc * sizeof *d->gh);
    if (!rc && (!d->hid || !d->htg || !d->sl || !d->tl || !d->gl || !d->hs || !d->ht || !d->gh))
        rc = fp_seterr(FP_ENOMEM, "distill: out of host memory for batch %lld x %lld", (long long)d->B,
                       (long long)d->T);
    return rc;
}

/* One step: teacher forward, student forward, host losses, backward + AdamW. */
static int step(dstate *d, fp_model *student, fp_model *teacher, const fp_proxy_map *map, const fp_compress_opts *o,
                int64_t k, double lm_kd_h[3])
{
    int64_t N = d->N, nc = N * d->C;
    int rc = run_forward(teacher, d->ctx, d->ids, NULL);
    if (!rc && o->kd_weight > 0)
        rc = fp_tensor_download(d->tl, (size_t)(N * d->V) * sizeof *d->tl, fp_model_logits(teacher));
    for (int64_t i = 0; !rc && o->hidden_weight > 0 && i < d->P; i++)
        rc = fp_model_hidden(teacher, map->layers[i].span_last + 1, d->ht + i * nc, nc);
    if (!rc)
        rc = run_forward(student, d->ctx, d->ids, d->tgt);
    float lm = 0;
    if (!rc)
        rc = fp_model_loss(student, &lm, NULL);
    lm_kd_h[0] = lm;
    lm_kd_h[1] = lm_kd_h[2] = 0;
    if (!rc && o->kd_weight > 0) {
        rc = fp_tensor_download(d->sl, (size_t)(N * d->V) * sizeof *d->sl, fp_model_logits(student));
        if (!rc)
            lm_kd_h[1] = fp_proxy_kd_loss(d->gl, d->sl, d->tl, N, d->V, o->temperature, o->kd_weight);
        if (!rc)
            rc = fp_tensor_upload(d->dlog, d->gl, (size_t)(N * d->V) * sizeof *d->gl);
    }
    for (int64_t i = 0; !rc && o->hidden_weight > 0 && i < d->P; i++) {
        rc = fp_model_hidden(student, i + 1, d->hs, nc);
        if (!rc)
            lm_kd_h[2] += fp_proxy_hidden_loss(d->gh, d->hs, d->ht + i * nc, nc,
                                               o->hidden_weight / (float)d->P) / (double)d->P;
        if (!rc)
            rc = fp_tensor_upload(d->dh[i + 1], d->gh, (size_t)nc * sizeof *d->gh);
    }
    if (!rc && !(isfinite(lm_kd_h[0]) && isfinite(lm_kd_h[1]) && isfinite(lm_kd_h[2])))
        rc = fp_seterr(FP_ESTATE, "distill: the loss became non-finite at step %lld (lm %g, kd %g, hidden %g); "
                                  "lower --lr", (long long)k + 1, lm_kd_h[0], lm_kd_h[1], lm_kd_h[2]);
    if (!rc)
        rc = fp_model_zero_grads(student);
    fp_stream *s = NULL;
    if (!rc)
        rc = fp_stream_new(&s, d->ctx);
    if (!rc)
        rc = fp_model_backward_ex(student, s, 1.0f, d->dlog, o->hidden_weight > 0 ? (const fp_tensor *const *)d->dh
                                                                                    : NULL);
    fp_tensor *g = fp_model_train_grads(student), *p = fp_model_train_params(student);
    const fp_tensor *gs[1] = {g};
    if (!rc)
        rc = fp_grad_norm(s, d->norm, d->nwork, gs, 1, 1.0f);
    fp_adamw_params hp = {o->lr, 0.9f, 0.999f, 1e-8f, 0.0f, (uint32_t)(k + 1)};
    if (!rc)
        rc = fp_adamw_step(s, p, g, d->mom, d->var, &hp, d->norm);
    if (!rc)
        rc = fp_stream_run(s);
    fp_stream_free(s);
    return rc;
}

int fp_proxy_distill(fp_proxy_distill_info *info, fp_model *student, fp_model *teacher, const fp_proxy_map *map,
                     const int32_t *tokens, int64_t n, const fp_compress_opts *o)
{
    if (!info || !student || !teacher || !map || !tokens || !o)
        return fp_seterr(FP_EINVAL, "distill: NULL argument");
    const fp_llama_config *sc = fp_model_cfg(student), *tc = fp_model_cfg(teacher);
    if (sc->hidden != tc->hidden || sc->vocab != tc->vocab)
        return fp_seterr(FP_EINVAL, "distill: the proxy (hidden %lld, vocab %lld) and the LLM (hidden %lld, vocab "
                                    "%lld) differ", (long long)sc->hidden, (long long)sc->vocab,
                         (long long)tc->hidden, (long long)tc->vocab);
    if (map->proxy_layers != sc->layers || map->llm_layers != tc->layers)
        return fp_seterr(FP_EINVAL, "distill: the map (%d -> %d layers) does not fit the models (%lld -> %lld)",
                         map->llm_layers, map->proxy_layers, (long long)tc->layers, (long long)sc->layers);
    if (o->distill_steps < 0 || o->batch < 1 || o->seq < 1 || !(o->lr > 0) || !(o->temperature > 0) ||
        !(o->kd_weight >= 0) || !(o->hidden_weight >= 0))
        return fp_seterr(FP_EINVAL, "distill: bad options (steps %d, batch %lld, seq %lld, lr %g, temperature %g, "
                                    "kd weight %g, hidden weight %g)", o->distill_steps, (long long)o->batch,
                         (long long)o->seq, (double)o->lr, (double)o->temperature, (double)o->kd_weight,
                         (double)o->hidden_weight);
    if (n < o->seq + 1)
        return fp_seterr(FP_EINVAL, "distill: %lld tokens of distillation text, fewer than one window of %lld + 1",
                         (long long)n, (long long)o->seq);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= sc->vocab)
            return fp_seterr(FP_EINVAL, "distill: token %lld is id %d, outside the vocabulary of %lld", (long long)i,
                             tokens[i], (long long)sc->vocab);
    memset(info, 0, sizeof *info);
    info->kd_weight = o->kd_weight;
    info->temperature = o->temperature;
    info->hidden_weight = o->hidden_weight;
    if (o->distill_steps == 0)
        return 0;
    dstate d = {.ctx = fp_model_ctx(student), .B = o->batch, .T = o->seq, .N = o->batch * o->seq,
                .C = sc->hidden, .V = sc->vocab, .P = sc->layers};
    int rc = fp_model_plan(student, d.B, d.T, FP_PLAN_TRAINING, 2);
    if (!rc)
        rc = fp_model_plan(teacher, d.B, d.T, FP_PLAN_ACTIVATIONS, 0);
    if (!rc)
        rc = setup(&d, student, o);
    uint64_t rng = o->seed ^ 0xd157111ull;
    double t0 = now_s(), last_print = 0;
    for (int k = 0; !rc && k < o->distill_steps; k++) {
        for (int64_t b = 0; b < d.B; b++) {
            int64_t start = (int64_t)(rng_next(&rng) % (uint64_t)(n - d.T));
            memcpy(d.hid + b * d.T, tokens + start, (size_t)d.T * sizeof *d.hid);
            memcpy(d.htg + b * d.T, tokens + start + 1, (size_t)d.T * sizeof *d.htg);
        }
        rc = fp_tensor_upload(d.ids, d.hid, (size_t)d.N * sizeof *d.hid);
        if (!rc)
            rc = fp_tensor_upload(d.tgt, d.htg, (size_t)d.N * sizeof *d.htg);
        double parts[3] = {0, 0, 0};
        if (!rc)
            rc = step(&d, student, teacher, map, o, k, parts);
        if (rc)
            break;
        double total = parts[0] + o->kd_weight * parts[1] + o->hidden_weight * parts[2];
        info->steps = k + 1;
        info->final_loss = total;
        double el = now_s() - t0, tps = (double)d.N * (k + 1) / (el > 0 ? el : 1e-9);
        double eta = el / (k + 1) * (o->distill_steps - k - 1);
        if (!o->quiet && (el - last_print >= 1.0 || k == 0 || k + 1 == o->distill_steps)) {
            last_print = el;
            if (o->json)
                fprintf(stderr, "{\"stage\":\"distill\",\"step\":%d,\"steps\":%d,\"loss\":%.6g,\"lm\":%.6g,"
                                "\"kd\":%.6g,\"hidden\":%.6g,\"tokens_per_s\":%.1f,\"eta_s\":%.1f}\n",
                        k + 1, o->distill_steps, total, parts[0], parts[1], parts[2], tps, eta);
            else
                fprintf(stderr, "distill step %d/%d  loss %.4f (lm %.4f, kd %.4f, hidden %.4f)  %.0f tok/s  ETA %.0fs\n",
                        k + 1, o->distill_steps, total, parts[0], parts[1], parts[2], tps, eta);
        }
    }
    dstate_free(&d);
    return rc;
}
