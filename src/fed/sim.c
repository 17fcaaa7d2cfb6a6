/* fp sim: one server and N clients (threads) in one process over loopback
 * TCP, each client with its own identity, device overlay, data and faults. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/json_check.h"
#include "sim_internal.h"

typedef struct sim_client {
    fp_identity id;
    int engine; /* engine trainer on text/token data, else the stand-in */
    char data_path[FP_FED_PATH_MAX * 2], eval_path[FP_FED_PATH_MAX * 2], profile[64];
    fp_standin_data data;
    fp_fed_trainer trainer;
    fp_fed_client_config cfg;
    fp_fed_client_result res;
    int rc;
    pthread_t th;
    int started;
    _Atomic int done;
} sim_client;

static void *client_main(void *arg)
{
    sim_client *sc = arg;
    sc->rc = fp_fed_client_run(&sc->cfg, &sc->res);
    sc->done = 1;
    if (sc->rc && sc->rc != FP_EABORT)
        fp_warn("fp sim: client %s ended: %s", sc->cfg.name, fp_errmsg());
    return NULL;
}

static int parse_fault(fp_fed_fault *f, const cJSON *o, const char *name)
{
    static const fp_json_field ff[] = {{"drop", FP_JSON_STRING, 0},  {"round", FP_JSON_INT, 0},
                                       {"crash", FP_JSON_BOOL, 0},   {"slow_ms", FP_JSON_UINT, 0},
                                       {"garbage", FP_JSON_BOOL, 0}};
    memset(f, 0, sizeof *f);
    f->drop_index = -1;
    if (!o)
        return 0;
    int rc = fp_json_check(o, ff, sizeof ff / sizeof ff[0], "sim fault");
    if (rc)
        return fp_adderr(rc, "client %s", name);
    const char *d = fed_jstr(o, "drop", NULL);
    if (d) {
        f->drop_stage = fed_stage_from_name(d);
        if (f->drop_stage < 0)
            return fp_seterr(FP_EFORMAT,
                             "client %s: unknown drop stage '%s' (config, train, advertise, share, masked, unmask)",
                             name, d);
    }
    f->drop_index = (int)fed_jnum(o, "round", -1);
    f->crash = fed_jbool(o, "crash", 0);
    f->slow_ms = (int)fed_jnum(o, "slow_ms", 0);
    f->garbage = fed_jbool(o, "garbage", 0);
    if (f->crash && !f->drop_stage)
        f->drop_stage = FP_STAGE_CONFIG;
    return 0;
}

static void sim_path(char *out, size_t cap, const char *base, const char *p)
{
    snprintf(out, cap, "%s%s%s", p[0] == '/' ? "" : base, p[0] == '/' ? "" : "/", p);
}

/* Stand-in data is a JSON file; anything else is training text or token ids. */
static int sim_data_is_text(const char *p)
{
    size_t n = strlen(p);
    return !(n >= 5 && !strcmp(p + n - 5, ".json"));
}

