/* One round attempt on the server: select, broadcast the global vector,
 * collect plain updates or run the four SecAgg+ stages, aggregate, checkpoint,
 * tell the clients how it ended. Every wait is bounded by the stage deadline. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "dp_internal.h"
#include "server_internal.h"

static void append_name(char *dst, size_t cap, const char *name)
{
    size_t n = strlen(dst);
    if (n + strlen(name) + 2 >= cap)
        return;
    snprintf(dst + n, cap - n, "%s%s", n ? "," : "", name);
}

/* Deterministic in (rng_key, index) and the set of available clients. */
static size_t select_clients(fp_fed_server *s, uint32_t index)
{
    size_t navail = 0;
    size_t *av = malloc((s->ncl + 1) * sizeof *av);
    if (!av)
        return 0;
    for (size_t i = 0; i < s->ncl; i++) {
        s->cl[i].selected = 0;
        if (s->cl[i].registered && s->cl[i].active)
            av[navail++] = i;
    }
    size_t want = (size_t)ceil(s->cfg.fraction * (double)navail);
    if (want < s->cfg.min_clients)
        want = s->cfg.min_clients;
    if (want > navail)
        want = navail;
    fed_rng r;
    fed_rng_init(&r, s->rng_key);
    r.counter = (uint64_t)index << 32;
    for (size_t i = 0; i < want; i++) { /* partial Fisher-Yates */
        size_t j = i + (size_t)(fed_rng_u64(&r) % (navail - i));
        size_t t = av[i];
        av[i] = av[j];
        av[j] = t;
        s->cl[av[i]].selected = 1;
    }
    free(av);
    return want;
}

/* The aggregation context of round index (the same on every client: they
 * rebuild it from ROUND_START's "agg_seed", "steps", "clip" and options). */
static void agg_ctx(const fp_fed_server *s, fp_agg_ctx *c, uint32_t index)
{
    fed_rng r;
    fed_rng_init(&r, s->rng_key);
    r.counter = ((uint64_t)index << 32) | 0xFFFF0000u; /* apart from the selection's draws */
    memset(c, 0, sizeof *c);
    c->dim = (size_t)s->cfg.dim;
    c->layout = s->agg_layout;
    c->global = s->global;
    c->opts = &s->cfg.agg_opts;
    c->clip = s->cfg.clip;
    c->max_steps = (uint32_t)s->cfg.steps;
    c->seed = fed_rng_u64(&r);
}

void srv_refused(fp_fed_server *s, const char *name, const char *why)
{
    size_t n = strlen(s->round_refused);
    if (n + 4 < sizeof s->round_refused)
        snprintf(s->round_refused + n, sizeof s->round_refused - n, "%s%s: %s", n ? ";" : "", name, why);
}

static int plain_done(fp_fed_server *s)
{
    for (size_t i = 0; i < s->ncl; i++)
        if (s->cl[i].selected && !(s->cl[i].got_meta && s->cl[i].got_update))
            return 0;
    return 1;
}

static int sa_done(fp_fed_server *s)
{
    uint32_t exp = 0, got = 0;
    fp_secagg_server_pending(s->sa, &exp, &got);
    return got >= exp;
}

static void clear_round(fp_fed_server *s)
{
    for (size_t i = 0; i < s->ncl; i++) {
        srv_client *c = &s->cl[i];
        free(c->upd_buf);
        c->upd_buf = NULL;
        c->update = NULL;
        c->got_meta = c->got_update = c->in_sum = 0;
        c->loss = NAN;
        c->rsamples = 0;
    }
    fp_secagg_server_free(s->sa);
    s->sa = NULL;
}

static int set_stage(fp_fed_server *s, uint8_t stage)
{
    s->stage = stage;
    return fp_msg_guard_set_stage(s->guard, s->round, stage);
}

static void mark_missing(fp_fed_server *s, srv_client *c, const char *stage)
{
    if (!c->active)
        return;
    fp_warn("fp serve: round %u: client %s missed the %s stage deadline; dropped from this round", s->round,
            c->name, stage);
    c->active = 0;
    fed_link_reset(&c->link);
}

/* Sends ROUND_START and the global vector to every selected client; for a
 * later secure pass (pass > 0), ROUND_START with "pass" and, instead of the
 * global, what the aggregator reveals of the earlier passes (vec, dim floats). */
