/* The federation client: registers, verifies the signed proxy, and follows the
 * server through rounds (train with the fp_fed_trainer, upload plain or through
 * SecAgg+), with injectable faults for the simulator and tests. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "client_internal.h"
#include "error_internal.h"
#include "fedproxy/fileio.h"

void fp_fed_client_config_default(fp_fed_client_config *c)
{
    memset(c, 0, sizeof *c);
    c->idle_hello_ms = 1000;
    c->give_up_ms = 60000;
    c->fault.drop_index = -1;
    fp_fed_device_cpu(&c->device, "");
}

int fp_fed_device_cpu(fp_fed_device *out, const char *overlay)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "host cpu");
    snprintf(out->type, sizeof out->type, "cpu");
    out->uma = 1;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    out->mem_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : (uint64_t)1 << 30;
    if (overlay && overlay[0]) {
        fp_overlay ov;
        int rc = fp_overlay_load(&ov, overlay);
        if (rc)
            return rc;
        if (ov.device_local_bytes && ov.device_local_bytes < out->mem_bytes)
            out->mem_bytes = ov.device_local_bytes;
        snprintf(out->overlay, sizeof out->overlay, "%s", ov.name[0] ? ov.name : overlay);
    }
    return 0;
}

int fp_fed_device_from_profile(fp_fed_device *out, const fp_profile *p, const fp_measured *m)
{
    memset(out, 0, sizeof *out);
    if (!p)
        return fp_seterr(FP_EINVAL, "fp_fed_device_from_profile: no profile");
    snprintf(out->name, sizeof out->name, "%.63s", p->name);
    snprintf(out->type, sizeof out->type, "%s", fp_device_type_name(p->type));
    snprintf(out->overlay, sizeof out->overlay, "%s", p->overlay);
    out->uma = p->uma;
    out->mem_bytes = p->device_local_bytes;
    out->gflops = m && m->valid ? m->matmul_gflops : 0;
    return 0;
}

/* ---- sending ---- */

static int cl_sendfn(void *ctx, const uint8_t peer[32], const void *data, size_t len)
{
    fed_cl *c = ctx;
    (void)peer;
    return fp_client_send(c->net, data, len, 0);
}

static int cl_queue(fed_cl *c, uint8_t *buf, size_t len)
{
    int rc = fed_link_queue(&c->link, buf, len);
    if (!rc)
        rc = fed_link_pump(&c->link, fed_now_ms(), cl_sendfn, c);
    return rc;
}

/* Keeps a copy of the latest round envelope: the garbage fault replays it later. */
static void keep_last(fed_cl *c, const uint8_t *buf, size_t len)
{
    if (c->cfg->fault.garbage && len <= 65536) {
        uint8_t *cp = malloc(len);
        if (cp) {
            memcpy(cp, buf, len);
            free(c->last_env);
            c->last_env = cp;
            c->last_env_len = len;
        }
    }
}

static int cl_send(fed_cl *c, uint8_t stage, uint16_t type, uint8_t kind, const void *p, size_t n,
                   const cJSON *obj)
{
    fp_msg_header h;
    fed_header(&h, c->session, c->round, stage, type, kind, c->cfg->id->pk, ++c->seq);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;
    if (obj)
        rc = fed_encode_json(&buf, &len, &h, obj, c->cfg->id);
    else if (kind == FP_PAYLOAD_TENSOR)
        rc = fed_encode_f32(&buf, &len, &h, p, n / sizeof(float), c->cfg->id);
    else if (kind == FP_PAYLOAD_BYTES)
        rc = fed_encode_bytes(&buf, &len, &h, p, n, c->cfg->id);
    else
        rc = fp_msg_encode_alloc(&buf, &len, &h, NULL, 0, c->cfg->id);
    if (rc)
        return rc;
    keep_last(c, buf, len);
    return cl_queue(c, buf, len);
}

static int send_hello(fed_cl *c)
{
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(o, "device");
    const fp_fed_device *dv = &c->cfg->device;
    cJSON_AddStringToObject(o, "name", c->cfg->name);
    cJSON_AddNumberToObject(o, "samples", (double)c->cfg->samples);
    cJSON_AddBoolToObject(o, "have_proxy", c->got_proxy);
    cJSON_AddStringToObject(d, "name", dv->name);
    cJSON_AddStringToObject(d, "type", dv->type);
    cJSON_AddStringToObject(d, "overlay", dv->overlay);
    cJSON_AddBoolToObject(d, "uma", dv->uma);
    cJSON_AddNumberToObject(d, "mem_bytes", (double)dv->mem_bytes);
    cJSON_AddNumberToObject(d, "gflops", dv->gflops);
    /* HELLO is always round 0, stage JOIN, with the zero session: the client
     * learns the session from WELCOME. */
    fp_msg_header h;
    static const uint8_t no_session[16];
    fed_header(&h, no_session, 0, FP_STAGE_JOIN, FP_MSG_HELLO, FP_PAYLOAD_JSON, c->cfg->id->pk, ++c->seq);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = fed_encode_json(&buf, &len, &h, o, c->cfg->id);
    if (!rc)
        rc = cl_queue(c, buf, len);
    if (!rc)
        c->hello_ord = c->link.queued;
    cJSON_Delete(o);
    c->last_hello_ms = fed_now_ms();
    return rc;
}

