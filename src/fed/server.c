/* The federation server: transport, message dispatch through the guards,
 * registration (device profile -> LoRA rank/batch/seq), the proxy file, the
 * checkpoint, and the outer loop over rounds (server_round.c runs one). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "dp_internal.h"
#include "server_internal.h"

static int srv_sendfn(void *ctx, const uint8_t peer[32], const void *data, size_t len)
{
    fp_fed_server *s = ctx;
    return fp_server_send(s->net, peer, data, len, 0);
}

int srv_queue(fp_fed_server *s, srv_client *c, uint8_t *buf, size_t len)
{
    int rc = fed_link_queue(&c->link, buf, len);
    if (rc)
        return rc;
    rc = fed_link_pump(&c->link, fed_now_ms(), srv_sendfn, s);
    if (rc)
        fp_warn("fp serve: client %s unreachable (%s); its messages were dropped", c->name, fp_errmsg());
    return 0;
}

int srv_send_json(fp_fed_server *s, srv_client *c, uint32_t round, uint8_t stage, uint16_t type,
                  const cJSON *obj)
{
    fp_msg_header h;
    fed_header(&h, s->session, round, stage, type, FP_PAYLOAD_JSON, s->id.pk, ++s->seq);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = fed_encode_json(&buf, &len, &h, obj, &s->id);
    if (rc)
        return rc;
    return srv_queue(s, c, buf, len);
}

size_t srv_count_active(const fp_fed_server *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->ncl; i++)
        n += s->cl[i].registered && s->cl[i].active;
    return n;
}

/* ---- registration ---- */

static int plan_for(fp_fed_server *s, srv_client *c, char *why, size_t why_cap)
{
    fp_profile p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s", c->dev.name);
    p.uma = c->dev.uma;
    p.device_local_bytes = c->dev.mem_bytes;
    fp_measured m;
    memset(&m, 0, sizeof m);
    m.valid = c->dev.gflops > 0;
    m.matmul_gflops = c->dev.gflops;
    fp_train_plan plan;
    int rc = fp_recommend_train(&plan, &p, &m, &s->cfg.model, 0, 0);
    if (rc)
        return rc;
    c->rank = plan.rank;
    srv_engine_cap_rank(s, &c->rank);
    c->batch = plan.batch;
    c->seq = plan.seq;
    snprintf(why, why_cap, "%s", plan.why);
    char hex[65];
    fp_hex_encode(hex, sizeof hex, c->key, 32);
    for (uint32_t i = 0; i < s->cfg.n_overrides; i++) {
        const fp_fed_override *o = &s->cfg.overrides[i];
        if (strcmp(o->name, c->name) && strcmp(o->name, hex))
            continue;
        if (o->rank)
            c->rank = o->rank;
        if (o->batch)
            c->batch = o->batch;
        if (o->seq)
            c->seq = o->seq;
        srv_engine_cap_rank(s, &c->rank);
        snprintf(why, why_cap, "overridden by server.json (recommended rank %d batch %d seq %d)", plan.rank,
                 plan.batch, plan.seq);
    }
    return 0;
}

static void send_error(fp_fed_server *s, srv_client *c, const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "reason", reason);
    srv_send_json(s, c, 0, FP_STAGE_JOIN, FP_MSG_ERROR, o);
    cJSON_Delete(o);
}

