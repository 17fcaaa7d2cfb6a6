/* fp bench fed --aggregators: the server's time and peak memory of every
 * aggregator for 100 clients of a ~4 MiB update (the project's bench model,
 * 8 layers x 7 LoRA modules at rank 14: 1,017,856 floats, 3.9 MiB), clients'
 * ranks 4..14, local steps 1..5, unequal sample counts.
 *
 * Plain: the screening pass (finite values, norms) plus the aggregator, on
 * the 100 updates already in memory. Peak memory is what the aggregator adds
 * on top of them: Linux's VmHWM after resetting it (/proc/self/clear_refs 5)
 * just before the call, minus VmRSS then.
 * Secure: every pass through fp_secagg_sim_round (all SecAgg+ server calls
 * of a round, clients excluded: fp_secagg_sim_stats.server_s) plus the
 * aggregator's finish; memory: VmHWM growth of the finish alone (the SecAgg+
 * server state is the same for every aggregator of a given vector length and
 * is `fp bench fed`'s subject). Secure flexlora is not run here: its vector is
 * every module's full product (22x the adapter, 90 MiB per client at this
 * shape), too much for 100 simulated clients in one process.
 * quick: 20 clients, 2 layers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/ring.h"
#include "fedproxy/secagg.h"

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets the peak RSS; returns the RSS now (kB), -1 where unsupported. */
static long peak_reset(void)
{
#ifdef __GLIBC__
    malloc_trim(0); /* freed heap pages would otherwise hide the next allocation */
#endif
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? status_kb("VmRSS") : -1;
}

static double peak_mib(long rss0)
{
    long hwm = status_kb("VmHWM");
    return rss0 >= 0 && hwm >= rss0 ? (double)(hwm - rss0) / 1024.0 : NAN;
}

typedef struct bench_data {
    size_t K, dim;
    float **u;
    float *global;
    fp_agg_client *cl;
    char (*names)[24];
    fp_lora_vec_layout layout;
} bench_data;

static int data_make(bench_data *b, int quick)
{
    memset(b, 0, sizeof *b);
    fp_llama_config cfg = {.hidden = 512, .layers = quick ? 2 : 8, .heads = 8, .kv_heads = 2, .head_dim = 64,
                           .intermediate = 1408, .vocab = 8192, .rms_eps = 1e-5f, .rope_theta = 10000.0f};
    fp_lora_config lc = {.rank = 14, .alpha = 28.0f, .targets = FP_LORA_ALL};
    int rc = fp_lora_vec_layout_build(&b->layout, &cfg, &lc);
    if (rc)
        return rc;
    b->K = quick ? 20 : 100;
    b->dim = b->layout.dim;
    b->u = calloc(b->K, sizeof *b->u);
    b->cl = calloc(b->K, sizeof *b->cl);
    b->names = calloc(b->K, sizeof *b->names);
    b->global = malloc(b->dim * sizeof *b->global);
    if (!b->u || !b->cl || !b->names || !b->global)
        return fp_seterr(FP_ENOMEM, "bench: out of memory");
    fed_rng r;
    fed_rng_seed(&r, 1234, 0);
    for (size_t i = 0; i < b->dim; i++)
        b->global[i] = (float)(0.1 * (fed_rng_uniform(&r) - 0.5));
    for (size_t k = 0; k < b->K; k++) {
        b->u[k] = malloc(b->dim * sizeof **b->u);
        if (!b->u[k])
            return fp_seterr(FP_ENOMEM, "bench: out of memory for %zu updates", b->K);
        /* a shared direction plus the client's own: cosine ~0.5 between clients */
        fed_rng_seed(&r, 99, k % 4);
        fed_rng rr;
        fed_rng_seed(&rr, 7, k);
        for (size_t i = 0; i < b->dim; i++)
            b->u[k][i] = (float)(0.02 * (fed_rng_uniform(&r) - 0.5) + 0.02 * (fed_rng_uniform(&rr) - 0.5));
        snprintf(b->names[k], sizeof b->names[k], "c%zu", k);
        b->cl[k].weight = 100.0 + 10.0 * (double)(k % 7);
        b->cl[k].rank = 4 + 2 * (int)(k % 6); /* 4..14 */
        b->cl[k].steps = 1 + (int)(k % 5);
        b->cl[k].id = (uint32_t)k;
        b->cl[k].name = b->names[k];
    }
    return 0;
}

static void data_free(bench_data *b)
{
    for (size_t k = 0; b->u && k < b->K; k++)
        free(b->u[k]);
    free(b->u);
    free(b->cl);
    free(b->names);
    free(b->global);
    fp_lora_vec_layout_free(&b->layout);
}