/* BYE: like HELLO, round 0, stage JOIN, the zero session. */
static int send_bye(fed_cl *c)
{
    fp_msg_header h;
    static const uint8_t no_session[16];
    fed_header(&h, no_session, 0, FP_STAGE_JOIN, FP_MSG_BYE, FP_PAYLOAD_NONE, c->cfg->id->pk, ++c->seq);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = fp_msg_encode_alloc(&buf, &len, &h, NULL, 0, c->cfg->id);
    return rc ? rc : cl_queue(c, buf, len);
}

/* ---- the garbage fault: everything the server must shrug off ---- */

static void send_garbage(fed_cl *c)
{
    uint8_t junk[300];
    randombytes_buf(junk, sizeof junk);
    fp_client_send(c->net, junk, sizeof junk, 0); /* random bytes */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "samples", 1);
    cJSON_AddNumberToObject(o, "loss", 0);
    fp_msg_header h;
    fed_header(&h, c->session, c->round, FP_STAGE_TRAIN, FP_MSG_UPDATE, FP_PAYLOAD_JSON, c->cfg->id->pk, ++c->seq);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fed_encode_json(&buf, &len, &h, o, c->cfg->id) == 0) {
        fp_client_send(c->net, buf, len / 2, 0); /* truncated */
        free(buf);
    }
    /* wrong stage: properly signed, but UNMASK while the server is in CONFIG/TRAIN */
    fed_header(&h, c->session, c->round, FP_STAGE_UNMASK, FP_MSG_UPDATE, FP_PAYLOAD_JSON, c->cfg->id->pk, ++c->seq);
    if (fed_encode_json(&buf, &len, &h, o, c->cfg->id) == 0) {
        fp_client_send(c->net, buf, len, 0);
        free(buf);
    }
    /* forged sender: signed by a key that is not the connection's */
    fp_identity other;
    fp_identity_keygen(&other);
    fed_header(&h, c->session, c->round, FP_STAGE_TRAIN, FP_MSG_UPDATE, FP_PAYLOAD_JSON, other.pk, 1);
    if (fed_encode_json(&buf, &len, &h, o, &other) == 0) {
        fp_client_send(c->net, buf, len, 0);
        free(buf);
    }
    fp_identity_wipe(&other);
    cJSON_Delete(o);
    /* replay of our latest genuine envelope (an earlier round's) */
    if (c->last_env)
        fp_client_send(c->net, c->last_env, c->last_env_len, 0);
}

/* ---- round handling ---- */

static int fault_here(const fed_cl *c, int stage)
{
    const fp_fed_fault *f = &c->cfg->fault;
    return f->drop_stage == stage && (f->drop_index < 0 || (uint32_t)f->drop_index == c->index);
}

/* 1: skip the rest of this round; FP_EABORT: crash. */
static int apply_fault(fed_cl *c, int stage)
{
    if (!fault_here(c, stage))
        return 0;
    if (c->cfg->fault.crash) {
        fed_log("fp join %s: injected crash at the %s stage of round %u\n", c->cfg->name,
                fp_msg_stage_name((unsigned)stage), c->round);
        return FP_EABORT;
    }
    c->skip = 1;
    return 1;
}

static void round_free(fed_cl *c)
{
    fp_secagg_client_free(c->sa);
    c->sa = NULL;
    free(c->members);
    c->members = NULL;
    free(c->update);
    c->update = NULL;
    free(c->global);
    c->global = NULL;
    free(c->prev);
    c->prev = NULL;
    c->pass = 0;
    c->have_start = c->skip = 0;
}

/* An engine federation's layout on the client side: the caller's, or built
 * once (again when the server's "lora" changes) from the proxy the server sent,
 * unpacked into proxy_out. Without either, aggregators that need the slots
 * refuse the round by name (fp_agg_check). */