static void handle_hello(fp_fed_server *s, srv_client *c, const fp_msg *m)
{
    static const fp_json_field dev_f[] = {
        {"name", FP_JSON_STRING, 1}, {"type", FP_JSON_STRING, 1},   {"overlay", FP_JSON_STRING, 0},
        {"uma", FP_JSON_BOOL, 1},    {"mem_bytes", FP_JSON_UINT, 1}, {"gflops", FP_JSON_NUMBER, 0}};
    static const fp_json_field f[] = {{"name", FP_JSON_STRING, 0},
                                      {"samples", FP_JSON_UINT, 1},
                                      {"device", FP_JSON_OBJECT, 1},
                                      {"have_proxy", FP_JSON_BOOL, 0}};
    cJSON *o = NULL;
    int rc = fp_msg_json(&o, m, f, sizeof f / sizeof f[0]);
    const cJSON *d = o ? cJSON_GetObjectItemCaseSensitive(o, "device") : NULL;
    if (!rc)
        rc = fp_json_check(d, dev_f, sizeof dev_f / sizeof dev_f[0], "HELLO device");
    if (rc) {
        s->st.rejected++;
        s->st.rej_malformed++;
        s->round_rejected++;
        fp_warn("fp serve: HELLO from %s refused: %s", c->name, fp_errmsg());
        cJSON_Delete(o);
        return;
    }
    uint64_t samples = (uint64_t)fed_jnum(o, "samples", 0);
    if (samples == 0) {
        fp_warn("fp serve: HELLO from %s refused: 0 samples", c->name);
        cJSON_Delete(o);
        return;
    }
    int was = c->registered;
    c->samples = samples;
    snprintf(c->dev.name, sizeof c->dev.name, "%s", fed_jstr(d, "name", "?"));
    snprintf(c->dev.type, sizeof c->dev.type, "%s", fed_jstr(d, "type", "?"));
    snprintf(c->dev.overlay, sizeof c->dev.overlay, "%s", fed_jstr(d, "overlay", ""));
    c->dev.uma = fed_jbool(d, "uma", 0);
    c->dev.mem_bytes = (uint64_t)fed_jnum(d, "mem_bytes", 0);
    c->dev.gflops = fed_jnum(d, "gflops", 0);
    /* A client without the proxy gets it again, unless our copy is still queued to it:
     * a client that re-HELLOs during a long transfer keeps receiving that one (one
     * more copy per HELLO once sent 9 GB in a round on a starved machine). */
    if (!fed_jbool(o, "have_proxy", 0) && !(c->proxy_sent && c->link.popped < c->proxy_ord))
        c->proxy_sent = 0;
    if (!c->name[0])
        snprintf(c->name, sizeof c->name, "%.60s", fed_jstr(o, "name", "?"));
    cJSON_Delete(o);
    char why[300];
    rc = plan_for(s, c, why, sizeof why);
    if (rc) {
        fp_warn("fp serve: client %s cannot train here: %s", c->name, fp_errmsg());
        send_error(s, c, fp_errmsg());
        return;
    }
    c->registered = 1;
    c->active = 1;
    s->st.registered++;
    if (!was)
        fed_log(
                "fp serve: client %s registered: %" PRIu64 " samples, %s (%s%s%s, %.0f MiB): rank %d batch %d "
                "seq %d (%s)\n",
                c->name, c->samples, c->dev.name, c->dev.type, c->dev.overlay[0] ? ", overlay " : "",
                c->dev.overlay, c->dev.mem_bytes / 1048576.0, c->rank, c->batch, c->seq, why);
    char sess[33], sig[129] = "";
    fp_hex_encode(sess, sizeof sess, s->session, 16);
    if (s->proxy)
        fp_hex_encode(sig, sizeof sig, s->proxy_sig, sizeof s->proxy_sig);
    cJSON *w = cJSON_CreateObject();
    cJSON_AddStringToObject(w, "session", sess);
    cJSON_AddStringToObject(w, "name", c->name);
    cJSON_AddNumberToObject(w, "id", c->id);
    cJSON_AddNumberToObject(w, "rank", c->rank);
    cJSON_AddNumberToObject(w, "batch", c->batch);
    cJSON_AddNumberToObject(w, "seq", c->seq);
    cJSON_AddStringToObject(w, "why", why);
    cJSON_AddNumberToObject(w, "dim", (double)s->cfg.dim);
    cJSON_AddNumberToObject(w, "proxy_bytes", (double)s->proxy_len);
    cJSON_AddStringToObject(w, "proxy_sig", sig);
    srv_send_json(s, c, 0, FP_STAGE_JOIN, FP_MSG_WELCOME, w);
    cJSON_Delete(w);
    if (s->proxy && !c->proxy_sent) {
        fp_msg_header h;
        fed_header(&h, s->session, 0, FP_STAGE_JOIN, FP_MSG_MODEL, FP_PAYLOAD_BYTES, s->id.pk, ++s->seq);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (fed_encode_bytes(&buf, &len, &h, s->proxy, s->proxy_len, &s->id) == 0 &&
            srv_queue(s, c, buf, len) == 0) {
            c->proxy_sent = 1;
            c->proxy_ord = c->link.queued;
        }
    }
}

/* ---- round messages ---- */

static void reject(fp_fed_server *s, srv_client *c, const fp_msg *m, const char *why)
{
    s->st.rejected++;
    s->round_rejected++;
    fp_warn("fp serve: round %u stage %s: %s %s from %s refused: %s", s->round, fp_msg_stage_name(s->stage),
            fp_msg_type_name(m->h.type), fp_msg_stage_name(m->h.stage), c->name, why);
}

static void handle_secagg(fp_fed_server *s, srv_client *c, const fp_msg *m)
{
    if (!s->sa || m->h.kind != FP_PAYLOAD_BYTES) {
        reject(s, c, m, "no secure aggregation in this round, or not a byte payload");
        return;
    }
    fp_secagg_msg_info info;
    int rc = fp_secagg_msg_peek(&info, m->payload, m->payload_len);
    if (rc || info.from != c->id) {
        char why[160];
        snprintf(why, sizeof why, "SecAgg message %s (from id %u, peer id %u)",
                 rc ? "malformed" : "names another sender", rc ? 0 : info.from, c->id);
        if (!rc)
            s->st.rej_forged++;
        reject(s, c, m, why);
        return;
    }
    rc = fp_secagg_server_receive(s->sa, m->payload, m->payload_len);
    if (rc)
        reject(s, c, m, fp_errmsg());
}