static int setup_client(sim_client *sc, const cJSON *e, int i, int templ, size_t dim, const char *base,
                        int engine_fed)
{
    static const fp_json_field cf[] = {
        {"name", FP_JSON_STRING, 0},     {"samples", FP_JSON_UINT, 0},     {"profile", FP_JSON_STRING, 0},
        {"data", FP_JSON_STRING, 0},     {"target_seed", FP_JSON_UINT, 0}, {"target_scale", FP_JSON_NUMBER, 0},
        {"noise", FP_JSON_NUMBER, 0},    {"fault", FP_JSON_OBJECT, 0},     {"eval", FP_JSON_STRING, 0},
        {"max_steps", FP_JSON_UINT, 0}};
    int rc = fp_json_check(e, cf, sizeof cf / sizeof cf[0], "sim client");
    if (rc)
        return rc;
    /* The device's per-round budget in local steps (a slow device stops early). */
    double max_steps = fed_jnum(e, "max_steps", 0);
    if (max_steps > 1000000)
        return fp_seterr(FP_EFORMAT, "sim client: \"max_steps\" %g is above 1000000", max_steps);
    fp_fed_client_config_default(&sc->cfg);
    const char *nm = fed_jstr(e, "name", NULL);
    if (nm && !templ)
        snprintf(sc->cfg.name, sizeof sc->cfg.name, "%.60s", nm);
    else
        snprintf(sc->cfg.name, sizeof sc->cfg.name, "c%d", i);
    const char *data = fed_jstr(e, "data", NULL), *ev = fed_jstr(e, "eval", NULL);
    snprintf(sc->profile, sizeof sc->profile, "%s", fed_jstr(e, "profile", ""));
    if (data && sim_data_is_text(data)) {
        /* engine client: its trainer is made once the state directory exists */
        sc->engine = 1;
        sim_path(sc->data_path, sizeof sc->data_path, base, data);
        if (ev)
            sim_path(sc->eval_path, sizeof sc->eval_path, base, ev);
        rc = fp_engine_data_samples(&sc->data.samples, sc->data_path);
        uint64_t ne = 0;
        if (!rc && ev)
            rc = fp_engine_data_samples(&ne, sc->eval_path); /* fail early on a bad eval file */
        sc->data.dim = dim;
    } else if (ev) {
        rc = fp_seterr(FP_EFORMAT, "\"eval\" is for engine clients (text or token data)");
    } else if (data) {
        char path[FP_FED_PATH_MAX * 2];
        sim_path(path, sizeof path, base, data);
        rc = fp_standin_data_load(&sc->data, path);
    } else {
        sc->data.dim = dim;
        sc->data.samples = (uint64_t)fed_jnum(e, "samples", 100);
        sc->data.noise = (float)fed_jnum(e, "noise", 0);
        sc->data.seed = (uint64_t)(i + 1);
        sc->data.target = malloc(dim * sizeof(float));
        rc = sc->data.target ? fp_standin_target_gen(sc->data.target, dim,
                                                     (uint64_t)fed_jnum(e, "target_seed", 1) + (uint64_t)i,
                                                     (float)fed_jnum(e, "target_scale", 1.0))
                             : fp_seterr(FP_ENOMEM, "sim: out of memory");
        if (templ)
            sc->data.samples += (uint64_t)(i % 7) * 10; /* unequal weights */
    }
    if (!rc && max_steps > 0)
        sc->data.max_steps = (int)max_steps; /* the engine trainer takes it from here too */
    if (!rc && engine_fed != sc->engine)
        rc = fp_seterr(FP_EFORMAT, "%s", engine_fed ? "a \"lora\" server trains the proxy: give every client "
                                                     "text or token \"data\""
                                                   : "text \"data\" needs an engine server (\"lora\" and "
                                                     "\"proxy_dir\" in \"server\")");
    if (rc)
        return fp_adderr(rc, "sim client %s", sc->cfg.name);
    if (sc->data.dim != dim)
        return fp_seterr(FP_ESHAPE, "sim client %s: data has %zu elements, the server %zu", sc->cfg.name,
                         sc->data.dim, dim);
    rc = fp_fed_device_cpu(&sc->cfg.device, fed_jstr(e, "profile", ""));
    if (!rc)
        rc = parse_fault(&sc->cfg.fault, cJSON_GetObjectItemCaseSensitive(e, "fault"), sc->cfg.name);
    if (!rc)
        rc = fp_identity_keygen(&sc->id);
    if (!rc && !sc->engine)
        rc = fp_standin_trainer(&sc->trainer, &sc->data);
    if (rc)
        return fp_adderr(rc, "sim client %s", sc->cfg.name);
    sc->cfg.samples = sc->data.samples;
    sc->cfg.trainer = sc->trainer;
    sc->cfg.id = &sc->id;
    sc->cfg.give_up_ms = 120000;
    return 0;
}

static int write_allowlist(const char *dir, sim_client *cl, size_t n, char *path, size_t cap)
{
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "clients");
    cJSON_AddNumberToObject(o, "version", 1);
    for (size_t i = 0; i < n; i++) {
        char kh[65];
        fp_hex_encode(kh, sizeof kh, cl[i].id.pk, 32);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", cl[i].cfg.name);
        cJSON_AddStringToObject(e, "key", kh);
        cJSON_AddItemToArray(a, e);
    }
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    if (!txt)
        return fp_seterr(FP_ENOMEM, "sim: out of memory");
    int pn = snprintf(path, cap, "%s/clients.json", dir);
    if (pn < 0 || (size_t)pn >= cap) {
        free(txt);
        return fp_seterr(FP_EINVAL, "sim: state directory name too long");
    }
    int rc = fp_write_file_atomic(path, txt, strlen(txt), 0644);
    free(txt);
    return rc;
}