static int client_layout(fed_cl *c)
{
    const fp_lora_config *lc = &c->task.lora;
    if (c->cfg->layout || lc->rank < 1 || !c->cfg->proxy_out[0] || !c->got_proxy)
        return 0;
    if (c->have_own_lay && c->own_lc.rank == lc->rank && c->own_lc.alpha == lc->alpha &&
        c->own_lc.targets == lc->targets && c->own_lc.layers == lc->layers)
        return 0;
    if (c->have_own_lay)
        fp_lora_vec_layout_free(&c->own_lay);
    c->have_own_lay = 0;
    fp_llama_config mc;
    int rc = fed_proxy_llama_config(&mc, c->cfg->proxy_out, "client: the server's proxy");
    if (!rc)
        rc = fp_lora_vec_layout_build(&c->own_lay, &mc, lc);
    if (rc)
        return fp_adderr(rc, "ROUND_START: the LoRA layout of the proxy");
    c->own_lc = *lc;
    c->have_own_lay = 1;
    return 0;
}

static int parse_start(fed_cl *c, const fp_msg *m)
{
    static const fp_json_field f[] = {
        {"round", FP_JSON_UINT, 1},    {"index", FP_JSON_UINT, 1},      {"steps", FP_JSON_UINT, 1},
        {"lr", FP_JSON_NUMBER, 1},     {"rank", FP_JSON_INT, 1},        {"batch", FP_JSON_INT, 1},
        {"seq", FP_JSON_INT, 1},       {"dim", FP_JSON_UINT, 1},        {"aggregator", FP_JSON_STRING, 1},
        {"secagg", FP_JSON_BOOL, 1},   {"members", FP_JSON_ARRAY, 0},   {"threshold", FP_JSON_UINT, 0},
        {"degree", FP_JSON_UINT, 0},   {"graph_seed", FP_JSON_STRING, 0}, {"clip", FP_JSON_NUMBER, 0},
        {"scale_bits", FP_JSON_UINT, 0}, {"vec_len", FP_JSON_UINT, 0},   {"lora", FP_JSON_OBJECT, 0},
        {"prox_mu", FP_JSON_NUMBER, 0},  {"agg_seed", FP_JSON_UINT, 0},
        {"ties_keep", FP_JSON_NUMBER, 0}, {"dare_p", FP_JSON_NUMBER, 0}, {"pass", FP_JSON_UINT, 0},
        {"dp", FP_JSON_OBJECT, 0}};
    cJSON *o = NULL;
    int rc = fp_msg_json(&o, m, f, sizeof f / sizeof f[0]);
    if (rc)
        return rc;
    /* A later secure pass of the same round keeps this round's update. */
    unsigned pass = (unsigned)fed_jnum(o, "pass", 0);
    float *kept_u = NULL, *kept_g = NULL;
    if (pass > 0) {
        if (!c->have_start || c->skip || !c->update || !c->secure ||
            (uint32_t)fed_jnum(o, "index", 0) != c->index || pass != c->pass + 1) {
            cJSON_Delete(o);
            round_free(c);
            c->skip = 1;
            return fp_seterr(FP_EPROTO, "ROUND_START of secure pass %u without our part in the earlier pass", pass);
        }
        kept_u = c->update;
        kept_g = c->global;
        c->update = c->global = NULL;
    }
    round_free(c);
    c->update = kept_u;
    c->global = kept_g;
    c->pass = pass;
    c->index = (uint32_t)fed_jnum(o, "index", 0);
    c->task.round = m->h.round;
    c->task.index = c->index;
    c->task.steps = (int)fed_jnum(o, "steps", 1);
    c->task.lr = (float)fed_jnum(o, "lr", 1);
    c->task.rank = (int)fed_jnum(o, "rank", 0);
    c->task.batch = (int)fed_jnum(o, "batch", 0);
    c->task.seq = (int)fed_jnum(o, "seq", 0);
    c->dim = (size_t)fed_jnum(o, "dim", 0);
    c->secure = fed_jbool(o, "secagg", 0);
    rc = fed_task_engine_fields(&c->task, o);
    if (!rc)
        rc = fp_aggregator_find(&c->agg, fed_jstr(o, "aggregator", ""));
    if (!rc)
        rc = dp_cl_parse(&c->dp, cJSON_GetObjectItemCaseSensitive(o, "dp"));
    if (!rc)
        rc = dp_cl_policy(&c->dp, c->cfg->dp_min_noise);
    fp_agg_opts_default(&c->agg_opts);
    c->agg_opts.ties_keep = (float)fed_jnum(o, "ties_keep", c->agg_opts.ties_keep);
    c->agg_opts.dare_p = (float)fed_jnum(o, "dare_p", c->agg_opts.dare_p);
    if (!rc)
        rc = client_layout(c);
    memset(&c->actx, 0, sizeof c->actx);
    c->actx.layout = c->cfg->layout ? c->cfg->layout : (c->have_own_lay ? &c->own_lay : NULL);
    c->actx.opts = &c->agg_opts;
    c->actx.max_steps = (uint32_t)c->task.steps;
    c->actx.seed = (uint64_t)fed_jnum(o, "agg_seed", 0);
    c->actx.global = c->global;
    if (!rc && (c->dim < 1 || c->dim > FP_FED_MAX_DIM || c->task.steps < 1 || c->task.steps > 1000000))
        rc = fp_seterr(FP_EFORMAT, "ROUND_START: dim %zu or steps %d out of range", c->dim, c->task.steps);
    c->actx.dim = c->dim;
    c->actx.max_steps = (uint32_t)c->task.steps;
    if (!rc && c->secure) {
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "members");
        int n = ms ? cJSON_GetArraySize(ms) : 0;
        fp_secagg_params *p = &c->sp;
        memset(p, 0, sizeof *p);
        c->members = calloc((size_t)(n > 0 ? n : 1), sizeof *c->members);
        if (n < 2 || n > (int)FP_SECAGG_MAX_CLIENTS || !c->members || !c->agg->secure_ok) {
            rc = fp_seterr(FP_EFORMAT, "ROUND_START: secure round with %d members", n);
        } else {
            static const fp_json_field mf[] = {
                {"id", FP_JSON_UINT, 1}, {"key", FP_JSON_STRING, 1}, {"weight", FP_JSON_NUMBER, 1}};
            int i = 0, me = -1;
            const cJSON *e;
            cJSON_ArrayForEach(e, ms)
            {
                if (rc)
                    break;
                rc = fp_json_check(e, mf, 3, "ROUND_START member");
                const char *kh = fed_jstr(e, "key", "");
                if (!rc)
                    rc = fp_hex_decode(c->members[i].sign_pk, 32, kh, strlen(kh));
                c->members[i].id = (uint32_t)fed_jnum(e, "id", 0);
                if (!rc && !memcmp(c->members[i].sign_pk, c->cfg->id->pk, 32)) {
                    me = i;
                    c->weight = fed_jnum(e, "weight", 0);
                }
                i++;
            }
            const char *gs = fed_jstr(o, "graph_seed", "");
            if (!rc)
                rc = fp_hex_decode(p->graph_seed, sizeof p->graph_seed, gs, strlen(gs));
            if (!rc && me < 0)
                rc = fp_seterr(FP_EPROTO, "ROUND_START: secure round without us among the members");
            if (!rc) {
                c->my_id = c->members[me].id;
                memcpy(p->session_id, c->session, 16);
                p->round = m->h.round;
                p->members = c->members;
                p->n_clients = (uint32_t)n;
                p->threshold = (uint32_t)fed_jnum(o, "threshold", 0);
                p->degree = (uint32_t)fed_jnum(o, "degree", 0);
                p->vec_len = (size_t)fed_jnum(o, "vec_len", 0);
                p->ring.clip = (float)fed_jnum(o, "clip", 0);
                p->ring.scale_bits = (unsigned)fed_jnum(o, "scale_bits", 0);
                c->actx.clip = p->ring.clip;
                if (!rc)
                    rc = fp_agg_check(c->agg, &c->actx, 1);
                if (rc)
                    ;
                else if (pass >= c->agg->secure_sums)
                    rc = fp_seterr(FP_EFORMAT, "ROUND_START: pass %u of a %u-pass aggregator", pass,
                                   c->agg->secure_sums);
                else if (p->vec_len != fp_agg_secure_len(c->agg, &c->actx, pass))
                    rc = fp_seterr(FP_EFORMAT, "ROUND_START: vec_len %zu does not fit dim %zu", p->vec_len,
                                   c->dim);
                else if (!(c->weight > 0 && c->weight <= 1))
                    rc = fp_seterr(FP_EFORMAT, "ROUND_START: our weight %g is not in (0, 1]", c->weight);
                else
                    rc = fp_secagg_params_check(p);
            }
        }
    }
    cJSON_Delete(o);
    if (!rc)
        c->have_start = 1;
    return rc;
}