static void handle_meta(fp_fed_server *s, srv_client *c, const fp_msg *m)
{
    static const fp_json_field f[] = {
        {"samples", FP_JSON_UINT, 1}, {"loss", FP_JSON_NUMBER, 1}, {"steps", FP_JSON_UINT, 0}};
    cJSON *o = NULL;
    if (fp_msg_json(&o, m, f, 3)) {
        s->st.rej_malformed++;
        reject(s, c, m, fp_errmsg());
        return;
    }
    c->loss = fed_jnum(o, "loss", NAN);
    c->rsamples = (uint64_t)fed_jnum(o, "samples", 0);
    c->rsteps = (int)fed_jnum(o, "steps", 0);
    c->got_meta = 1;
    cJSON_Delete(o);
}

static void handle_update(fp_fed_server *s, srv_client *c, const fp_msg *m, uint8_t **buf)
{
    if (m->h.kind != FP_PAYLOAD_TENSOR || m->h.dtype != FP_DTYPE_F32 || m->h.ndim != 1 ||
        m->h.dims[0] != s->cfg.dim) {
        s->st.rej_malformed++;
        char why[128];
        snprintf(why, sizeof why, "update must be an f32 vector of %llu elements",
                 (unsigned long long)s->cfg.dim);
        reject(s, c, m, why);
        srv_refused(s, c->name, "wrong shape");
        return;
    }
    const float *v = (const float *)(const void *)m->payload;
    for (uint64_t i = 0; i < s->cfg.dim; i++)
        if (!isfinite(v[i])) {
            s->st.rej_malformed++;
            reject(s, c, m, "update has a non-finite value");
            srv_refused(s, c->name, isnan(v[i]) ? "non-finite value (NaN)" : "non-finite value (Inf)");
            return;
        }
    free(c->upd_buf);
    c->upd_buf = *buf; /* keep the envelope: the update points into it */
    *buf = NULL;
    c->update = v;
    c->got_update = 1;
}

static void count_reason(fp_fed_server *s, const char *why)
{
    if (!why)
        return;
    if (!strcmp(why, "forged-sender"))
        s->st.rej_forged++;
    else if (!strcmp(why, "unknown-sender"))
        s->st.rej_unknown++;
    else if (!strcmp(why, "wrong-session"))
        s->st.rej_session++;
    else if (!strcmp(why, "old-round") || !strcmp(why, "wrong-round"))
        s->st.rej_round++;
    else if (!strcmp(why, "wrong-stage"))
        s->st.rej_stage++;
    else if (!strcmp(why, "replay"))
        s->st.rej_replay++;
}

/* Takes ownership of buf; d is its fp_msg_decode result (fed_decode_batch). */
static void handle_envelope(fp_fed_server *s, srv_client *c, uint8_t *buf, const fed_decode_item *d)
{
    fp_msg m = d->msg;
    int rc = d->rc;
    size_t len = d->len;
    if (rc) {
        s->st.rejected++;
        s->st.rej_malformed++;
        s->round_rejected++;
        fp_warn("fp serve: round %u: malformed message (%zu bytes) from %s refused: %s", s->round, len, c->name,
                d->err);
        free(buf);
        return;
    }
    const char *why = NULL;
    fp_msg_guard *g = (m.h.type == FP_MSG_HELLO || m.h.type == FP_MSG_BYE) ? s->join_guard : s->guard;
    rc = fp_msg_guard_check(g, &m, c->key, &why);
    if (rc) {
        count_reason(s, why);
        reject(s, c, &m, fp_errmsg());
        free(buf);
        return;
    }
    if (m.h.type == FP_MSG_HELLO) {
        handle_hello(s, c, &m);
        free(buf);
        return;
    }
    c->active = c->registered;
    if (m.h.type == FP_MSG_BYE || m.h.type == FP_MSG_PING) {
        if (m.h.type == FP_MSG_BYE) {
            c->active = 0;
            c->said_bye = 1; /* also the acknowledgement of our BYE at the end */
        }
        free(buf);
        return;
    }
    if (!c->selected) {
        reject(s, c, &m, "client is not selected for this round");
        free(buf);
        return;
    }
    int secure = s->sa != NULL;
    switch (m.h.type) {
    case FP_MSG_UPDATE:
        if (m.h.kind == FP_PAYLOAD_JSON &&
            m.h.stage == (secure ? FP_STAGE_ADVERTISE : FP_STAGE_TRAIN))
            handle_meta(s, c, &m);
        else if (!secure && m.h.stage == FP_STAGE_TRAIN)
            handle_update(s, c, &m, &buf);
        else
            reject(s, c, &m, "UPDATE not expected here");
        break;
    case FP_MSG_SA_ADVERTISE:
    case FP_MSG_SA_SHARE_KEYS:
    case FP_MSG_SA_MASKED:
    case FP_MSG_SA_UNMASK: {
        static const uint8_t want[] = {FP_STAGE_ADVERTISE, FP_STAGE_SHARE, FP_STAGE_MASKED, FP_STAGE_UNMASK};
        if (m.h.stage != want[m.h.type - FP_MSG_SA_ADVERTISE])
            reject(s, c, &m, "SecAgg message type does not match its stage");
        else
            handle_secagg(s, c, &m);
        break;
    }
    default:
        reject(s, c, &m, "message type not accepted from a client");
    }
    free(buf);
}