static int broadcast_start(fp_fed_server *s, uint32_t index, const fp_secagg_params *sp, double maxs,
                           unsigned pass, const float *vec)
{
    fp_agg_ctx ac;
    agg_ctx(s, &ac, index);
    char seedhex[2 * FP_SECAGG_GRAPHSEEDBYTES + 1];
    for (size_t i = 0; i < s->ncl; i++) {
        srv_client *c = &s->cl[i];
        if (!c->selected)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "round", s->round);
        cJSON_AddNumberToObject(o, "index", index);
        cJSON_AddNumberToObject(o, "steps", s->cfg.steps);
        cJSON_AddNumberToObject(o, "lr", s->cfg.lr);
        cJSON_AddNumberToObject(o, "rank", c->rank);
        cJSON_AddNumberToObject(o, "batch", c->batch);
        cJSON_AddNumberToObject(o, "seq", c->seq);
        cJSON_AddNumberToObject(o, "dim", (double)s->cfg.dim);
        cJSON_AddStringToObject(o, "aggregator", s->agg->name);
        cJSON_AddNumberToObject(o, "agg_seed", (double)(ac.seed >> 11)); /* exact in a JSON number */
        cJSON_AddNumberToObject(o, "ties_keep", s->cfg.agg_opts.ties_keep);
        cJSON_AddNumberToObject(o, "dare_p", s->cfg.agg_opts.dare_p);
        cJSON_AddBoolToObject(o, "secagg", sp != NULL);
        if (pass)
            cJSON_AddNumberToObject(o, "pass", pass);
        srv_engine_start_fields(s, o);
        dp_srv_start_json(s, o);
        if (sp) {
            cJSON *ms = cJSON_AddArrayToObject(o, "members");
            for (uint32_t k = 0; k < sp->n_clients; k++) {
                const srv_client *mc = &s->cl[sp->members[k].id];
                char kh[65];
                fp_hex_encode(kh, sizeof kh, mc->key, 32);
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "id", mc->id);
                cJSON_AddStringToObject(e, "key", kh);
                cJSON_AddNumberToObject(e, "weight", (double)mc->samples / maxs);
                cJSON_AddItemToArray(ms, e);
            }
            fp_hex_encode(seedhex, sizeof seedhex, sp->graph_seed, sizeof sp->graph_seed);
            cJSON_AddNumberToObject(o, "threshold", sp->threshold);
            cJSON_AddNumberToObject(o, "degree", sp->degree);
            cJSON_AddStringToObject(o, "graph_seed", seedhex);
            cJSON_AddNumberToObject(o, "clip", sp->ring.clip);
            cJSON_AddNumberToObject(o, "scale_bits", sp->ring.scale_bits);
            cJSON_AddNumberToObject(o, "vec_len", (double)sp->vec_len);
        }
        int rc = srv_send_json(s, c, s->round, FP_STAGE_CONFIG, FP_MSG_ROUND_START, o);
        cJSON_Delete(o);
        fp_msg_header h;
        fed_header(&h, s->session, s->round, FP_STAGE_CONFIG, FP_MSG_MODEL, FP_PAYLOAD_TENSOR, s->id.pk, ++s->seq);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (!rc)
            rc = fed_encode_f32(&buf, &len, &h, pass ? vec : s->global, s->cfg.dim, &s->id);
        if (!rc)
            rc = srv_queue(s, c, buf, len);
        if (rc)
            return fp_adderr(rc, "round %u: sending the round start to %s", s->round, c->name);
    }
    return 0;
}

static int make_params(fp_fed_server *s, fp_secagg_params *p, fp_secagg_member *mem, size_t nsel,
                       unsigned pass)
{
    memset(p, 0, sizeof *p);
    memcpy(p->session_id, s->session, 16);
    p->round = s->round;
    uint32_t n = 0;
    for (size_t i = 0; i < s->ncl; i++)
        if (s->cl[i].selected) {
            mem[n].id = s->cl[i].id;
            memcpy(mem[n].sign_pk, s->cl[i].key, 32);
            n++;
        }
    (void)nsel;
    p->members = mem;
    p->n_clients = n;
    uint32_t k = s->cfg.degree;
    if (!k) {
        if (n > 16) {
            uint32_t lg = 0;
            while ((1u << lg) < n)
                lg++;
            k = 2 * lg;
            if (k >= n - 1)
                k = 0;
        }
    }
    p->degree = k;
    uint32_t keff = k ? k : n - 1;
    p->threshold = s->cfg.threshold ? s->cfg.threshold : (keff + 1) / 2 + 1;
    if (p->threshold > keff + 1)
        p->threshold = keff + 1;
    randombytes_buf(p->graph_seed, sizeof p->graph_seed);
    fp_agg_ctx ac;
    agg_ctx(s, &ac, s->completed);
    p->vec_len = fp_agg_secure_len(s->agg, &ac, pass);
    p->ring.clip = s->cfg.clip;
    if (s->cfg.scale_bits) {
        p->ring.scale_bits = s->cfg.scale_bits;
    } else {
        int rc = fp_ring_max_scale_bits(&p->ring.scale_bits, s->cfg.clip, n);
        if (rc)
            return rc;
        if (p->ring.scale_bits > 24)
            p->ring.scale_bits = 24;
    }
    int rc = dp_srv_ring(s, p);
    return rc ? rc : fp_secagg_params_check(p);
}

