/* The stand-in trainer: pulls the global vector toward the client's private
 * target (see fed.h). Used by tests, `fp sim` and `fp join` until the engine's
 * LoRA trainer is wired in through the same fp_fed_trainer interface. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/json_check.h"

int fp_standin_target_gen(float *out, size_t dim, uint64_t target_seed, float target_scale)
{
    if (!out && dim)
        return fp_seterr(FP_EINVAL, "standin target: no output");
    fed_rng r;
    fed_rng_seed(&r, target_seed, 0x7461726765740000ull); /* "target" */
    uint64_t cur = 0;
    for (size_t i = 0; i < dim; i++) {
        /* 4 values per RNG draw: 16-bit uniforms in [-1, 1). */
        if (i % 4 == 0)
            cur = fed_rng_u64(&r);
        uint16_t u = (uint16_t)(cur >> (16 * (i % 4)));
        out[i] = target_scale * ((float)u / 32768.0f - 1.0f);
    }
    return 0;
}

int fp_standin_data_parse(fp_standin_data *out, const char *json, size_t len, const char *what)
{
    static const fp_json_field f[] = {
        {"samples", FP_JSON_UINT, 1},      {"target", FP_JSON_ARRAY, 0}, {"dim", FP_JSON_UINT, 0},
        {"target_seed", FP_JSON_UINT, 0},  {"target_scale", FP_JSON_NUMBER, 0},
        {"noise", FP_JSON_NUMBER, 0},      {"seed", FP_JSON_UINT, 0},
        {"max_steps", FP_JSON_UINT, 0},
    };
    memset(out, 0, sizeof *out);
    cJSON *o = NULL;
    int rc = fp_json_parse(&o, json, len, f, sizeof f / sizeof f[0], what);
    if (rc)
        return rc;
    out->samples = (uint64_t)fed_jnum(o, "samples", 0);
    out->noise = (float)fed_jnum(o, "noise", 0);
    out->seed = (uint64_t)fed_jnum(o, "seed", 1);
    double ms = fed_jnum(o, "max_steps", 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "target");
    rc = FP_EFORMAT;
    if (out->samples == 0) {
        fp_seterr(rc, "%s: \"samples\" must be at least 1", what);
        goto fail;
    }
    if (ms > 1000000) {
        fp_seterr(rc, "%s: \"max_steps\" %g is above 1000000", what, ms);
        goto fail;
    }
    out->max_steps = (int)ms;
    if (t) {
        int n = cJSON_GetArraySize(t);
        if (n < 1 || (uint64_t)n > FP_FED_MAX_DIM) {
            fp_seterr(rc, "%s: \"target\" needs 1..%llu numbers, has %d", what,
                      (unsigned long long)FP_FED_MAX_DIM, n);
            goto fail;
        }
        out->dim = (size_t)n;
        out->target = malloc(out->dim * sizeof(float));
        if (!out->target) {
            rc = fp_seterr(FP_ENOMEM, "%s: out of memory", what);
            goto fail;
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, t)
        {
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) {
                fp_seterr(rc, "%s: target[%d] is not a finite number", what, i);
                goto fail;
            }
            out->target[i++] = (float)e->valuedouble;
        }
    } else {
        uint64_t dim = (uint64_t)fed_jnum(o, "dim", 0);
        if (dim < 1 || dim > FP_FED_MAX_DIM || !cJSON_GetObjectItemCaseSensitive(o, "target_seed")) {
            fp_seterr(rc, "%s: give either \"target\" or \"dim\" (1..%llu) with \"target_seed\"", what,
                      (unsigned long long)FP_FED_MAX_DIM);
            goto fail;
        }
        out->dim = (size_t)dim;
        out->target = malloc(out->dim * sizeof(float));
        if (!out->target) {
            rc = fp_seterr(FP_ENOMEM, "%s: out of memory for %zu floats", what, out->dim);
            goto fail;
        }
        fp_standin_target_gen(out->target, out->dim, (uint64_t)fed_jnum(o, "target_seed", 0),
                              (float)fed_jnum(o, "target_scale", 1.0));
    }
    cJSON_Delete(o);
    return 0;
fail:
    cJSON_Delete(o);
    fp_standin_data_free(out);
    return rc;
}

int fp_standin_data_load(fp_standin_data *out, const char *path)
{
    void *txt = NULL;
    size_t n = 0;
    int rc = fp_read_file(&txt, &n, path, (size_t)256 << 20);
    if (rc) {
        memset(out, 0, sizeof *out);
        return fp_adderr(rc, "client data %s", path);
    }
    rc = fp_standin_data_parse(out, txt, n, path);
    free(txt);
    return rc;
}

void fp_standin_data_free(fp_standin_data *d)
{
    if (!d)
        return;
    free(d->target);
    memset(d, 0, sizeof *d);
}

void fp_standin_update(float *update, const float *global, const float *target, size_t dim, int steps,
                       float lr, float noise, uint64_t seed, uint32_t index)
{
    fed_rng r;
    fed_rng_seed(&r, seed, index);
    for (size_t i = 0; i < dim; i++) {
        float w = global[i];
        for (int s = 0; s < steps; s++) {
            w += lr * (target[i] - w);
            if (noise > 0)
                w += noise * (float)fed_rng_normal(&r);
        }
        update[i] = w - global[i];
    }
}

typedef struct standin {
    fp_standin_data d;
    int last_steps;
} standin;

static int standin_train(void *ctx, float *update, uint64_t *samples, float *loss, const float *global,
                         size_t dim, const fp_fed_task *task)
{
    standin *s = ctx;
    if (dim != s->d.dim)
        return fp_seterr(FP_ESHAPE, "stand-in trainer: the server's vector has %zu elements, the data %zu",
                         dim, s->d.dim);
    double l = 0;
    for (size_t i = 0; i < dim; i++) {
        double e = (double)global[i] - s->d.target[i];
        l += e * e;
    }
    *loss = (float)(0.5 * l / (double)(dim ? dim : 1));
    *samples = s->d.samples;
    /* The device's budget ends the round early: fewer steps, a shorter move. */
    int steps = s->d.max_steps > 0 && s->d.max_steps < task->steps ? s->d.max_steps : task->steps;
    fp_standin_update(update, global, s->d.target, dim, steps, task->lr, s->d.noise, s->d.seed, task->index);
    s->last_steps = steps;
    return 0;
}

static int standin_last_steps(void *ctx)
{
    return ((const standin *)ctx)->last_steps;
}

static void standin_destroy(void *ctx)
{
    standin *s = ctx;
    if (!s)
        return;
    fp_standin_data_free(&s->d);
    free(s);
}

int fp_standin_trainer(fp_fed_trainer *out, const fp_standin_data *d)
{
    memset(out, 0, sizeof *out);
    if (!d || !d->target || !d->dim)
        return fp_seterr(FP_EINVAL, "stand-in trainer: no data");
    standin *s = calloc(1, sizeof *s);
    if (!s)
        return fp_seterr(FP_ENOMEM, "stand-in trainer: out of memory");
    s->d = *d;
    s->d.target = malloc(d->dim * sizeof(float));
    if (!s->d.target) {
        free(s);
        return fp_seterr(FP_ENOMEM, "stand-in trainer: out of memory for %zu floats", d->dim);
    }
    memcpy(s->d.target, d->target, d->dim * sizeof(float));
    out->ctx = s;
    out->train = standin_train;
    out->destroy = standin_destroy;
    out->last_steps = standin_last_steps;
    return 0;
}