/* Starts our part in a SecAgg+ instance: the UPDATE meta (pass 0 only) and
 * the key advertisement. */
static int secure_advertise(fed_cl *c, const cJSON *meta)
{
    int rc = fp_secagg_client_new(&c->sa, &c->sp, c->my_id, c->cfg->id);
    uint8_t *out = NULL;
    size_t ol = 0;
    if (!rc && meta)
        rc = cl_send(c, FP_STAGE_ADVERTISE, FP_MSG_UPDATE, FP_PAYLOAD_JSON, NULL, 0, meta);
    if (!rc)
        rc = fp_secagg_client_advertise(c->sa, &out, &ol);
    if (!rc)
        rc = cl_send(c, FP_STAGE_ADVERTISE, FP_MSG_SA_ADVERTISE, FP_PAYLOAD_BYTES, out, ol, NULL);
    free(out);
    return rc;
}

static int on_model(fed_cl *c, const fp_msg *m)
{
    if (!c->have_start || m->h.kind != FP_PAYLOAD_TENSOR || m->h.dtype != FP_DTYPE_F32 || m->h.ndim != 1 ||
        m->h.dims[0] != c->dim)
        return fp_seterr(FP_EPROTO, "MODEL of round %u does not match the round start", m->h.round);
    if (c->skip)
        return 0;
    int f;
    if (c->pass > 0) { /* a later secure pass: no training, the payload is what the server revealed */
        c->prev = malloc(c->dim * sizeof(float));
        if (!c->prev)
            return fp_seterr(FP_ENOMEM, "client: out of memory for %zu floats", c->dim);
        memcpy(c->prev, m->payload, c->dim * sizeof(float));
        f = apply_fault(c, FP_STAGE_ADVERTISE);
        if (f)
            return f < 0 ? f : 0;
        return secure_advertise(c, NULL);
    }
    f = apply_fault(c, FP_STAGE_TRAIN);
    if (f)
        return f < 0 ? f : 0;
    c->update = malloc(c->dim * sizeof(float));
    if (!c->update)
        return fp_seterr(FP_ENOMEM, "client: out of memory for %zu floats", c->dim);
    if (c->secure) { /* kept for the aggregator's client side (flexlora forms products) */
        c->global = malloc(c->dim * sizeof(float));
        if (!c->global)
            return fp_seterr(FP_ENOMEM, "client: out of memory for %zu floats", c->dim);
        memcpy(c->global, m->payload, c->dim * sizeof(float));
        c->actx.global = c->global;
    }
    uint64_t samples = 0;
    float loss = NAN;
    const fp_fed_trainer *t = &c->cfg->trainer;
    int rc = t->train(t->ctx, c->update, &samples, &loss, (const float *)(const void *)m->payload, c->dim,
                      &c->task);
    if (rc)
        return fp_adderr(rc, "round %u: local training", c->round);
    c->steps_taken = t->last_steps ? t->last_steps(t->ctx) : c->task.steps;
    if (c->steps_taken < 1 || c->steps_taken > c->task.steps)
        return fp_seterr(FP_EINVAL, "the trainer reports %d local steps, not in 1..%d", c->steps_taken,
                         c->task.steps);
    rc = dp_cl_update(&c->dp, c->update, c->dim, c->secure);
    if (rc)
        return fp_adderr(rc, "round %u: differential privacy", c->round);
    c->last_loss = loss;
    fed_sleep_ms(c->cfg->fault.slow_ms);
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "samples", (double)samples);
    cJSON_AddNumberToObject(meta, "loss", isfinite(loss) ? loss : -1.0);
    cJSON_AddNumberToObject(meta, "steps", c->steps_taken);
    if (!c->secure) {
        rc = cl_send(c, FP_STAGE_TRAIN, FP_MSG_UPDATE, FP_PAYLOAD_JSON, NULL, 0, meta);
        if (!rc)
            rc = cl_send(c, FP_STAGE_TRAIN, FP_MSG_UPDATE, FP_PAYLOAD_TENSOR, c->update, c->dim * sizeof(float),
                         NULL);
        cJSON_Delete(meta);
        return rc;
    }
    f = apply_fault(c, FP_STAGE_ADVERTISE);
    if (f) {
        cJSON_Delete(meta);
        return f < 0 ? f : 0;
    }
    rc = secure_advertise(c, meta);
    cJSON_Delete(meta);
    return rc;
}