/* The four SecAgg+ stages. Returns 0 with fsum filled, or FP_EABORT. */
static int secure_stages(fp_fed_server *s, const fp_secagg_params *sp, float *fsum, uint32_t *n_incl,
                         double *stage_ms)
{
    static const uint8_t stages[4] = {FP_STAGE_ADVERTISE, FP_STAGE_SHARE, FP_STAGE_MASKED, FP_STAGE_UNMASK};
    uint32_t *ids = malloc((sp->n_clients + 1) * sizeof *ids);
    if (!ids)
        return fp_seterr(FP_ENOMEM, "round %u: out of memory", s->round);
    int rc = 0;
    for (int st = 0; st < 4 && !rc; st++) {
        double t0 = fed_now_s();
        rc = set_stage(s, stages[st]);
        if (rc)
            break;
        srv_pump(s, fed_now_ms() + s->cfg.stage_timeout_ms, sa_done);
        if (atomic_load(&s->stop)) {
            rc = fp_seterr(FP_EABORT, "round %u: server stopping", s->round);
            break;
        }
        /* Whoever did not answer is out (the SecAgg server drops them too). */
        int closing = fp_secagg_server_stage(s->sa);
        rc = fp_secagg_server_close_stage(s->sa);
        if (rc) {
            rc = fp_adderr(FP_EABORT, "round %u: secure aggregation aborted at the %s stage",
                           s->round, fp_msg_stage_name(stages[st]));
            break;
        }
        (void)closing;
        if (st == 2) {
            uint32_t exp = 0, got = 0;
            /* After MASKED closes, the survivors are the unmask stage's expected set. */
            fp_secagg_server_pending(s->sa, &exp, &got);
            if (exp < s->cfg.quorum) {
                rc = fp_seterr(FP_EABORT, "round %u: %u masked inputs, below the quorum of %u", s->round, exp,
                               s->cfg.quorum);
                break;
            }
        }
        if (st < 3) {
            size_t cnt = 0;
            rc = fp_secagg_server_recipients(s->sa, ids, sp->n_clients, &cnt);
            for (size_t k = 0; !rc && k < cnt; k++) {
                srv_client *c = &s->cl[ids[k]];
                if (st == 2)
                    c->in_sum = 1; /* its masked input is in the sum */
                uint8_t *m = NULL;
                size_t ml = 0;
                rc = fp_secagg_server_message_for(s->sa, ids[k], &m, &ml);
                if (rc)
                    break;
                fp_msg_header h;
                fed_header(&h, s->session, s->round, stages[st + 1], FP_MSG_SA_BROADCAST, FP_PAYLOAD_BYTES,
                           s->id.pk, ++s->seq);
                uint8_t *buf = NULL;
                size_t len = 0;
                rc = fed_encode_bytes(&buf, &len, &h, m, ml, &s->id);
                free(m);
                if (!rc)
                    rc = srv_queue(s, c, buf, len);
            }
            /* Selected clients not among the recipients dropped at this stage. */
            for (size_t i = 0; i < s->ncl; i++) {
                if (!s->cl[i].selected)
                    continue;
                int found = 0;
                for (size_t k = 0; k < cnt; k++)
                    found |= ids[k] == s->cl[i].id;
                if (!found)
                    mark_missing(s, &s->cl[i], fp_msg_stage_name(stages[st]));
            }
        }
        stage_ms[stages[st]] = (fed_now_s() - t0) * 1e3;
    }
    if (!rc) {
        uint32_t *rsum = malloc(sp->vec_len * sizeof *rsum);
        rc = rsum ? fp_secagg_server_result(s->sa, rsum, fsum, sp->vec_len, n_incl)
                  : fp_seterr(FP_ENOMEM, "round %u: out of memory", s->round);
        free(rsum);
        if (rc)
            rc = fp_adderr(FP_EABORT, "round %u: no secure sum", s->round);
    }
    free(ids);
    return rc;
}

