/* server.json: the federation server's configuration (format in fed.h). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "dp_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/json_check.h"

void fp_fed_server_config_default(fp_fed_server_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->endpoint, sizeof c->endpoint, "tcp://127.0.0.1:0");
    snprintf(c->aggregator, sizeof c->aggregator, "fedavg");
    c->rounds = 3;
    c->min_clients = 2;
    c->fraction = 1.0;
    c->quorum = 2;
    c->max_attempts = 0; /* 3 * rounds */
    c->stage_timeout_ms = 10000;
    c->register_timeout_ms = 30000;
    c->steps = 1;
    c->lr = 1.0f;
    c->server_lr = 1.0f;
    c->server_momentum = 0.0f;
    c->server_optimizer = FP_FED_SERVER_SGD;
    c->server_beta1 = 0.9f;
    c->server_beta2 = 0.99f;
    c->server_tau = 1e-3f;
    c->dim = 16;
    c->init_scale = 0.1f;
    c->clip = 1.0f;
    c->model = fp_model_shape_bench();
    fp_agg_opts_default(&c->agg_opts);
}

static int path_field(char *dst, size_t cap, const char *v, const char *base, const char *key)
{
    int n;
    if (v[0] == '/' || !base || !base[0] || strstr(v, "://"))
        n = snprintf(dst, cap, "%s", v);
    else
        n = snprintf(dst, cap, "%s/%s", base, v);
    if (n < 0 || (size_t)n >= cap)
        return fp_seterr(FP_EINVAL, "server config: \"%s\" is too long", key);
    return 0;
}

static int uint_field(uint32_t *dst, const cJSON *o, const char *k, uint32_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v)
        return 0;
    if (v->valuedouble > max)
        return fp_seterr(FP_EFORMAT, "server config: \"%s\" = %.0f is above %u", k, v->valuedouble, max);
    *dst = (uint32_t)v->valuedouble;
    return 0;
}

static int overrides(fp_fed_server_config *c, const cJSON *ov)
{
    static const fp_json_field f[] = {
        {"rank", FP_JSON_UINT, 0}, {"batch", FP_JSON_UINT, 0}, {"seq", FP_JSON_UINT, 0}};
    const cJSON *e;
    cJSON_ArrayForEach(e, ov)
    {
        if (c->n_overrides >= FP_FED_MAX_OVERRIDES)
            return fp_seterr(FP_EFORMAT, "server config: more than %u overrides", FP_FED_MAX_OVERRIDES);
        int rc = fp_json_check(e, f, 3, "server config override");
        if (rc)
            return fp_adderr(rc, "override \"%s\"", e->string);
        fp_fed_override *o = &c->overrides[c->n_overrides++];
        if (strlen(e->string) >= sizeof o->name)
            return fp_seterr(FP_EFORMAT, "server config: override name \"%s\" too long", e->string);
        snprintf(o->name, sizeof o->name, "%s", e->string);
        o->rank = (int)fed_jnum(e, "rank", 0);
        o->batch = (int)fed_jnum(e, "batch", 0);
        o->seq = (int)fed_jnum(e, "seq", 0);
        if (o->rank > 4096 || o->batch > 65536 || o->seq > 1 << 20)
            return fp_seterr(FP_EFORMAT, "server config: override \"%s\" out of range", o->name);
    }
    return 0;
}

/* "lora": {"rank": R, "alpha": A, "targets": "all" | "q,k,...", "layers": "0,1,6,7"} */
int fed_lora_config_parse(fp_lora_config *out, const cJSON *o)
{
    static const fp_json_field f[] = {{"rank", FP_JSON_UINT, 1},
                                      {"alpha", FP_JSON_NUMBER, 0},
                                      {"targets", FP_JSON_STRING, 0},
                                      {"layers", FP_JSON_STRING, 0}};
    int rc = fp_json_check(o, f, sizeof f / sizeof f[0], "server config \"lora\"");
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    double r = fed_jnum(o, "rank", 0);
    if (r < 1 || r > 4096)
        return fp_seterr(FP_EFORMAT, "server config: \"lora\".rank must be 1..4096, is %g", r);
    out->rank = (int)r;
    out->alpha = (float)fed_jnum(o, "alpha", 2.0 * r);
    if (!(out->alpha > 0) || !isfinite(out->alpha))
        return fp_seterr(FP_EFORMAT, "server config: \"lora\".alpha must be > 0");
    rc = fp_lora_targets_parse(&out->targets, fed_jstr(o, "targets", "all"));
    if (rc)
        return fp_adderr(rc, "server config \"lora\".targets");
    const char *ls = fed_jstr(o, "layers", NULL);
    if (ls) {
        const char *p = ls;
        while (*p) {
            char *end = NULL;
            long l = strtol(p, &end, 10);
            if (end == p || l < 0 || l > 63 || (*end && *end != ','))
                return fp_seterr(FP_EFORMAT,
                                 "server config: \"lora\".layers \"%s\": give layer numbers 0..63 separated by commas",
                                 ls);
            out->layers |= 1ull << l;
            p = *end ? end + 1 : end;
        }
        if (!out->layers)
            return fp_seterr(FP_EFORMAT, "server config: \"lora\".layers is empty");
    }
    return 0;
}