static int on_broadcast(fed_cl *c, const fp_msg *m)
{
    if (!c->sa || m->h.kind != FP_PAYLOAD_BYTES)
        return c->skip ? 0 : fp_seterr(FP_EPROTO, "SA_BROADCAST without a secure round in progress");
    if (c->skip)
        return 0;
    int f = apply_fault(c, m->h.stage);
    if (f)
        return f < 0 ? f : 0;
    uint8_t *out = NULL;
    size_t ol = 0;
    int rc;
    uint16_t type;
    if (m->h.stage == FP_STAGE_SHARE) {
        type = FP_MSG_SA_SHARE_KEYS;
        rc = fp_secagg_client_share_keys(c->sa, &out, &ol, m->payload, m->payload_len);
    } else if (m->h.stage == FP_STAGE_MASKED) {
        type = FP_MSG_SA_MASKED;
        float *x = malloc(c->sp.vec_len * sizeof(float));
        fp_agg_client me = {.weight = c->weight, .rank = c->task.rank, .steps = c->steps_taken,
                            .id = c->my_id, .name = c->cfg->name};
        const float *prev[4] = {0};
        if (c->pass > 0 && c->pass <= 4)
            prev[c->pass - 1] = c->prev;
        rc = x ? fp_agg_client_vector(c->agg, x, &c->actx, c->pass, c->update, &me, c->pass ? prev : NULL)
               : fp_seterr(FP_ENOMEM, "client: out of memory");
        if (!rc && c->dp.on)
            rc = dp_cl_masked(&c->dp, c->sa, &out, &ol, m->payload, m->payload_len, x, c->sp.vec_len, c->dim,
                              &c->sp.ring);
        else if (!rc)
            rc = fp_secagg_client_masked_input(c->sa, &out, &ol, m->payload, m->payload_len, x, c->sp.vec_len,
                                               NULL);
        free(x);
    } else if (m->h.stage == FP_STAGE_UNMASK) {
        type = FP_MSG_SA_UNMASK;
        rc = fp_secagg_client_unmask(c->sa, &out, &ol, m->payload, m->payload_len);
    } else {
        return fp_seterr(FP_EPROTO, "SA_BROADCAST in stage %s", fp_msg_stage_name(m->h.stage));
    }
    if (!rc) {
        fed_sleep_ms(m->h.stage == FP_STAGE_MASKED ? c->cfg->fault.slow_ms : 0);
        rc = cl_send(c, m->h.stage, type, FP_PAYLOAD_BYTES, out, ol, NULL);
    }
    free(out);
    return rc;
}