/* Queues what srv_pump received for its next batch (frame: a chunk frame to
 * take in then, else a whole envelope); takes ownership of buf. Out of memory:
 * dropped and counted as refused. */
static void pend_push(fp_fed_server *s, size_t idx, uint8_t *buf, size_t len, int frame)
{
    if (s->npend == s->cap_pend) {
        size_t cap = s->cap_pend ? 2 * s->cap_pend : 64;
        fed_decode_item *p = realloc(s->pend, cap * sizeof *p);
        if (p)
            s->pend = p;
        size_t *q = p ? realloc(s->pend_cl, cap * sizeof *q) : NULL;
        if (q)
            s->pend_cl = q;
        uint8_t *f = q ? realloc(s->pend_frame, cap) : NULL;
        if (f)
            s->pend_frame = f;
        if (!f) {
            s->st.rejected++;
            s->round_rejected++;
            fp_warn("fp serve: out of memory queueing a %zu-byte message from %s: dropped", len, s->cl[idx].name);
            free(buf);
            return;
        }
        s->cap_pend = cap;
    }
    fed_decode_item *it = &s->pend[s->npend];
    memset(it, 0, sizeof *it);
    it->buf = buf;
    it->len = len;
    s->pend_cl[s->npend] = idx;
    s->pend_frame[s->npend++] = (uint8_t)frame;
    s->pend_bytes += len;
    s->cl[idx].npend++;
}

/* A chunk frame from c: reassembly (acknowledgements go out now). Returns the
 * envelope it completes (owned by the caller), else NULL. Takes ownership of
 * data. */
static uint8_t *take_frame(fp_fed_server *s, srv_client *c, uint8_t *data, size_t len, size_t *env_len)
{
    uint8_t *env = NULL;
    *env_len = 0;
    int rc = fed_link_chunk_input(&c->link, data, len, fed_now_ms(), srv_sendfn, s, &env, env_len);
    free(data);
    if (rc && rc != FP_EPROTO) {
        s->round_rejected++;
        fp_warn("fp serve: chunk frame from %s: %s", c->name, fp_errmsg());
    }
    return env;
}

/* Decodes the queued envelopes (signatures checked on worker threads), then
 * handles everything queued in arrival order. Returns 1 if done(s) became
 * true with items still queued: they wait for the next srv_pump (a later
 * stage), as they would have waited in the socket. */
static int pend_drain(fp_fed_server *s, int (*done)(fp_fed_server *s))
{
    if (s->pend_decoded < s->npend) {
        /* frames stay as they are: fed_decode_batch's result for them is unused */
        fed_decode_batch(s->pend + s->pend_decoded, s->npend - s->pend_decoded, s->max_payload);
        s->pend_decoded = s->npend;
    }
    while (s->pend_head < s->npend) {
        size_t i = s->pend_head++;
        fed_decode_item *it = &s->pend[i];
        srv_client *c = &s->cl[s->pend_cl[i]];
        s->pend_bytes -= it->len;
        c->npend--;
        if (s->pend_frame[i]) {
            fed_decode_item env = {0};
            env.buf = take_frame(s, c, (uint8_t *)it->buf, it->len, &env.len);
            if (env.buf) {
                fed_decode_batch(&env, 1, s->max_payload);
                handle_envelope(s, c, (uint8_t *)env.buf, &env);
            }
        } else {
            handle_envelope(s, c, (uint8_t *)it->buf, it);
        }
        if (s->pend_head < s->npend && done && done(s))
            return 1;
    }
    s->npend = s->pend_head = s->pend_decoded = 0;
    return 0;
}

/* Items are queued while this many bytes wait, at most (then decoded and
 * handled before more is read): enough for a batch of 4 MiB updates to keep
 * 16 threads busy, without holding much of what the socket would buffer. */
#define PEND_MAX_BYTES (256ull << 20)
#define PEND_MAX_ITEMS 512

static void dispatch(fp_fed_server *s, const uint8_t peer[32], uint8_t *data, size_t len)
{
    long idx = fp_allowlist_find(s->allow, peer);
    if (idx < 0) {
        free(data);
        return;
    }
    srv_client *c = &s->cl[idx];
    unsigned type;
    if (fp_chunk_is_frame(data, len, &type)) {
        if (c->npend) { /* after an envelope of c's still queued: keep the order */
            pend_push(s, (size_t)idx, data, len, 1);
            return;
        }
        size_t env_len;
        uint8_t *env = take_frame(s, c, data, len, &env_len);
        if (env)
            pend_push(s, (size_t)idx, env, env_len, 0);
        return;
    }
    c->link.bytes_recv += len;
    pend_push(s, (size_t)idx, data, len, 0);
}