static void finish_report(fp_fed_server *s, fp_fed_round_report *rep, const uint64_t *sent0,
                          const uint64_t *recv0, double t0)
{
    rep->bytes_sent = rep->bytes_recv = 0;
    for (size_t i = 0; i < s->ncl; i++) {
        rep->bytes_sent += s->cl[i].link.bytes_sent - sent0[i];
        rep->bytes_recv += s->cl[i].link.bytes_recv - recv0[i];
    }
    rep->total_ms = (fed_now_s() - t0) * 1e3;
    rep->rejected = s->round_rejected;
}

static void send_round_end(fp_fed_server *s, uint32_t index, int status, uint32_t included, double loss)
{
    for (size_t i = 0; i < s->ncl; i++) {
        srv_client *c = &s->cl[i];
        if (!c->selected)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "round", s->round);
        cJSON_AddNumberToObject(o, "index", index);
        cJSON_AddStringToObject(o, "status", status ? "retry" : "ok");
        cJSON_AddNumberToObject(o, "included", included);
        cJSON_AddNumberToObject(o, "loss", isfinite(loss) ? loss : -1.0);
        srv_send_json(s, c, s->round, FP_STAGE_DONE, FP_MSG_ROUND_END, o);
        cJSON_Delete(o);
    }
}

static int enough_active(fp_fed_server *s)
{
    size_t need = s->cfg.min_clients > s->cfg.quorum ? s->cfg.min_clients : s->cfg.quorum;
    return srv_count_active(s) >= need;
}

/* The aggregator's secure sums, one SecAgg+ instance each. Pass 0 runs on
 * the round's parameters (sp, already broadcast). Before each later pass the
 * server tells the survivors of the earlier passes what the aggregator
 * reveals of their sums (ties: the elected signs) under a fresh wire round
 * (round keys are never reused), and runs SecAgg+ again among them. */
static int secure_passes(fp_fed_server *s, fp_secagg_params *sp, fp_secagg_member *mem, uint32_t index,
                         double maxs, float *delta, uint32_t *ninc, fp_fed_round_report *rep,
                         const fp_agg_ctx *ac)
{
    unsigned np = s->agg->secure_sums;
    float *sums[4] = {0};
    float *bc = NULL;
    int rc = np >= 1 && np <= 4 ? 0 : fp_seterr(FP_EINVAL, "aggregator %s: %u secure sums", s->agg->name, np);
    for (unsigned p = 0; !rc && p < np; p++) {
        if (p > 0) {
            size_t n = 0;
            for (size_t i = 0; i < s->ncl; i++) { /* only the survivors go on */
                s->cl[i].selected = s->cl[i].selected && s->cl[i].in_sum && s->cl[i].active;
                s->cl[i].in_sum = 0;
                n += s->cl[i].selected;
            }
            if (n < 2 || n < s->cfg.quorum) {
                rc = fp_seterr(FP_EABORT, "secure pass %u: %zu clients left, below the quorum of %u", p, n,
                               s->cfg.quorum);
                break;
            }
            bc = malloc((size_t)s->cfg.dim * sizeof *bc + 1);
            rc = bc ? fp_agg_broadcast(s->agg, bc, ac, p, (const float *const *)sums)
                    : fp_seterr(FP_ENOMEM, "out of memory");
            fp_secagg_server_free(s->sa);
            s->sa = NULL;
            s->round = s->next_round++;
            if (!rc)
                rc = srv_write_attempt(s, s->round);
            if (!rc)
                rc = make_params(s, sp, mem, n, p);
            if (!rc)
                rc = fp_secagg_server_new(&s->sa, sp);
            if (!rc)
                rc = set_stage(s, FP_STAGE_CONFIG);
            if (!rc)
                rc = broadcast_start(s, index, sp, maxs, p, bc);
            free(bc);
            bc = NULL;
            if (rc)
                break;
        }
        sums[p] = calloc(sp->vec_len + 1, sizeof(float));
        rc = sums[p] ? secure_stages(s, sp, sums[p], ninc, rep->stage_ms)
                     : fp_seterr(FP_ENOMEM, "round %u: out of memory", s->round);
    }
    if (!rc) {
        double ta = fed_now_s();
        rc = fp_agg_finish_secure(s->agg, delta, ac, (const float *const *)sums);
        rep->stage_ms[FP_STAGE_DONE] = (fed_now_s() - ta) * 1e3;
    }
    for (unsigned p = 0; p < 4; p++)
        free(sums[p]);
    return rc;
}