static int on_round_end(fed_cl *c, const fp_msg *m, fp_fed_client_result *res)
{
    static const fp_json_field f[] = {{"round", FP_JSON_UINT, 1},
                                      {"index", FP_JSON_UINT, 1},
                                      {"status", FP_JSON_STRING, 1},
                                      {"included", FP_JSON_UINT, 1},
                                      {"loss", FP_JSON_NUMBER, 1}};
    cJSON *o = NULL;
    int rc = fp_msg_json(&o, m, f, sizeof f / sizeof f[0]);
    if (rc)
        return rc;
    int ok = !strcmp(fed_jstr(o, "status", ""), "ok");
    if (ok && c->have_start && !c->skip) {
        res->rounds++;
        res->last_index = (uint32_t)fed_jnum(o, "index", 0);
    }
    cJSON_Delete(o);
    round_free(c);
    return 0;
}

static int on_welcome(fed_cl *c, const fp_msg *m, fp_fed_client_result *res)
{
    static const fp_json_field f[] = {
        {"session", FP_JSON_STRING, 1}, {"name", FP_JSON_STRING, 1},      {"id", FP_JSON_UINT, 1},
        {"rank", FP_JSON_INT, 1},       {"batch", FP_JSON_INT, 1},        {"seq", FP_JSON_INT, 1},
        {"why", FP_JSON_STRING, 1},     {"dim", FP_JSON_UINT, 1},         {"proxy_bytes", FP_JSON_UINT, 1},
        {"proxy_sig", FP_JSON_STRING, 1}};
    cJSON *o = NULL;
    int rc = fp_msg_json(&o, m, f, sizeof f / sizeof f[0]);
    if (rc)
        return rc;
    uint8_t sess[16];
    const char *sh = fed_jstr(o, "session", "");
    rc = fp_hex_decode(sess, 16, sh, strlen(sh));
    if (!rc && memcmp(sess, m->h.session, 16))
        rc = fp_seterr(FP_EPROTO, "WELCOME names session %s but its envelope another", sh);
    if (!rc && (!c->have_session || memcmp(sess, c->session, 16))) {
        /* A (new) session: a fresh guard that follows the server's rounds. */
        fp_msg_guard_destroy(c->guard);
        c->guard = NULL;
        rc = fp_msg_guard_create(&c->guard, sess, (const uint8_t(*)[32])c->cfg->server_pk, 1, FP_GUARD_FOLLOW);
        if (!rc) {
            memcpy(c->session, sess, 16);
            c->have_session = 1;
            round_free(c);
        }
    }
    if (!rc) {
        res->rank = (int)fed_jnum(o, "rank", 0);
        res->batch = (int)fed_jnum(o, "batch", 0);
        res->seq = (int)fed_jnum(o, "seq", 0);
        c->proxy_bytes = (uint64_t)fed_jnum(o, "proxy_bytes", 0);
        const char *ps = fed_jstr(o, "proxy_sig", "");
        c->have_proxy_sig = c->proxy_bytes > 0 && fp_hex_decode(c->proxy_sig, 64, ps, strlen(ps)) == 0;
        if (!c->welcomed)
            fed_log("fp join %s: registered: rank %d batch %d seq %d (%s)\n", c->cfg->name, res->rank,
                    res->batch, res->seq, fed_jstr(o, "why", ""));
        c->welcomed = 1;
    }
    cJSON_Delete(o);
    return rc;
}