static int bench_plain(cJSON *arr, bench_data *b, const char *name, const fp_agg_ctx *c)
{
    const fp_aggregator *a;
    int rc = fp_aggregator_find(&a, name);
    float *delta = rc ? NULL : malloc(b->dim * sizeof *delta);
    uint8_t *keep = rc ? NULL : malloc(b->K);
    if (!rc && (!delta || !keep))
        rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
    long rss0 = rc ? -1 : peak_reset();
    double t0 = fed_now_s(), tscreen = 0;
    size_t kept = 0;
    if (!rc)
        rc = fp_agg_screen(keep, &kept, NULL, 0, c, (const float *const *)b->u, NULL, b->cl, b->K,
                           fp_agg_reject_k(a, c->opts));
    tscreen = fed_now_s() - t0;
    if (!rc)
        rc = fp_agg_aggregate_plain(a, delta, c, (const float *const *)b->u, b->cl, b->K);
    double secs = fed_now_s() - t0;
    double mib = peak_mib(rss0);
    if (!rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "aggregator", name);
        cJSON_AddStringToObject(o, "mode", "plain");
        cJSON_AddNumberToObject(o, "server_s", secs);
        cJSON_AddNumberToObject(o, "screen_s", tscreen);
        if (isfinite(mib))
            cJSON_AddNumberToObject(o, "peak_extra_mib", round(mib * 10) / 10);
        cJSON_AddItemToArray(arr, o);
        fed_log("  %-16s plain   %8.3f s  %8.1f MiB\n", name, secs, mib);
    }
    free(delta);
    free(keep);
    return rc ? fp_adderr(rc, "bench %s", name) : 0;
}

static int bench_secure(cJSON *arr, bench_data *b, const char *name, const fp_agg_ctx *c0)
{
    const fp_aggregator *a;
    int rc = fp_aggregator_find(&a, name);
    if (rc)
        return rc;
    uint32_t n = (uint32_t)b->K;
    fp_agg_ctx c = *c0;
    c.clip = 1.0f;
    fp_identity *ids = calloc(n, sizeof *ids);
    fp_secagg_member *mem = calloc(n, sizeof *mem);
    float **vec = calloc(n, sizeof *vec);
    float *sums[4] = {0}, *bc[4] = {0};
    const float *prev[4] = {0};
    float *delta = malloc(b->dim * sizeof *delta);
    if (!ids || !mem || !vec || !delta)
        rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
    for (uint32_t i = 0; !rc && i < n; i++) {
        rc = fp_identity_keygen(&ids[i]);
        mem[i].id = i;
        memcpy(mem[i].sign_pk, ids[i].pk, 32);
    }
    double wmax = 0, server_s = 0, clients_s = 0;
    for (uint32_t i = 0; i < n; i++)
        wmax = b->cl[i].weight > wmax ? b->cl[i].weight : wmax;
    uint64_t up = 0;
    for (unsigned p = 0; !rc && p < a->secure_sums; p++) {
        if (p > 0) {
            bc[p - 1] = malloc(b->dim * sizeof **bc);
            double t0 = fed_now_s();
            rc = bc[p - 1] ? fp_agg_broadcast(a, bc[p - 1], &c, p, (const float *const *)sums)
                           : fp_seterr(FP_ENOMEM, "bench: out of memory");
            server_s += fed_now_s() - t0;
            prev[p - 1] = bc[p - 1];
        }
        fp_secagg_params sp;
        memset(&sp, 0, sizeof sp);
        randombytes_buf(sp.session_id, sizeof sp.session_id);
        sp.round = 1 + p;
        sp.members = mem;
        sp.n_clients = n;
        uint32_t lg = 0;
        while ((1u << lg) < n)
            lg++;
        sp.degree = n > 16 && 2 * lg < n - 1 ? 2 * lg : 0;
        uint32_t keff = sp.degree ? sp.degree : n - 1;
        sp.threshold = (keff + 1) / 2 + 1;
        randombytes_buf(sp.graph_seed, sizeof sp.graph_seed);
        sp.vec_len = fp_agg_secure_len(a, &c, p);
        sp.ring.clip = c.clip;
        if (!rc)
            rc = fp_ring_max_scale_bits(&sp.ring.scale_bits, c.clip, n);
        if (sp.ring.scale_bits > 24)
            sp.ring.scale_bits = 24;
        double tc = fed_now_s();
        for (uint32_t i = 0; !rc && i < n; i++) {
            free(vec[i]);
            vec[i] = malloc(sp.vec_len * sizeof **vec);
            fp_agg_client me = b->cl[i];
            me.weight /= wmax;
            rc = vec[i] ? fp_agg_client_vector(a, vec[i], &c, p, b->u[i], &me, p ? prev : NULL)
                        : fp_seterr(FP_ENOMEM, "bench: out of memory");
        }
        clients_s += fed_now_s() - tc;
        sums[p] = rc ? NULL : malloc(sp.vec_len * sizeof **sums);
        uint32_t *rsum = rc ? NULL : malloc(sp.vec_len * sizeof *rsum);
        if (!rc && (!sums[p] || !rsum))
            rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
        fp_secagg_sim_stats st;
        memset(&st, 0, sizeof st);
        if (!rc)
            rc = fp_secagg_sim_round(rsum, sums[p], &st, &sp, ids, (const float *const *)vec, NULL);
        free(rsum);
        server_s += st.server_s;
        clients_s += st.clients_s;
        up += st.bytes_up;
    }
    for (uint32_t i = 0; vec && i < n; i++) {
        free(vec[i]);
        vec[i] = NULL;
    }
    long rss0 = rc ? -1 : peak_reset();
    double t0 = fed_now_s();
    if (!rc)
        rc = fp_agg_finish_secure(a, delta, &c, (const float *const *)sums);
    double fin = fed_now_s() - t0;
    double mib = peak_mib(rss0);
    if (!rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "aggregator", name);
        cJSON_AddStringToObject(o, "mode", "secure");
        cJSON_AddNumberToObject(o, "passes", a->secure_sums);
        cJSON_AddNumberToObject(o, "server_s", server_s + fin);
        cJSON_AddNumberToObject(o, "finish_s", fin);
        cJSON_AddNumberToObject(o, "clients_s", clients_s);
        cJSON_AddNumberToObject(o, "bytes_up_per_client", (double)up / n);
        if (isfinite(mib))
            cJSON_AddNumberToObject(o, "finish_peak_extra_mib", round(mib * 10) / 10);
        cJSON_AddItemToArray(arr, o);
        fed_log("  %-16s secure  %8.3f s  (%u pass%s, finish %.3f s, %.1f MiB; clients %.1f s)\n", name,
                server_s + fin, a->secure_sums, a->secure_sums > 1 ? "es" : "", fin, mib, clients_s);
    }
    for (uint32_t i = 0; ids && i < n; i++)
        fp_identity_wipe(&ids[i]);
    for (int p = 0; p < 4; p++) {
        free(sums[p]);
        free(bc[p]);
    }
    free(ids);
    free(mem);
    free(vec);
    free(delta);
    return rc ? fp_adderr(rc, "bench %s (secure)", name) : 0;
}