int srv_run_round(fp_fed_server *s, fp_fed_round_report *rep)
{
    memset(rep, 0, sizeof *rep);
    for (int i = 0; i < 8; i++)
        rep->stage_ms[i] = 0;
    rep->loss = NAN;
    double t0 = fed_now_s();
    uint32_t index = s->completed;
    s->round = s->next_round++;
    s->round_rejected = 0;
    rep->round = s->round;
    rep->index = index;
    clear_round(s);
    uint64_t *sent0 = calloc(s->ncl + 1, sizeof *sent0), *recv0 = calloc(s->ncl + 1, sizeof *recv0);
    float *delta = calloc(s->cfg.dim + 1, sizeof(float));
    fp_secagg_member *mem = calloc(s->ncl + 1, sizeof *mem);
    const float **rows = NULL;
    fp_agg_client *w = NULL;
    uint8_t *keep = NULL;
    fp_agg_ctx ac;
    agg_ctx(s, &ac, index);
    ac.seed >>= 11; /* as the clients get it */
    s->round_refused[0] = '\0';
    int rc = 0;
    if (!sent0 || !recv0 || !delta || !mem) {
        rc = fp_seterr(FP_ENOMEM, "round %u: out of memory", s->round);
        goto out;
    }
    for (size_t i = 0; i < s->ncl; i++) {
        sent0[i] = s->cl[i].link.bytes_sent;
        recv0[i] = s->cl[i].link.bytes_recv;
    }
    rc = srv_write_attempt(s, s->round);
    if (!rc)
        rc = set_stage(s, FP_STAGE_JOIN);
    if (rc)
        goto out;
    /* Registration: wait (bounded) for enough live clients. */
    double tj = fed_now_s();
    srv_pump(s, fed_now_ms() + s->cfg.register_timeout_ms, enough_active);
    rep->stage_ms[FP_STAGE_JOIN] = (fed_now_s() - tj) * 1e3;
    if (!enough_active(s)) {
        rc = fp_seterr(FP_EABORT, "round %u: only %zu clients available, need %u", s->round,
                       srv_count_active(s), s->cfg.min_clients > s->cfg.quorum ? s->cfg.min_clients : s->cfg.quorum);
        goto out;
    }
    double tc = fed_now_s();
    size_t nsel = select_clients(s, index);
    rep->selected = (uint32_t)nsel;
    double maxs = 1;
    for (size_t i = 0; i < s->ncl; i++)
        if (s->cl[i].selected && (double)s->cl[i].samples > maxs)
            maxs = (double)s->cl[i].samples;
    fp_secagg_params sp;
    int secure = s->cfg.secagg;
    rc = dp_srv_plan(s, maxs);
    if (rc)
        goto out;
    if (secure) {
        rc = nsel >= 2 ? make_params(s, &sp, mem, nsel, 0)
                       : fp_seterr(FP_EABORT, "secure aggregation needs at least 2 clients, %zu selected", nsel);
        if (!rc)
            rc = fp_secagg_server_new(&s->sa, &sp);
        if (rc) {
            rc = fp_adderr(FP_EABORT, "round %u", s->round);
            goto out;
        }
    }
    rc = set_stage(s, FP_STAGE_CONFIG);
    if (!rc)
        rc = broadcast_start(s, index, secure ? &sp : NULL, maxs, 0, NULL);
    if (rc)
        goto out;
    rep->stage_ms[FP_STAGE_CONFIG] = (fed_now_s() - tc) * 1e3;
    if (!secure) {
        double tt = fed_now_s();
        rc = set_stage(s, FP_STAGE_TRAIN);
        if (rc)
            goto out;
        srv_pump(s, fed_now_ms() + s->cfg.stage_timeout_ms, plain_done);
        rep->stage_ms[FP_STAGE_TRAIN] = (fed_now_s() - tt) * 1e3;
        size_t K = 0;
        rows = calloc(s->ncl + 1, sizeof *rows);
        w = calloc(s->ncl + 1, sizeof *w);
        keep = calloc(s->ncl + 1, 1);
        if (!rows || !w || !keep) {
            rc = fp_seterr(FP_ENOMEM, "round %u: out of memory", s->round);
            goto out;
        }
        for (size_t i = 0; i < s->ncl; i++) {
            srv_client *c = &s->cl[i];
            if (!c->selected)
                continue;
            if (!(c->got_meta && c->got_update)) {
                mark_missing(s, c, "train");
                continue;
            }
            rows[K] = c->update;
            w[K].weight = (double)c->samples;
            w[K].rank = c->rank;
            w[K].steps = c->rsteps;
            w[K].id = c->id;
            w[K++].name = c->name;
        }
        /* Robust screening: non-finite updates, and norms far above the cohort's. */
        size_t kept = 0;
        rc = fp_agg_screen(keep, &kept, s->round_refused, sizeof s->round_refused, &ac, rows, NULL, w, K,
                           fp_agg_reject_k(s->agg, &s->cfg.agg_opts));
        if (rc)
            goto out;
        size_t K0 = K;
        K = 0;
        for (size_t k = 0; k < K0; k++) {
            srv_client *c = NULL;
            for (size_t i = 0; i < s->ncl && !c; i++)
                if (s->cl[i].id == w[k].id)
                    c = &s->cl[i];
            if (!keep[k])
                continue; /* logged and listed by the screen */
            c->in_sum = 1;
            rows[K] = rows[k];
            w[K++] = w[k];
        }
        if (K < s->cfg.quorum) {
            rc = fp_seterr(FP_EABORT, "round %u: %zu updates arrived, below the quorum of %u", s->round, K,
                           s->cfg.quorum);
            goto out;
        }
        double ta = fed_now_s();
        /* The rows are the server's own buffers (the received envelopes). */
        rc = dp_srv_plain_rows(s, (float *const *)(void *)rows, K);
        if (!rc)
            rc = fp_agg_aggregate_plain(s->agg, delta, &ac, rows, w, K);
        rep->stage_ms[FP_STAGE_DONE] = (fed_now_s() - ta) * 1e3;
        rep->included = (uint32_t)K;
    } else {
        uint32_t ninc = 0;
        ac.clip = sp.ring.clip;
        rc = secure_passes(s, &sp, mem, index, maxs, delta, &ninc, rep, &ac);
        rep->included = ninc;
        if (rc)
            rc = fp_adderr(FP_EABORT, "round %u", s->round);
    }
    if (!rc)
        rc = dp_srv_finish(s, delta, secure ? &sp : NULL);
    if (rc)
        goto out;
    /* The server's optimizer (FedAvg, FedAvgM, FedAdam, FedYogi) on the aggregate. */
    fed_server_opt_step(&s->cfg, s->global, s->velocity, s->opt_m, s->opt_v, delta, s->cfg.dim);
    s->completed++;
    rc = srv_write_checkpoint(s);
    if (!rc)
        srv_engine_round_done(s);
out:
    /* Who took part, the loss, and the report. */
    {
        double lw = 0, ls = 0;
        for (size_t i = 0; i < s->ncl; i++) {
            srv_client *c = &s->cl[i];
            if (!c->selected)
                continue;
            int in = c->in_sum;
            append_name(in ? rep->joined : rep->dropped, sizeof rep->joined, c->name);
            if (in && c->got_meta && isfinite(c->loss)) {
                ls += c->loss * (double)c->samples;
                lw += (double)c->samples;
            }
        }
        rep->loss = lw > 0 ? ls / lw : NAN;
        rep->status = rc == 0 ? 0 : FP_EABORT;
        snprintf(rep->refused, sizeof rep->refused, "%s", s->round_refused);
        dp_srv_report(s, rep, rc == 0);
        if (rc)
            fp_warn("fp serve: round %u (index %u) not complete, will retry: %s", s->round, index, fp_errmsg());
        s->st.rounds_ok += rc == 0;
        s->st.rounds_failed += rc != 0;
        send_round_end(s, index, rc, rep->included, rep->loss);
        if (sent0 && recv0)
            finish_report(s, rep, sent0, recv0, t0);
    }
    clear_round(s);
    free(sent0);
    free(recv0);
    free(delta);
    free(mem);
    free(rows);
    free(w);
    free(keep);
    return rc == 0 ? 0 : (rc == FP_EABORT || rc == FP_ETIMEOUT || rc == FP_ENET ? FP_EABORT : rc);
}