static int on_proxy(fed_cl *c, const fp_msg *m, fp_fed_client_result *res)
{
    if (m->h.kind != FP_PAYLOAD_BYTES || !c->have_proxy_sig || m->payload_len != c->proxy_bytes)
        return fp_seterr(FP_EPROTO, "proxy: unexpected (announced %llu bytes, got %zu)",
                         (unsigned long long)c->proxy_bytes, m->payload_len);
    int rc = fp_identity_verify(c->proxy_sig, m->payload, m->payload_len, c->cfg->server_pk);
    if (rc)
        return fp_adderr(rc, "proxy: the server's signature does not verify: refusing it");
    if (c->cfg->proxy_out[0] && fp_fed_bundle_is(m->payload, m->payload_len)) {
        rc = fp_fed_bundle_unpack(m->payload, m->payload_len, c->cfg->proxy_out);
        if (rc)
            return fp_adderr(rc, "proxy: refusing it");
    } else if (c->cfg->proxy_out[0]) {
        rc = fp_write_file_atomic(c->cfg->proxy_out, m->payload, m->payload_len, 0644);
        if (rc)
            return rc;
    }
    c->got_proxy = 1;
    res->got_proxy = 1;
    return 0;
}

/* Returns 1 when the session is over (BYE), 0 to go on, <0 fatal. */
static int on_envelope(fed_cl *c, uint8_t *buf, size_t len, fp_fed_client_result *res)
{
    fp_msg m;
    int rc = fp_msg_decode(&m, buf, len, (uint64_t)FP_FED_MAX_DIM * 4 + ((uint64_t)1 << 30));
    if (rc) {
        fp_warn("fp join %s: malformed message from the server: %s", c->cfg->name, fp_errmsg());
        return 0;
    }
    if (memcmp(m.h.sender, c->cfg->server_pk, 32)) {
        fp_warn("fp join %s: message signed by another key than the server's: ignored", c->cfg->name);
        return 0;
    }
    if (m.h.stage == FP_STAGE_JOIN) {
        if (m.h.seq <= c->last_join_seq || (m.h.type != FP_MSG_WELCOME && c->have_session &&
                                            memcmp(m.h.session, c->session, 16))) {
            fp_warn("fp join %s: stale %s (seq %llu) ignored", c->cfg->name, fp_msg_type_name(m.h.type),
                    (unsigned long long)m.h.seq);
            return 0;
        }
        c->last_join_seq = m.h.seq;
        switch (m.h.type) {
        case FP_MSG_WELCOME:
            rc = on_welcome(c, &m, res);
            break;
        case FP_MSG_MODEL:
            rc = on_proxy(c, &m, res);
            if (rc)
                return rc; /* a proxy that does not verify is fatal */
            break;
        case FP_MSG_BYE:
            send_bye(c); /* the server repeats BYE until we acknowledge it */
            return 1;
        case FP_MSG_ERROR: {
            cJSON *o = NULL;
            static const fp_json_field f[] = {{"reason", FP_JSON_STRING, 1}};
            if (fp_msg_json(&o, &m, f, 1) == 0) {
                rc = fp_seterr(FP_EPROTO, "the server refused us: %s", fed_jstr(o, "reason", ""));
                cJSON_Delete(o);
                return rc;
            }
            break;
        }
        default:
            break;
        }
        if (rc)
            fp_warn("fp join %s: %s", c->cfg->name, fp_errmsg());
        return 0;
    }
    if (!c->guard)
        return 0;
    const char *why = NULL;
    rc = fp_msg_guard_check(c->guard, &m, c->cfg->server_pk, &why);
    if (rc) {
        fp_warn("fp join %s: %s", c->cfg->name, fp_errmsg());
        return 0;
    }
    if (c->proxy_bytes && !c->got_proxy)
        return 0; /* nothing before the proxy is in and verified */
    c->round = m.h.round;
    switch (m.h.type) {
    case FP_MSG_ROUND_START:
        rc = parse_start(c, &m);
        if (rc == FP_EPOLICY) { /* the client's own floor: leave before training */
            round_free(c);
            return fp_adderr(rc, "client %s: round %u refused", c->cfg->name, c->round);
        }
        if (!rc && c->cfg->fault.garbage)
            send_garbage(c);
        if (!rc) {
            int f = apply_fault(c, FP_STAGE_CONFIG);
            if (f < 0)
                return f;
        }
        break;
    case FP_MSG_MODEL:
        rc = on_model(c, &m);
        if (rc == FP_EABORT)
            return rc;
        break;
    case FP_MSG_SA_BROADCAST:
        rc = on_broadcast(c, &m);
        if (rc == FP_EABORT)
            return rc;
        break;
    case FP_MSG_ROUND_END:
        rc = on_round_end(c, &m, res);
        break;
    default:
        rc = fp_seterr(FP_EPROTO, "unexpected %s", fp_msg_type_name(m.h.type));
    }
    if (rc) {
        fp_warn("fp join %s: round %u: %s", c->cfg->name, c->round, fp_errmsg());
        if (c->sa)
            c->skip = 1; /* a failed SecAgg step ends our part in this round */
    }
    return 0;
}