int fp_bench_aggregators(int quick, const char *only, char **json)
{
    static const char *plain_names[] = {"fedavg",   "fednova",      "hetlora",     "flexlora",
                                        "ties",     "median",       "trimmed-mean", "normclip",
                                        "dare+fedavg", "dare+ties", "cluster:fedavg", "cluster:ties"};
    static const char *secure_names[] = {"fedavg", "fednova", "hetlora", "ties", "dare+ties"};
    *json = NULL;
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
#ifdef __GLIBC__
    /* Big blocks always mmap'd and returned on free (no dynamic threshold),
     * so each aggregator's peak is its own. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);
#endif
    bench_data b;
    int rc = data_make(&b, quick);
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    fp_agg_ctx c = {.dim = b.dim, .layout = &b.layout, .global = b.global, .opts = &o, .max_steps = 5,
                    .seed = 17};
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "bench", "aggregators");
    cJSON_AddNumberToObject(root, "clients", (double)b.K);
    cJSON_AddNumberToObject(root, "update_floats", (double)b.dim);
    cJSON_AddNumberToObject(root, "update_mib", (double)b.dim * 4 / 1048576.0);
    cJSON_AddStringToObject(root, "layout", quick ? "2 layers x 7 modules, rank 14" : "8 layers x 7 modules, rank 14");
    cJSON_AddBoolToObject(root, "quick", quick);
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    if (!rc)
        fed_log("fp bench fed --aggregators: %zu clients x %zu floats (%.2f MiB)\n", b.K, b.dim,
                (double)b.dim * 4 / 1048576.0);
    for (size_t i = 0; !rc && i < sizeof plain_names / sizeof plain_names[0]; i++)
        if (!only || !strcmp(only, plain_names[i]))
            rc = bench_plain(arr, &b, plain_names[i], &c);
    for (size_t i = 0; !rc && i < sizeof secure_names / sizeof secure_names[0]; i++)
        if (!only || !strcmp(only, secure_names[i]))
            rc = bench_secure(arr, &b, secure_names[i], &c);
    cJSON_AddStringToObject(root, "not_run",
                            "secure flexlora: its vector is every module's full product, 22x the adapter "
                            "(90 MiB per client at this shape)");
    if (!rc) {
        *json = cJSON_Print(root);
        if (!*json)
            rc = fp_seterr(FP_ENOMEM, "bench: out of memory");
    }
    cJSON_Delete(root);
    data_free(&b);
    return rc;
}