const char *fed_server_opt_name(int opt)
{
    return opt == FP_FED_SERVER_ADAM ? "adam" : opt == FP_FED_SERVER_YOGI ? "yogi" : "sgd";
}

/* "server_optimizer" and its hyperparameters (fed.h). A beta or tau given for
 * sgd would be ignored silently, and momentum on top of adam/yogi is not the
 * paper's algorithm: both are refused rather than half-applied. */
static int server_optimizer(fp_fed_server_config *out, const cJSON *o)
{
    const char *name = fed_jstr(o, "server_optimizer", "sgd");
    if (!strcmp(name, "sgd"))
        out->server_optimizer = FP_FED_SERVER_SGD;
    else if (!strcmp(name, "adam"))
        out->server_optimizer = FP_FED_SERVER_ADAM;
    else if (!strcmp(name, "yogi"))
        out->server_optimizer = FP_FED_SERVER_YOGI;
    else
        return fp_seterr(FP_EFORMAT, "server config: \"server_optimizer\" \"%s\" is unknown (sgd, adam or yogi)",
                         name);
    static const char *const adaptive_keys[] = {"server_beta1", "server_beta2", "server_tau"};
    for (size_t i = 0; i < 3; i++)
        if (out->server_optimizer == FP_FED_SERVER_SGD && cJSON_GetObjectItemCaseSensitive(o, adaptive_keys[i]))
            return fp_seterr(FP_EFORMAT,
                             "server config: \"%s\" applies to \"server_optimizer\" adam or yogi only (it is sgd)",
                             adaptive_keys[i]);
    if (out->server_optimizer != FP_FED_SERVER_SGD && out->server_momentum > 0)
        return fp_seterr(FP_EFORMAT,
                         "server config: \"server_momentum\" is for \"server_optimizer\" sgd (FedAvgM); %s keeps "
                         "its own first moment (\"server_beta1\")",
                         name);
    double b1 = fed_jnum(o, "server_beta1", out->server_beta1), b2 = fed_jnum(o, "server_beta2", out->server_beta2);
    double tau = fed_jnum(o, "server_tau", out->server_tau);
    if (!(b1 >= 0 && (float)b1 < 1))
        return fp_seterr(FP_EFORMAT, "server config: \"server_beta1\" must be a number in [0, 1), is %g", b1);
    if (!(b2 >= 0 && (float)b2 < 1))
        return fp_seterr(FP_EFORMAT, "server config: \"server_beta2\" must be a number in [0, 1), is %g", b2);
    if (!(tau > 0) || !isfinite(tau) || !((float)tau > 0))
        return fp_seterr(FP_EFORMAT, "server config: \"server_tau\" must be a finite number > 0, is %g", tau);
    out->server_beta1 = (float)b1;
    out->server_beta2 = (float)b2;
    out->server_tau = (float)tau;
    return 0;
}