void srv_pump(fp_fed_server *s, int64_t deadline_ms, int (*done)(fp_fed_server *s))
{
    /* Bounded: stops at the deadline (or the stop flag) whatever the peers do. */
    if (s->pend_head < s->npend && done && done(s))
        return; /* still queued from a stage that ended: not this one's either */
    if (pend_drain(s, done))
        return;
    for (;;) {
        if (atomic_load(&s->stop))
            return;
        if (done && done(s))
            return;
        int64_t now = fed_now_ms();
        if (now >= deadline_ms)
            return;
        int busy = 0;
        for (size_t i = 0; i < s->ncl; i++) {
            fed_link *l = &s->cl[i].link;
            if (fed_link_idle(l))
                continue;
            if (fed_link_pump(l, now, srv_sendfn, s))
                fp_warn("fp serve: client %s unreachable: %s", s->cl[i].name, fp_errmsg());
            busy |= !fed_link_idle(l);
        }
        int64_t left = deadline_ms - now;
        int wait = busy ? 1 : (int)(left < 50 ? left : 50);
        uint8_t peer[32];
        void *data = NULL;
        size_t len = 0;
        for (int n = 0; n < 4 * PEND_MAX_ITEMS && s->npend < PEND_MAX_ITEMS && s->pend_bytes < PEND_MAX_BYTES; n++) {
            int rc = fp_server_recv(s->net, peer, &data, &len, n == 0 ? wait : 0);
            if (rc == FP_ETIMEOUT)
                break;
            if (rc) {
                if (rc != FP_EPROTO && rc != FP_EAUTH) {
                    fp_warn("fp serve: receive failed: %s", fp_errmsg());
                    fed_sleep_ms(5);
                    break;
                }
                s->st.rejected++;
                s->round_rejected++;
                continue;
            }
            dispatch(s, peer, data, len);
        }
        if (pend_drain(s, done))
            return;
    }
}

/* ---- checkpoint ---- */

int srv_write_checkpoint(fp_fed_server *s)
{
    fed_ckpt c;
    memset(&c, 0, sizeof c);
    memcpy(c.session, s->session, 16);
    c.completed = s->completed;
    c.next_round = s->next_round;
    memcpy(c.rng_key, s->rng_key, 32);
    c.dim = s->cfg.dim;
    c.global = s->global;
    c.velocity = s->velocity;
    c.adaptive = s->opt_m ? s->cfg.server_optimizer : 0;
    c.m = s->opt_m;
    c.v = s->opt_v;
    fed_ckpt_client *cc = calloc(s->ncl + 1, sizeof *cc);
    if (!cc)
        return fp_seterr(FP_ENOMEM, "checkpoint: out of memory");
    for (size_t i = 0; i < s->ncl; i++) {
        if (!s->cl[i].registered)
            continue;
        fed_ckpt_client *e = &cc[c.n_clients++];
        memcpy(e->key, s->cl[i].key, 32);
        e->samples = s->cl[i].samples;
        e->rank = s->cl[i].rank;
        e->batch = s->cl[i].batch;
        e->seq = s->cl[i].seq;
    }
    c.clients = cc;
    int rc = fed_ckpt_write(s->cfg.state_dir, &c);
    free(cc);
    return rc;
}

int srv_write_attempt(fp_fed_server *s, uint32_t round)
{
    char path[FP_FED_PATH_MAX + 32], txt[32];
    snprintf(path, sizeof path, "%s/attempt", s->cfg.state_dir);
    int n = snprintf(txt, sizeof txt, "%u\n", round);
    return fp_write_file_atomic(path, txt, (size_t)n, 0600);
}

