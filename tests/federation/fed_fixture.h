/* A federation in one test process: a server (fp_fed_server) on this thread
 * and clients as threads, over real loopback TCP with CURVE, with per-client
 * targets, samples and faults, plus the expected result computed directly. */
#ifndef FED_FIXTURE_H
#define FED_FIXTURE_H

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "fedproxy/fed.h"
#include "fedproxy/fileio.h"
#include "fedproxy/msg.h"
#include "fp_test.h"

#define FX_MAX 16

typedef struct fx_client {
    fp_identity id;
    fp_standin_data data;
    fp_fed_trainer tr;
    fp_fed_client_config cfg;
    fp_fed_client_result res;
    int rc, on_list;
    char err[512]; /* fp_errmsg() of the client's thread when rc != 0 */
    volatile int done;
    pthread_t th;
} fx_client;

typedef struct fx {
    fp_identity sid;
    fp_fed_server_config sc;
    fx_client c[FX_MAX];
    int n;
    size_t dim;
    volatile int stop;
    int server_rc;
    fp_fed_server_stats st;
    float *global;
    uint32_t completed;
} fx;

static inline void *fx_client_main(void *a)
{
    fx_client *c = a;
    c->rc = fp_fed_client_run(&c->cfg, &c->res);
    if (c->rc)
        snprintf(c->err, sizeof c->err, "%s", fp_errmsg());
    c->done = 1;
    return NULL;
}

/* n clients, dim, targets from seeds 1..n scaled by scale; samples 100 + 37*i. */
static inline void fx_init(fx *f, const char *tag, int n, size_t dim, float scale)
{
    memset(f, 0, sizeof *f);
    f->n = n;
    f->dim = dim;
    fp_identity_keygen(&f->sid);
    fp_fed_server_config_default(&f->sc);
    const char *dir = fp_test_tmpdir(tag);
    snprintf(f->sc.state_dir, sizeof f->sc.state_dir, "%s/state", dir);
    snprintf(f->sc.clients, sizeof f->sc.clients, "%s/clients.json", dir);
    f->sc.dim = dim;
    f->sc.rounds = 3;
    f->sc.min_clients = (uint32_t)n;
    f->sc.quorum = 2;
    f->sc.stage_timeout_ms = 1000;
    f->sc.register_timeout_ms = 5000;
    f->sc.seed = 11;
    for (int i = 0; i < n; i++) {
        fx_client *c = &f->c[i];
        fp_identity_keygen(&c->id);
        c->on_list = 1;
        c->data.dim = dim;
        c->data.samples = 100 + 37 * (uint64_t)i;
        c->data.seed = (uint64_t)i + 1;
        c->data.target = malloc(dim * sizeof(float));
        fp_standin_target_gen(c->data.target, dim, (uint64_t)i + 1, scale);
        fp_fed_client_config_default(&c->cfg);
        snprintf(c->cfg.name, sizeof c->cfg.name, "c%d", i);
        c->cfg.id = &c->id;
        c->cfg.samples = c->data.samples;
        memcpy(c->cfg.server_pk, f->sid.pk, 32);
        c->cfg.give_up_ms = 20000;
        c->cfg.idle_hello_ms = 500;
    }
}

static inline void fx_write_allowlist(fx *f)
{
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "clients");
    cJSON_AddNumberToObject(o, "version", 1);
    for (int i = 0; i < f->n; i++) {
        if (!f->c[i].on_list)
            continue;
        char kh[65];
        fp_hex_encode(kh, sizeof kh, f->c[i].id.pk, 32);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", f->c[i].cfg.name);
        cJSON_AddStringToObject(e, "key", kh);
        cJSON_AddItemToArray(a, e);
    }
    char *t = cJSON_Print(o);
    CHECK_OK(fp_write_file_atomic(f->sc.clients, t, strlen(t), 0644));
    free(t);
    cJSON_Delete(o);
}

/* Optional parts of a run: resume from the state dir, a round-report
 * callback, and a hook that may replace client i's trainer after the
 * stand-in is installed (e.g. to wrap it in a malicious one). */
typedef struct fx_hooks {
    int resume;
    fp_fed_report_fn report;
    void *report_ctx;
    void (*wrap)(void *ctx, int i, fx_client *c);
    void *wrap_ctx;
} fx_hooks;