int fp_fed_client_run(const fp_fed_client_config *cfg, fp_fed_client_result *res)
{
    memset(res, 0, sizeof *res);
    res->last_loss = NAN;
    if (!cfg || !cfg->id || !cfg->trainer.train || !cfg->samples)
        return fp_seterr(FP_EINVAL, "fp_fed_client_run: identity, trainer and samples are required");
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
    fed_cl c;
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    c.seq = fed_seq_start();
    fed_link_init(&c.link, cfg->server_pk, (uint64_t)FP_FED_MAX_DIM * 4 + ((uint64_t)1 << 30));
    fp_net_opts o;
    fp_net_opts_default(&o);
    o.reconnect_ms = 50;
    o.reconnect_max_ms = 500;
    o.linger_ms = cfg->fault.crash ? 0 : 200;
    int rc = fp_client_create(&c.net, cfg->endpoint, cfg->server_pk, cfg->id, &o);
    if (rc)
        return rc;
    int idle = cfg->idle_hello_ms > 0 ? cfg->idle_hello_ms : 1000;
    int give_up = cfg->give_up_ms > 0 ? cfg->give_up_ms : 60000;
    int stale = give_up / 4 > idle ? give_up / 4 : idle; /* silence after which our queue is dropped */
    int64_t last_rx = fed_now_ms();
    rc = send_hello(&c);
    if (rc == FP_ETIMEOUT)
        rc = 0; /* not connected yet: the HELLO waits in the queue */
    while (!rc) {
        if (cfg->stop && *cfg->stop) {
            rc = fp_seterr(FP_EABORT, "client %s stopped", cfg->name);
            break;
        }
        int64_t now = fed_now_ms();
        if (now - last_rx > give_up) {
            rc = fp_seterr(FP_ETIMEOUT, "client %s: no word from the server for %d ms", cfg->name, give_up);
            break;
        }
        if (now - last_rx > idle && now - c.last_hello_ms > idle) {
            /* Silence: say HELLO again (a restarted server learns of us; a live one answers
             * WELCOME), but keep what is in flight both ways. A busy server (a secure round's
             * arithmetic, a starved machine) or a slow link pauses a large transfer; dropping
             * our queue then lost the update being uploaded, and the round waited for it
             * until its stage timeout while we gave up on the silent server. A chunked
             * transfer resumes after a pause, and one to a server that restarted completes
             * there and is refused as a stale session. Only after `stale` (give_up / 4) of
             * silence is the queue dropped, and one HELLO waits in it at a time. */
            if (now - last_rx > stale)
                fed_link_reset_out(&c.link);
            if (c.link.popped >= c.hello_ord)
                send_hello(&c);
            else
                c.last_hello_ms = now;
        }
        if (!fed_link_idle(&c.link))
            fed_link_pump(&c.link, now, cl_sendfn, &c);
        void *data = NULL;
        size_t len = 0;
        int r = fp_client_recv(c.net, &data, &len, fed_link_idle(&c.link) ? 20 : 1);
        if (r == FP_ETIMEOUT)
            continue;
        if (r) {
            fed_sleep_ms(5);
            continue;
        }
        last_rx = fed_now_ms();
        unsigned type;
        uint8_t *env = NULL;
        size_t env_len = 0;
        if (fp_chunk_is_frame(data, len, &type)) {
            fed_link_chunk_input(&c.link, data, len, last_rx, cl_sendfn, &c, &env, &env_len);
            free(data);
        } else {
            c.link.bytes_recv += len;
            env = data;
            env_len = len;
        }
        if (env) {
            int e = on_envelope(&c, env, env_len, res);
            free(env);
            /* on_envelope may have trained for minutes (a slow device, a starved CPU):
             * that is our time, not the server's silence. Counting it made every client
             * whose local round took longer than give_up_ms quit right after training. */
            last_rx = fed_now_ms();
            if (e == 1)
                break;
            if (e < 0)
                rc = e;
        }
    }
    if (rc == 0 || rc == FP_ETIMEOUT) {
        /* Flush what is queued (bounded). */
        int64_t end = fed_now_ms() + 500;
        while (!fed_link_idle(&c.link) && fed_now_ms() < end) {
            fed_link_pump(&c.link, fed_now_ms(), cl_sendfn, &c);
            fed_sleep_ms(1);
        }
    }
    res->bytes_sent = c.link.bytes_sent;
    res->bytes_recv = c.link.bytes_recv;
    res->got_proxy = c.got_proxy;
    res->last_loss = c.last_loss;
    round_free(&c);
    if (c.have_own_lay)
        fp_lora_vec_layout_free(&c.own_lay);
    free(c.last_env);
    fed_link_free(&c.link);
    fp_msg_guard_destroy(c.guard);
    fp_client_destroy(c.net);
    return rc;
}
