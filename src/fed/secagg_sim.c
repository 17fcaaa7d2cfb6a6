/* A whole SecAgg+ round in one thread: the server and every client exchange
 * their byte buffers directly. Used by tests and by `fp bench fed`, so the
 * server and client times are measured separately. */
#include "secagg_internal.h"
#include "error_internal.h"

#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct sim {
    fp_secagg_server *srv;
    fp_secagg_client **cl;
    const fp_secagg_params *p;
    const uint8_t *drop;
    const float *const *inputs;
    uint32_t *ids;
    fp_secagg_sim_stats st;
} sim;

/* Index in p->members of id. */
static int64_t member_of(const fp_secagg_params *p, uint32_t id)
{
    for (uint32_t i = 0; i < p->n_clients; i++)
        if (p->members[i].id == id)
            return i;
    return -1;
}

/* Sends every recipient of the closed stage its message, runs the client's
 * next step unless it drops out before answering, delivers the answer. */
static int exchange(sim *S, uint8_t stop_at)
{
    size_t count = 0;
    double t0 = now_s();
    int rc = fp_secagg_server_recipients(S->srv, S->ids, S->p->n_clients, &count);
    S->st.server_s += now_s() - t0;
    if (rc)
        return rc;
    for (size_t r = 0; r < count; r++) {
        int64_t i = member_of(S->p, S->ids[r]);
        if (S->drop && S->drop[i] == stop_at)
            continue;
        uint8_t *down = NULL, *up = NULL;
        size_t down_len = 0, up_len = 0;
        t0 = now_s();
        rc = fp_secagg_server_message_for(S->srv, S->ids[r], &down, &down_len);
        S->st.server_s += now_s() - t0;
        if (rc)
            return rc;
        S->st.bytes_down += down_len;
        t0 = now_s();
        fp_secagg_client *c = S->cl[i];
        if (stop_at == FP_SECAGG_DROP_BEFORE_SHARES)
            rc = fp_secagg_client_share_keys(c, &up, &up_len, down, down_len);
        else if (stop_at == FP_SECAGG_DROP_BEFORE_MASKED)
            rc = fp_secagg_client_masked_input(c, &up, &up_len, down, down_len, S->inputs[i],
                                               S->p->vec_len, NULL);
        else
            rc = fp_secagg_client_unmask(c, &up, &up_len, down, down_len);
        S->st.clients_s += now_s() - t0;
        free(down);
        if (rc == FP_EABORT) /* this client gives up; the server sees a dropout */
            continue;
        if (rc)
            return fp_adderr(rc, "client %u", S->ids[r]);
        S->st.bytes_up += up_len;
        t0 = now_s();
        rc = fp_secagg_server_receive(S->srv, up, up_len);
        S->st.server_s += now_s() - t0;
        free(up);
        if (rc)
            return rc;
    }
    t0 = now_s();
    rc = fp_secagg_server_close_stage(S->srv);
    S->st.server_s += now_s() - t0;
    return rc;
}

int fp_secagg_sim_round(uint32_t *sum, float *fsum, fp_secagg_sim_stats *stats,
                        const fp_secagg_params *p, const fp_identity *identities,
                        const float *const *inputs, const uint8_t *drop)
{
    if (!sum || !p || !identities || !inputs)
        return fp_seterr(FP_EINVAL, "fp_secagg_sim_round: NULL argument");
    int rc = fp_secagg_params_check(p);
    if (rc)
        return rc;
    sim S = {0};
    S.p = p;
    S.drop = drop;
    S.inputs = inputs;
    S.cl = calloc(p->n_clients, sizeof *S.cl);
    S.ids = malloc(sizeof *S.ids * p->n_clients);
    if (!S.cl || !S.ids) {
        rc = fp_seterr(FP_ENOMEM, "secagg sim: out of memory");
        goto done;
    }
    double t0 = now_s();
    rc = fp_secagg_server_new(&S.srv, p);
    S.st.server_s += now_s() - t0;
    if (rc)
        goto done;
    for (uint32_t i = 0; i < p->n_clients && !rc; i++) {
        t0 = now_s();
        rc = fp_secagg_client_new(&S.cl[i], p, p->members[i].id, &identities[i]);
        S.st.clients_s += now_s() - t0;
    }
    /* Stage 0 has no server message before it. */
    for (uint32_t i = 0; i < p->n_clients && !rc; i++) {
        if (drop && drop[i] == FP_SECAGG_DROP_BEFORE_ADVERTISE)
            continue;
        uint8_t *up = NULL;
        size_t up_len = 0;
        t0 = now_s();
        rc = fp_secagg_client_advertise(S.cl[i], &up, &up_len);
        S.st.clients_s += now_s() - t0;
        if (rc)
            break;
        S.st.bytes_up += up_len;
        t0 = now_s();
        rc = fp_secagg_server_receive(S.srv, up, up_len);
        S.st.server_s += now_s() - t0;
        free(up);
    }
    if (!rc) {
        t0 = now_s();
        rc = fp_secagg_server_close_stage(S.srv);
        S.st.server_s += now_s() - t0;
    }
    if (!rc)
        rc = exchange(&S, FP_SECAGG_DROP_BEFORE_SHARES);
    if (!rc)
        rc = exchange(&S, FP_SECAGG_DROP_BEFORE_MASKED);
    if (!rc)
        rc = exchange(&S, FP_SECAGG_DROP_BEFORE_UNMASK);
    if (!rc) {
        t0 = now_s();
        rc = fp_secagg_server_result(S.srv, sum, fsum, p->vec_len, &S.st.n_included);
        S.st.server_s += now_s() - t0;
    }
done:
    for (uint32_t i = 0; S.cl && i < p->n_clients; i++)
        fp_secagg_client_free(S.cl[i]);
    fp_secagg_server_free(S.srv);
    free(S.cl);
    free(S.ids);
    if (stats)
        *stats = S.st;
    return rc;
}