int fp_fed_sim_run(fp_fed_sim_result *out, const char *config_json, size_t len, const char *base_dir,
                   fp_fed_report_fn report, void *report_ctx)
{
    static const fp_json_field top[] = {
        {"server", FP_JSON_OBJECT, 0}, {"clients", FP_JSON_ARRAY, 1}, {"count", FP_JSON_UINT, 0},
        {"fedproxy", FP_JSON_OBJECT, 0}};
    memset(out, 0, sizeof *out);
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
    cJSON *o = NULL;
    int rc = fp_json_parse(&o, config_json, len, top, sizeof top / sizeof top[0], "sim config");
    if (rc)
        return rc;
    const char *base = base_dir && base_dir[0] ? base_dir : ".";
    fp_fed_server_config sc;
    const cJSON *sj = cJSON_GetObjectItemCaseSensitive(o, "server");
    char *stxt = sj ? cJSON_PrintUnformatted(sj) : NULL;
    rc = fp_fed_server_config_parse(&sc, stxt ? stxt : "{}", stxt ? strlen(stxt) : 2, base);
    free(stxt);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(o, "clients");
    int nentries = cJSON_GetArraySize(cl);
    int count = (int)fed_jnum(o, "count", 0);
    int templ = count > 0;
    size_t n = templ ? (size_t)count : (size_t)nentries;
    if (!rc && (nentries < 1 || (templ && nentries != 1) || n > 10000))
        rc = fp_seterr(FP_EFORMAT, "sim config: give 1..10000 clients, or one template with \"count\"");
    sim_client *cs = rc ? NULL : calloc(n, sizeof *cs);
    if (!rc && !cs)
        rc = fp_seterr(FP_ENOMEM, "sim: out of memory for %zu clients", n);
    for (size_t i = 0; !rc && i < n; i++)
        rc = setup_client(&cs[i], cJSON_GetArrayItem(cl, templ ? 0 : (int)i), (int)i, templ, (size_t)sc.dim,
                          base, sc.lora.rank > 0);
    fed_fedproxy *fpx = calloc(1, sizeof *fpx);
    const cJSON *fj = cJSON_GetObjectItemCaseSensitive(o, "fedproxy");
    if (!rc && !fpx)
        rc = fp_seterr(FP_ENOMEM, "sim: out of memory");
    if (!rc && fj)
        rc = fed_sim_fedproxy_parse(fpx, fj, base);
    cJSON_Delete(o);
    char tmpdir[] = "/tmp/fp-sim-XXXXXX";
    if (!rc && !sc.state_dir[0]) {
        if (!mkdtemp(tmpdir))
            rc = fp_seterr(FP_EIO, "sim: cannot create a temporary directory");
        else
            snprintf(sc.state_dir, sizeof sc.state_dir, "%s", tmpdir);
    }
    if (!rc)
        rc = fp_mkdirs(sc.state_dir, 0700);
    if (!rc)
        rc = write_allowlist(sc.state_dir, cs, n, sc.clients, sizeof sc.clients);
    for (size_t i = 0; !rc && i < n; i++) {
        sim_client *c = &cs[i];
        if (!c->engine)
            continue;
        int pl = snprintf(c->cfg.proxy_out, sizeof c->cfg.proxy_out, "%s/%s-proxy", sc.state_dir, c->cfg.name);
        if (pl < 0 || (size_t)pl >= sizeof c->cfg.proxy_out) {
            rc = fp_seterr(FP_EINVAL, "sim: state directory name too long");
            break;
        }
        fp_engine_trainer_opts eo = {c->cfg.proxy_out, c->data_path, c->eval_path[0] ? c->eval_path : NULL, NULL,
                                     c->profile, 0, c->data.max_steps};
        rc = fp_engine_trainer(&c->trainer, &eo);
        if (rc)
            rc = fp_adderr(rc, "sim client %s", c->cfg.name);
        c->cfg.trainer = c->trainer;
    }
    snprintf(sc.endpoint, sizeof sc.endpoint, "tcp://127.0.0.1:0");
    fp_identity sid;
    memset(&sid, 0, sizeof sid);
    fp_fed_server *srv = NULL;
    if (!rc)
        rc = fp_identity_keygen(&sid);
    if (!rc && fpx->on)
        rc = fed_sim_fedproxy_compress(fpx, &sc, &sid); /* the server's proxy_dir */
    if (!rc)
        rc = fp_fed_server_create(&srv, &sc, &sid, 0);
    volatile int stop = 0;
    if (!rc) {
        fp_fed_server_set_report(srv, report, report_ctx);
        char ep[256];
        fp_fed_server_endpoint(srv, ep, sizeof ep);
        for (size_t i = 0; i < n; i++) {
            snprintf(cs[i].cfg.endpoint, sizeof cs[i].cfg.endpoint, "%s", ep);
            memcpy(cs[i].cfg.server_pk, sid.pk, 32);
            cs[i].cfg.stop = &stop;
            cs[i].started = pthread_create(&cs[i].th, NULL, client_main, &cs[i]) == 0;
        }
        double t0 = fed_now_s();
        out->server_rc = fp_fed_server_run(srv);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", out->server_rc ? fp_errmsg() : "");
        /* Clients end on the server's BYE; stop the ones that have not after a while. */
        for (int64_t end = fed_now_ms() + 5000; fed_now_ms() < end;) {
            size_t left = 0;
            for (size_t i = 0; i < n; i++)
                left += cs[i].started && !cs[i].done;
            if (!left)
                break;
            fed_sleep_ms(10);
        }
        stop = 1;
        for (size_t i = 0; i < n; i++)
            if (cs[i].started)
                pthread_join(cs[i].th, NULL);
        out->wall_s = fed_now_s() - t0;
        out->clients = calloc(n, sizeof *out->clients);
        for (size_t i = 0; out->clients && i < n; i++) {
            snprintf(out->clients[i].name, sizeof out->clients[i].name, "%s", cs[i].cfg.name);
            out->clients[i].rc = cs[i].rc;
            out->clients[i].res = cs[i].res;
        }
        out->n_clients = out->clients ? n : 0;
        out->dim = fp_fed_server_dim(srv); /* engine federations: the LoRA layout's */
        out->global = malloc(out->dim * sizeof(float));
        out->expected = sc.lora.rank > 0 ? NULL : calloc(out->dim, sizeof(float));
        out->max_err = sc.lora.rank > 0 ? NAN : 0;
        if (!out->global || (!out->expected && sc.lora.rank < 1)) {
            rc = fp_seterr(FP_ENOMEM, "sim: out of memory");
        } else if (sc.lora.rank > 0) {
            fp_fed_server_global(srv, out->global, out->dim, &out->completed);
        } else {
            fp_fed_server_global(srv, out->global, out->dim, &out->completed);
            double W = 0;
            for (size_t i = 0; i < n; i++)
                W += (double)cs[i].data.samples;
            for (size_t d = 0; d < out->dim; d++) {
                double s = 0;
                for (size_t i = 0; i < n; i++)
                    s += (double)cs[i].data.samples * cs[i].data.target[d];
                out->expected[d] = (float)(s / W);
                double e = fabs((double)out->global[d] - out->expected[d]);
                if (e > out->max_err)
                    out->max_err = e;
            }
        }
        if (!rc && !out->server_rc && fpx->on) {
            const char **names = calloc(n, sizeof *names), **ev = calloc(n, sizeof *ev);
            for (size_t i = 0; names && ev && i < n; i++) {
                names[i] = cs[i].cfg.name;
                ev[i] = cs[i].eval_path[0] ? cs[i].eval_path : cs[i].data_path;
            }
            rc = names && ev ? fed_sim_fedproxy_finish(fpx, &sc, &sid, names, ev, n, out)
                             : fp_seterr(FP_ENOMEM, "sim: out of memory");
            free(names);
            free(ev);
        }
        if (out->server_rc)
            fp_seterr(out->server_rc, "%s", msg);
    }
    fp_fed_server_destroy(srv);
    fp_identity_wipe(&sid);
    for (size_t i = 0; cs && i < n; i++) {
        if (cs[i].trainer.destroy)
            cs[i].trainer.destroy(cs[i].trainer.ctx);
        fp_standin_data_free(&cs[i].data);
        fp_identity_wipe(&cs[i].id);
    }
    free(cs);
    free(fpx);
    if (!rc && out->server_rc)
        rc = out->server_rc;
    return rc;
}

void fp_fed_sim_result_free(fp_fed_sim_result *r)
{
    if (!r)
        return;
    free(r->global);
    free(r->expected);
    free(r->clients);
    free(r->evals);
    memset(r, 0, sizeof *r);
}