static uint32_t read_attempt(const char *dir)
{
    char path[FP_FED_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/attempt", dir);
    void *d = NULL;
    size_t n = 0;
    if (fp_read_file(&d, &n, path, 64))
        return 0;
    unsigned long v = strtoul(d, NULL, 10);
    free(d);
    return v > UINT32_MAX - 2 ? 0 : (uint32_t)v;
}

/* ---- lifecycle ---- */

static int load_proxy(fp_fed_server *s)
{
    if (!s->cfg.proxy[0] || s->proxy) /* a proxy_dir bundle is made by srv_engine_init */
        return 0;
    void *d = NULL;
    size_t n = 0;
    int rc = fp_read_file(&d, &n, s->cfg.proxy, (size_t)1 << 30);
    if (rc)
        return fp_adderr(rc, "proxy file");
    s->proxy = d;
    s->proxy_len = n;
    return fp_identity_sign(s->proxy_sig, d, n, &s->id);
}

static int resume(fp_fed_server *s)
{
    fed_ckpt c;
    int rc = fed_ckpt_read(&c, s->cfg.state_dir);
    if (rc)
        return rc;
    if (c.dim != s->cfg.dim) {
        fed_ckpt_free(&c);
        return fp_seterr(FP_EFORMAT, "checkpoint has dim %llu, server.json says %llu",
                         (unsigned long long)c.dim, (unsigned long long)s->cfg.dim);
    }
    memcpy(s->session, c.session, 16);
    s->completed = c.completed;
    uint32_t att = read_attempt(s->cfg.state_dir);
    s->next_round = c.next_round > att + 1 ? c.next_round : att + 1;
    memcpy(s->rng_key, c.rng_key, 32);
    memcpy(s->global, c.global, (size_t)c.dim * sizeof(float));
    /* FedAvgM continues its velocity; a checkpoint without one (momentum was off, or a
     * version-1 file) starts it at zero, as a fresh server would. */
    if (s->velocity && c.velocity)
        memcpy(s->velocity, c.velocity, (size_t)c.dim * sizeof(float));
    else if (s->velocity)
        fed_log("fp serve: the checkpoint has no server momentum; it starts at zero\n");
    /* FedAdam/FedYogi continue m and v written by the same optimizer; any other
     * checkpoint (sgd, the other one, format 1 or 2) starts them at zero. */
    const char *opt = fed_server_opt_name(s->cfg.server_optimizer);
    if (s->opt_m && c.adaptive == s->cfg.server_optimizer && c.m && c.v) {
        memcpy(s->opt_m, c.m, (size_t)c.dim * sizeof(float));
        memcpy(s->opt_v, c.v, (size_t)c.dim * sizeof(float));
    } else if (s->opt_m && c.adaptive) {
        fed_log("fp serve: the checkpoint's server optimizer state is %s's, not %s's; m and v start at zero\n",
                fed_server_opt_name(c.adaptive), opt);
    } else if (s->opt_m) {
        fed_log("fp serve: the checkpoint has no %s state; m and v start at zero\n", opt);
    } else if (c.adaptive) {
        fed_log("fp serve: the checkpoint's %s state (m, v) is dropped: server_optimizer is %s\n",
                fed_server_opt_name(c.adaptive), opt);
    }
    for (uint32_t i = 0; i < c.n_clients; i++) {
        long idx = fp_allowlist_find(s->allow, c.clients[i].key);
        if (idx < 0)
            continue; /* removed from clients.json since */
        srv_client *cl = &s->cl[idx];
        cl->samples = c.clients[i].samples;
        cl->rank = c.clients[i].rank;
        cl->batch = c.clients[i].batch;
        cl->seq = c.clients[i].seq;
    }
    fed_ckpt_free(&c);
    fed_log("fp serve: resumed from %s/checkpoint.bin: %u rounds complete, next wire round %u\n",
            s->cfg.state_dir, s->completed, s->next_round);
    return 0;
}

int fp_fed_server_create(fp_fed_server **out, const fp_fed_server_config *cfg, const fp_identity *id,
                         int resume_flag)
{
    *out = NULL;
    if (!cfg || !id || (cfg->lora.rank < 1 && cfg->dim < 1) || cfg->dim > FP_FED_MAX_DIM || !cfg->state_dir[0])
        return fp_seterr(FP_EINVAL, "fp_fed_server_create: bad config (dim, state_dir)");
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
    fp_fed_server *s = calloc(1, sizeof *s);
    if (!s)
        return fp_seterr(FP_ENOMEM, "server: out of memory");
    s->cfg = *cfg;
    if (!s->cfg.max_attempts)
        s->cfg.max_attempts = 3 * s->cfg.rounds;
    s->id = *id;
    s->seq = fed_seq_start();
    s->next_round = 1;
    int rc = srv_engine_init(s); /* LoRA layout (sets dim) and the proxy bundle */
    s->max_payload = (s->cfg.dim + 1) * 4 + ((uint64_t)1 << 20);
    if (!rc)
        rc = fp_aggregator_find(&s->agg, s->cfg.aggregator);
    s->agg_layout = s->cfg.lora.rank > 0 ? &s->lay : NULL; /* the engine's layout, for rank-aware aggregators */
    if (!rc) {
        fp_agg_ctx ac = {.dim = (size_t)s->cfg.dim, .layout = s->agg_layout, .opts = &s->cfg.agg_opts,
                         .clip = s->cfg.clip, .max_steps = (uint32_t)s->cfg.steps};
        rc = fp_agg_check(s->agg, &ac, s->cfg.secagg);
        /* Under secure aggregation a client's masked vector can be longer than the
         * adapter (flexlora sums the full products B A): the largest message a client
         * may send follows the longest pass. The limit used to be the adapter's size
         * alone, so secure flexlora on a real proxy had every masked input refused. */
        for (unsigned p = 0; !rc && s->cfg.secagg && p < s->agg->secure_sums; p++) {
            uint64_t need = ((uint64_t)fp_agg_secure_len(s->agg, &ac, p) + 1) * 4 + ((uint64_t)1 << 20);
            if (need > s->max_payload)
                s->max_payload = need;
        }
    }
    if (!rc && s->cfg.quorum < 1)
        rc = fp_seterr(FP_EINVAL, "server config: quorum must be at least 1");
    /* A config built in code skips the parser's checks: the optimizer's are repeated
     * here, since a beta of 1 or a tau of 0 would silently stall or blow up the global. */
    if (!rc && (s->cfg.server_optimizer < FP_FED_SERVER_SGD || s->cfg.server_optimizer > FP_FED_SERVER_YOGI))
        rc = fp_seterr(FP_EINVAL, "server config: server_optimizer %d is unknown", s->cfg.server_optimizer);
    if (!rc && s->cfg.server_optimizer != FP_FED_SERVER_SGD &&
        (s->cfg.server_momentum > 0 || !(s->cfg.server_beta1 >= 0 && s->cfg.server_beta1 < 1) ||
         !(s->cfg.server_beta2 >= 0 && s->cfg.server_beta2 < 1) || !(s->cfg.server_tau > 0) ||
         !isfinite(s->cfg.server_tau)))
        rc = fp_seterr(FP_EINVAL,
                       "server config: %s needs server_beta1 and server_beta2 in [0, 1), server_tau > 0 and no "
                       "server_momentum",
                       fed_server_opt_name(s->cfg.server_optimizer));
    if (!rc)
        rc = fp_allowlist_load(&s->allow, s->cfg.clients);
    if (rc)
        goto fail;
    s->ncl = fp_allowlist_count(s->allow);
    s->cl = calloc(s->ncl + 1, sizeof *s->cl);
    s->global = calloc(s->cfg.dim, sizeof(float));
    int mom = s->cfg.server_optimizer == FP_FED_SERVER_SGD && s->cfg.server_momentum > 0;
    int adaptive = s->cfg.server_optimizer != FP_FED_SERVER_SGD;
    s->velocity = mom ? calloc(s->cfg.dim, sizeof(float)) : NULL;
    s->opt_m = adaptive ? calloc(s->cfg.dim, sizeof(float)) : NULL;
    s->opt_v = adaptive ? calloc(s->cfg.dim, sizeof(float)) : NULL;
    uint8_t(*keys)[32] = calloc(s->ncl + 1, 32);
    if (!s->cl || !s->global || !keys || (mom && !s->velocity) || (adaptive && (!s->opt_m || !s->opt_v))) {
        free(keys);
        rc = fp_seterr(FP_ENOMEM, "server: out of memory for %zu clients, dim %llu", s->ncl,
                       (unsigned long long)s->cfg.dim);
        goto fail;
    }
    for (size_t i = 0; i < s->ncl; i++) {
        srv_client *c = &s->cl[i];
        memcpy(c->key, fp_allowlist_key(s->allow, i), 32);
        memcpy(keys[i], c->key, 32);
        c->id = (uint32_t)i;
        const char *nm = fp_allowlist_name(s->allow, i);
        if (nm && nm[0])
            snprintf(c->name, sizeof c->name, "%s", nm);
        else
            fed_keyname(c->name, c->key);
        fed_link_init(&c->link, c->key, s->max_payload + 4096);
    }
    if (resume_flag) {
        rc = resume(s);
    } else {
        randombytes_buf(s->session, sizeof s->session);
        if (s->cfg.seed) {
            fed_rng r;
            fed_rng_seed(&r, s->cfg.seed, 0x73656c656374ull); /* "select" */
            memcpy(s->rng_key, r.key, 32);
        } else {
            randombytes_buf(s->rng_key, 32);
        }
        int ge = srv_engine_init_global(s); /* 1: not an engine federation */
        if (ge < 0)
            rc = ge;
        else if (ge == 0)
            ;
        else if (s->cfg.init_seed) {
            fed_rng r;
            fed_rng_seed(&r, s->cfg.init_seed, 0x696e6974ull); /* "init" */
            for (uint64_t i = 0; i < s->cfg.dim; i++)
                s->global[i] = s->cfg.init_scale * (float)(2.0 * fed_rng_uniform(&r) - 1.0);
        }
        if (!rc)
            rc = srv_write_checkpoint(s);
    }
    if (!rc)
        rc = dp_srv_open(s, resume_flag);
    if (!rc)
        rc = load_proxy(s);
    /* HELLO (and a client's BYE) carry the zero session: a client has none yet. */
    static const uint8_t no_session[16];
    if (!rc)
        rc = fp_msg_guard_create(&s->join_guard, no_session, (const uint8_t(*)[32])keys, s->ncl, FP_GUARD_EXACT);
    if (!rc)
        rc = fp_msg_guard_create(&s->guard, s->session, (const uint8_t(*)[32])keys, s->ncl, FP_GUARD_EXACT);
    free(keys);
    if (!rc) {
        fp_net_opts o;
        fp_net_opts_default(&o);
        o.linger_ms = 100;
        rc = fp_server_create(&s->net, s->cfg.endpoint, &s->id, s->allow, &o);
    }
    if (rc)
        goto fail;
    *out = s;
    return 0;
fail:
    fp_fed_server_destroy(s);
    return rc;
}

void fp_fed_server_destroy(fp_fed_server *s)
{
    if (!s)
        return;
    fp_server_destroy(s->net);
    fp_secagg_server_free(s->sa);
    dp_srv_close(s);
    for (size_t i = 0; s->cl && i < s->ncl; i++) {
        fed_link_free(&s->cl[i].link);
        free(s->cl[i].upd_buf);
    }
    for (size_t i = s->pend_head; i < s->npend; i++)
        free((void *)s->pend[i].buf);
    free(s->pend);
    free(s->pend_cl);
    free(s->pend_frame);
    free(s->cl);
    free(s->global);
    free(s->velocity);
    free(s->opt_m);
    free(s->opt_v);
    free(s->proxy);
    fp_lora_vec_layout_free(&s->lay);
    fp_msg_guard_destroy(s->join_guard);
    fp_msg_guard_destroy(s->guard);
    fp_allowlist_free(s->allow);
    fp_identity_wipe(&s->id);
    sodium_memzero(s->rng_key, sizeof s->rng_key);
    free(s);
}

int fp_fed_server_endpoint(const fp_fed_server *s, char *out, size_t cap)
{
    return fp_server_endpoint(s->net, out, cap);
}

void fp_fed_server_set_report(fp_fed_server *s, fp_fed_report_fn fn, void *ctx)
{
    s->report = fn;
    s->report_ctx = ctx;
}

void fp_fed_server_stop(fp_fed_server *s) { atomic_store(&s->stop, 1); }

int fp_fed_server_global(const fp_fed_server *s, float *out, size_t dim, uint32_t *completed)
{
    if (dim != s->cfg.dim)
        return fp_seterr(FP_ESHAPE, "server global: dim %zu, expected %llu", dim, (unsigned long long)s->cfg.dim);
    memcpy(out, s->global, dim * sizeof(float));
    if (completed)
        *completed = s->completed;
    return 0;
}

void fp_fed_server_get_stats(const fp_fed_server *s, fp_fed_server_stats *out)
{
    *out = s->st;
    fp_server_stats ns;
    fp_server_get_stats(s->net, &ns);
    out->zap_refused = ns.zap_refused;
}

static int all_said_bye(fp_fed_server *s)
{
    for (size_t i = 0; i < s->ncl; i++)
        if (s->cl[i].registered && s->cl[i].active && !s->cl[i].said_bye)
            return 0;
    return 1;
}

static int all_idle(fp_fed_server *s)
{
    for (size_t i = 0; i < s->ncl; i++)
        if (!fed_link_idle(&s->cl[i].link))
            return 0;
    return 1;
}

int fp_fed_server_run(fp_fed_server *s)
{
    int rc = 0;
    uint32_t attempts = 0;
    while (s->completed < s->cfg.rounds) {
        if (atomic_load(&s->stop)) {
            rc = fp_seterr(FP_EABORT, "server stopped after %u complete rounds", s->completed);
            break;
        }
        if (attempts >= s->cfg.max_attempts) {
            rc = fp_seterr(FP_EABORT, "gave up after %u round attempts: %u of %u rounds complete", attempts,
                           s->completed, s->cfg.rounds);
            break;
        }
        attempts++;
        fp_fed_round_report rep;
        int rrc = srv_run_round(s, &rep);
        if (s->report)
            s->report(s->report_ctx, &rep);
        if (rrc && rrc != FP_EABORT) {
            rc = rrc;
            break;
        }
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", rc ? fp_errmsg() : "");
    /* Goodbye to everyone registered. A BYE can be lost (a client reconnecting,
     * our socket closing before it is flushed), and a client that misses it
     * would wait for give_up_ms: so clients acknowledge it with their own BYE,
     * and we repeat it to the silent ones for a bounded time. */
    for (size_t i = 0; i < s->ncl; i++)
        s->cl[i].said_bye = 0;
    int64_t end = fed_now_ms() + 3000;
    for (int first = 1;; first = 0) {
        int64_t now = fed_now_ms();
        if (!first && (now >= end || all_said_bye(s) || atomic_load(&s->stop)))
            break;
        for (size_t i = 0; i < s->ncl; i++) {
            srv_client *c = &s->cl[i];
            /* repeats only to clients still taking part (not crashed ones) */
            if (!c->registered || c->said_bye || (!first && !c->active))
                continue;
            if (!first)
                fed_log("fp serve: no acknowledgement of BYE from %s yet: repeating it\n", c->name);
            fp_msg_header h;
            fed_header(&h, s->session, 0, FP_STAGE_JOIN, FP_MSG_BYE, FP_PAYLOAD_NONE, s->id.pk, ++s->seq);
            uint8_t *buf = NULL;
            size_t len = 0;
            if (fp_msg_encode_alloc(&buf, &len, &h, NULL, 0, &s->id) == 0)
                srv_queue(s, c, buf, len);
        }
        srv_pump(s, now + 300 < end ? now + 300 : end, all_said_bye);
    }
    srv_pump(s, fed_now_ms() + 500, all_idle);
    if (rc)
        fp_seterr(rc, "%s", msg);
    return rc;
}