int fp_fed_server_config_parse(fp_fed_server_config *out, const char *json, size_t len, const char *base_dir)
{
    static const fp_json_field f[] = {
        {"endpoint", FP_JSON_STRING, 0},       {"keys", FP_JSON_STRING, 0},
        {"clients", FP_JSON_STRING, 0},        {"state_dir", FP_JSON_STRING, 0},
        {"proxy", FP_JSON_STRING, 0},          {"aggregator", FP_JSON_STRING, 0},
        {"rounds", FP_JSON_UINT, 0},           {"min_clients", FP_JSON_UINT, 0},
        {"fraction", FP_JSON_NUMBER, 0},       {"quorum", FP_JSON_UINT, 0},
        {"max_attempts", FP_JSON_UINT, 0},     {"stage_timeout_ms", FP_JSON_UINT, 0},
        {"register_timeout_ms", FP_JSON_UINT, 0}, {"steps", FP_JSON_UINT, 0},
        {"lr", FP_JSON_NUMBER, 0},             {"dim", FP_JSON_UINT, 0},
        {"init_seed", FP_JSON_UINT, 0},        {"init_scale", FP_JSON_NUMBER, 0},
        {"seed", FP_JSON_UINT, 0},             {"secagg", FP_JSON_BOOL, 0},
        {"threshold", FP_JSON_UINT, 0},        {"degree", FP_JSON_UINT, 0},
        {"clip", FP_JSON_NUMBER, 0},           {"scale_bits", FP_JSON_UINT, 0},
        {"overrides", FP_JSON_OBJECT, 0},      {"proxy_dir", FP_JSON_STRING, 0},
        {"adapter_out", FP_JSON_STRING, 0},    {"lora", FP_JSON_OBJECT, 0},
        {"prox_mu", FP_JSON_NUMBER, 0},        {"server_lr", FP_JSON_NUMBER, 0},
        {"server_momentum", FP_JSON_NUMBER, 0}, {"server_optimizer", FP_JSON_STRING, 0},
        {"server_beta1", FP_JSON_NUMBER, 0},   {"server_beta2", FP_JSON_NUMBER, 0},
        {"server_tau", FP_JSON_NUMBER, 0},
        {"aggregator_options", FP_JSON_OBJECT, 0},
        {"dp", FP_JSON_OBJECT, 0},
    };
    fp_fed_server_config_default(out);
    cJSON *o = NULL;
    int rc = fp_json_parse(&o, json, len, f, sizeof f / sizeof f[0], "server config");
    if (rc)
        return rc;
    static const struct { const char *k; size_t off; } paths[] = {
        {"keys", offsetof(fp_fed_server_config, keys_dir)},
        {"clients", offsetof(fp_fed_server_config, clients)},
        {"state_dir", offsetof(fp_fed_server_config, state_dir)},
        {"proxy", offsetof(fp_fed_server_config, proxy)},
        {"proxy_dir", offsetof(fp_fed_server_config, proxy_dir)},
        {"adapter_out", offsetof(fp_fed_server_config, adapter_out)},
    };
    for (size_t i = 0; !rc && i < sizeof paths / sizeof paths[0]; i++) {
        const char *v = fed_jstr(o, paths[i].k, NULL);
        if (v && v[0])
            rc = path_field((char *)out + paths[i].off, FP_FED_PATH_MAX, v, base_dir, paths[i].k);
    }
    const char *ep = fed_jstr(o, "endpoint", NULL);
    if (!rc && ep)
        rc = path_field(out->endpoint, sizeof out->endpoint, ep, NULL, "endpoint");
    const char *ag = fed_jstr(o, "aggregator", NULL);
    if (!rc && ag) {
        const fp_aggregator *a;
        rc = fp_aggregator_find(&a, ag);
        if (!rc)
            snprintf(out->aggregator, sizeof out->aggregator, "%s", ag);
    }
    uint32_t u;
    if (!rc)
        rc = uint_field(&out->rounds, o, "rounds", 1000000);
    if (!rc)
        rc = uint_field(&out->min_clients, o, "min_clients", FP_ALLOWLIST_MAX);
    if (!rc)
        rc = uint_field(&out->quorum, o, "quorum", FP_ALLOWLIST_MAX);
    if (!rc)
        rc = uint_field(&out->max_attempts, o, "max_attempts", 10000000);
    u = (uint32_t)out->stage_timeout_ms;
    if (!rc && !(rc = uint_field(&u, o, "stage_timeout_ms", 86400000)))
        out->stage_timeout_ms = (int)u;
    u = (uint32_t)out->register_timeout_ms;
    if (!rc && !(rc = uint_field(&u, o, "register_timeout_ms", 86400000)))
        out->register_timeout_ms = (int)u;
    u = (uint32_t)out->steps;
    if (!rc && !(rc = uint_field(&u, o, "steps", 1000000)))
        out->steps = (int)u;
    if (!rc)
        rc = uint_field(&out->threshold, o, "threshold", 255);
    if (!rc)
        rc = uint_field(&out->degree, o, "degree", FP_ALLOWLIST_MAX);
    u = out->scale_bits;
    if (!rc && !(rc = uint_field(&u, o, "scale_bits", 30)))
        out->scale_bits = u;
    if (!rc) {
        out->fraction = fed_jnum(o, "fraction", out->fraction);
        out->lr = (float)fed_jnum(o, "lr", out->lr);
        out->dim = (uint64_t)fed_jnum(o, "dim", (double)out->dim);
        out->init_seed = (uint64_t)fed_jnum(o, "init_seed", 0);
        out->init_scale = (float)fed_jnum(o, "init_scale", out->init_scale);
        out->seed = (uint64_t)fed_jnum(o, "seed", 0);
        out->secagg = fed_jbool(o, "secagg", 0);
        out->clip = (float)fed_jnum(o, "clip", out->clip);
        if (!(out->fraction > 0 && out->fraction <= 1))
            rc = fp_seterr(FP_EFORMAT, "server config: \"fraction\" must be in (0, 1], is %g", out->fraction);
        else if (out->dim > FP_FED_MAX_DIM || (out->dim < 1 && !cJSON_GetObjectItemCaseSensitive(o, "lora")))
            rc = fp_seterr(FP_EFORMAT, "server config: \"dim\" must be 1..%llu",
                           (unsigned long long)FP_FED_MAX_DIM);
        else if (!(out->clip > 0) || !isfinite(out->clip) || !isfinite(out->lr))
            rc = fp_seterr(FP_EFORMAT, "server config: \"clip\" must be > 0 and \"lr\" finite");
        else if (out->rounds < 1 || out->steps < 1)
            rc = fp_seterr(FP_EFORMAT, "server config: \"rounds\" and \"steps\" must be at least 1");
    }
    if (!rc)
        rc = fp_agg_opts_parse(&out->agg_opts, cJSON_GetObjectItemCaseSensitive(o, "aggregator_options"));
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(o, "overrides");
    if (!rc && ov)
        rc = overrides(out, ov);
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(o, "lora");
    if (!rc && lj) {
        rc = fed_lora_config_parse(&out->lora, lj);
        /* dim comes from the layout (server create); a given one must agree */
        if (!rc && !cJSON_GetObjectItemCaseSensitive(o, "dim"))
            out->dim = 0;
    }
    if (!rc) {
        out->prox_mu = (float)fed_jnum(o, "prox_mu", 0);
        if (!(out->prox_mu >= 0) || !isfinite(out->prox_mu))
            rc = fp_seterr(FP_EFORMAT, "server config: \"prox_mu\" must be a finite number >= 0");
    }
    if (!rc) {
        out->server_lr = (float)fed_jnum(o, "server_lr", 1.0);
        if (!(out->server_lr > 0 && out->server_lr <= 100))
            rc = fp_seterr(FP_EFORMAT, "server config: \"server_lr\" must be a number in (0, 100]");
    }
    if (!rc) {
        out->server_momentum = (float)fed_jnum(o, "server_momentum", 0.0);
        if (!(out->server_momentum >= 0 && out->server_momentum < 1))
            rc = fp_seterr(FP_EFORMAT, "server config: \"server_momentum\" must be a number in [0, 1)");
    }
    if (!rc)
        rc = server_optimizer(out, o);
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(o, "dp");
    if (!rc && dp)
        rc = fed_dp_config_parse(out, dp);
    /* FedProxy federations default to the aggregator that won on the benchmark's
     * valid split (fed.h), except under DP, which it cannot run with. */
    if (!rc && lj && !ag)
        snprintf(out->aggregator, sizeof out->aggregator, "%s", dp ? "fedavg" : FP_FED_FEDPROXY_AGGREGATOR);
    cJSON_Delete(o);
    return rc;
}

int fp_fed_server_config_load(fp_fed_server_config *out, const char *path)
{
    void *txt = NULL;
    size_t n = 0;
    int rc = fp_read_file(&txt, &n, path, (size_t)1 << 20);
    if (rc) {
        fp_fed_server_config_default(out);
        return fp_adderr(rc, "server config %s", path);
    }
    char base[FP_FED_PATH_MAX];
    snprintf(base, sizeof base, "%s", path);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(base, sizeof base, ".");
    rc = fp_fed_server_config_parse(out, txt, n, base);
    free(txt);
    if (rc)
        return fp_adderr(rc, "%s", path);
    if (!out->keys_dir[0] || !out->clients[0])
        return fp_seterr(FP_EFORMAT, "%s: \"keys\" and \"clients\" are required", path);
    if (!out->state_dir[0]) {
        if (strlen(base) + 7 > sizeof out->state_dir)
            return fp_seterr(FP_EINVAL, "%s: directory name too long", path);
        memcpy(out->state_dir, base, strlen(base));
        memcpy(out->state_dir + strlen(base), "/state", 7);
    }
    return 0;
}