/* Runs the whole federation; returns the server's rc. h may be NULL. */
static inline int fx_run_with(fx *f, const fx_hooks *h)
{
    fx_write_allowlist(f);
    fp_fed_server *s = NULL;
    int rc = fp_fed_server_create(&s, &f->sc, &f->sid, h ? h->resume : 0);
    CHECK_OK(rc);
    if (rc)
        return rc;
    if (h && h->report)
        fp_fed_server_set_report(s, h->report, h->report_ctx);
    char ep[256];
    fp_fed_server_endpoint(s, ep, sizeof ep);
    for (int i = 0; i < f->n; i++) {
        fx_client *c = &f->c[i];
        fp_standin_trainer(&c->tr, &c->data);
        c->cfg.trainer = c->tr;
        if (h && h->wrap)
            h->wrap(h->wrap_ctx, i, c);
        c->cfg.stop = &f->stop;
        snprintf(c->cfg.endpoint, sizeof c->cfg.endpoint, "%s", ep);
        pthread_create(&c->th, NULL, fx_client_main, c);
    }
    f->server_rc = fp_fed_server_run(s);
    if (f->server_rc)
        fprintf(stderr, "server: %s\n", fp_errmsg());
    /* Clients leave on BYE; give them a bounded time before stopping them. */
    for (int t = 0; t < 3000; t += 10) {
        int all = 1;
        for (int i = 0; i < f->n; i++)
            all &= f->c[i].done;
        if (all)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    f->stop = 1;
    for (int i = 0; i < f->n; i++) {
        pthread_join(f->c[i].th, NULL);
        f->c[i].tr.destroy(f->c[i].tr.ctx);
    }
    fp_fed_server_get_stats(s, &f->st);
    f->global = malloc(f->dim * sizeof(float));
    fp_fed_server_global(s, f->global, f->dim, &f->completed);
    fp_fed_server_destroy(s);
    return f->server_rc;
}

static inline int fx_run(fx *f) { return fx_run_with(f, NULL); }

static inline void fx_free(fx *f)
{
    for (int i = 0; i < f->n; i++) {
        fp_standin_data_free(&f->c[i].data);
        fp_identity_wipe(&f->c[i].id);
    }
    free(f->global);
}

/* The fedavg mean of round r's updates, the server's arithmetic (double sums,
 * float result): each client in in_r trains from g with the stand-in's
 * formula, weighted by its samples. mean: f->dim floats. */
static inline void fx_round_mean(float *mean, const fx *f, const float *g, const int *in_r, float lr, int steps, int r)
{
    float *u = malloc(f->dim * sizeof(float) * FX_MAX);
    double W = 0;
    for (int i = 0; i < f->n; i++)
        if (in_r[i]) {
            fp_standin_update(u + (size_t)i * f->dim, g, f->c[i].data.target, f->dim, steps, lr, 0, f->c[i].data.seed,
                              (uint32_t)r);
            W += (double)f->c[i].data.samples;
        }
    for (size_t d = 0; d < f->dim; d++) {
        double s = 0;
        for (int i = 0; i < f->n; i++)
            if (in_r[i])
                s += (double)f->c[i].data.samples * u[(size_t)i * f->dim + d];
        mean[d] = (float)(s / W);
    }
    free(u);
}

/* Expected global after rounds where in[r][i] says whether client i's update
 * counted in round r: fx_round_mean, then the server's step: v = momentum * v
 * + mean, g += server_lr * v. */
static inline void fx_expected_opt(float *g, const fx *f, int rounds, int in[][FX_MAX], float lr, int steps,
                                   float server_lr, float momentum)
{
    memset(g, 0, f->dim * sizeof(float));
    float *mean = malloc(f->dim * sizeof(float)), *v = calloc(f->dim, sizeof(float));
    for (int r = 0; r < rounds; r++) {
        fx_round_mean(mean, f, g, in[r], lr, steps, r);
        for (size_t d = 0; d < f->dim; d++) {
            v[d] = momentum * v[d] + mean[d];
            g[d] += server_lr * v[d];
        }
    }
    free(mean);
    free(v);
}

/* Expected global under FedAdam / FedYogi (Reddi et al. 2021, no bias
 * correction), in double throughout, from the same clients' updates and the
 * same fedavg mean as fx_expected_opt: round r uses optimizer opt[r]
 * (FP_FED_SERVER_ADAM or _YOGI); m and v start at zero, and restart at zero
 * at round reset_at and, unless reset_at is -2, where opt changes between
 * rounds (-1: only there). */
static inline void fx_expected_adaptive(float *g, const fx *f, int rounds, int in[][FX_MAX], float lr, int steps,
                                        float server_lr, const int *opt, double b1, double b2, double tau,
                                        int reset_at)
{
    memset(g, 0, f->dim * sizeof(float));
    float *mean = malloc(f->dim * sizeof(float));
    double *m = calloc(f->dim, sizeof(double)), *v = calloc(f->dim, sizeof(double));
    double *gd = calloc(f->dim, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        if (r == reset_at || (reset_at != -2 && r > 0 && opt[r] != opt[r - 1]))
            for (size_t d = 0; d < f->dim; d++)
                m[d] = v[d] = 0;
        fx_round_mean(mean, f, g, in[r], lr, steps, r); /* from the float global the server sent */
        for (size_t d = 0; d < f->dim; d++) {
            double delta = mean[d], d2 = delta * delta; /* the aggregate is float */
            m[d] = b1 * m[d] + (1 - b1) * delta;
            if (opt[r] == FP_FED_SERVER_YOGI)
                v[d] -= (1 - b2) * d2 * (v[d] > d2 ? 1.0 : v[d] < d2 ? -1.0 : 0.0);
            else
                v[d] = b2 * v[d] + (1 - b2) * d2;
            gd[d] += server_lr * m[d] / (sqrt(v[d]) + tau);
            g[d] = (float)gd[d];
        }
    }
    free(mean);
    free(m);
    free(v);
    free(gd);
}

static inline void fx_expected_slr(float *g, const fx *f, int rounds, int in[][FX_MAX], float lr, int steps,
                                   float server_lr)
{
    fx_expected_opt(g, f, rounds, in, lr, steps, server_lr, 0.0f);
}

static inline void fx_expected(float *g, const fx *f, int rounds, int in[][FX_MAX], float lr, int steps)
{
    fx_expected_slr(g, f, rounds, in, lr, steps, 1.0f);
}

static inline double fx_maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= m))
            m = e;
    }
    return m;
}

#endif
