/* Slow links and slow clients.
 *
 * 1. A large proxy over a link whose clients re-HELLO on the slightest silence.
 *
 * Seen on a starved machine (a 27 MB proxy bundle, six clients, CPU shared with
 * other jobs): every pause of more than idle_hello_ms made a client reset its
 * link and say HELLO again without the proxy; the client threw away the part it
 * had received, and the server queued one more full copy per HELLO: 9 GB sent in
 * one round, which never completed. Here idle_hello_ms is 1 ms, so the clients
 * re-HELLO many times while a 24 MiB proxy is in flight. A client must keep
 * what it has received and the server must not queue the proxy again while its
 * copy is still queued: each client receives it about once, and the round
 * completes.
 *
 * 2. A client whose local round takes longer than its give_up_ms: the time it
 * spent training is not the server's silence. It used to quit right after
 * training (every client of a starved benchmark run did, and the round died). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "fed_fixture.h"

#define PROXY_BYTES ((size_t)24 << 20)

typedef struct slow_trainer {
    fp_fed_trainer inner;
    int ms;
} slow_trainer;

static int slow_train(void *ctx, float *update, uint64_t *samples, float *loss, const float *global, size_t dim,
                      const fp_fed_task *task)
{
    slow_trainer *t = ctx;
    struct timespec ts = {t->ms / 1000, (long)(t->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return t->inner.train(t->inner.ctx, update, samples, loss, global, dim, task);
}

static int slow_last_steps(void *ctx)
{
    slow_trainer *t = ctx;
    return t->inner.last_steps ? t->inner.last_steps(t->inner.ctx) : 0;
}

static void wrap_slow(void *ctx, int i, fx_client *c)
{
    slow_trainer *t = (slow_trainer *)ctx + i;
    t->inner = c->cfg.trainer;
    c->cfg.trainer.ctx = t;
    c->cfg.trainer.train = slow_train;
    c->cfg.trainer.last_steps = c->cfg.trainer.last_steps ? slow_last_steps : NULL;
    c->cfg.trainer.destroy = NULL; /* the fixture destroys the stand-in itself */
}

static void test_slow_training(int secure)
{
    fx f;
    fx_init(&f, secure ? "fed-slow-train-sa" : "fed-slow-train", 3, 64, 0.4f);
    f.sc.rounds = 2;
    f.sc.secagg = secure;
    f.sc.lr = 0.5f;
    f.sc.quorum = 3;
    f.sc.stage_timeout_ms = 10000;
    for (int i = 0; i < f.n; i++) {
        f.c[i].cfg.give_up_ms = 2500; /* long enough for a loaded machine to register */
        f.c[i].cfg.idle_hello_ms = 100;
    }
    slow_trainer st[FX_MAX];
    for (int i = 0; i < f.n; i++)
        st[i].ms = 6000; /* 2.4 x give_up_ms */
    fx_hooks h = {.wrap = wrap_slow, .wrap_ctx = st};
    CHECK_OK(fx_run_with(&f, &h));
    CHECKF(f.completed == 2, "slow training (secure %d): %u of 2 rounds", secure, f.completed);
    float *g = malloc(f.dim * sizeof(float));
    fx_expected(g, &f, 2, (int[][FX_MAX]){{1, 1, 1}, {1, 1, 1}}, 0.5f, 1);
    double e = fx_maxdiff(f.global, g, f.dim);
    CHECKF(e <= (secure ? 1e-4 : 1e-6), "slow training (secure %d): max |global - direct| = %g", secure, e);
    free(g);
    fx_free(&f);
}

static void test_large_proxy(void)
{
    fx f;
    fx_init(&f, "fed-slow-link", 3, 64, 0.4f);
    f.sc.rounds = 1;
    f.sc.stage_timeout_ms = 20000;
    f.sc.register_timeout_ms = 60000;
    const char *dir = fp_test_tmpdir("fed-slow-link");
    snprintf(f.sc.proxy, sizeof f.sc.proxy, "%s/proxy.bin", dir);
    uint8_t *p = malloc(PROXY_BYTES);
    randombytes_buf(p, PROXY_BYTES);
    CHECK_OK(fp_write_file_atomic(f.sc.proxy, p, PROXY_BYTES, 0600));
    free(p);
    for (int i = 0; i < f.n; i++) {
        f.c[i].cfg.idle_hello_ms = 1;
        f.c[i].cfg.give_up_ms = 60000;
    }
    CHECK_OK(fx_run(&f));
    CHECK(f.completed == 1);
    for (int i = 0; i < f.n; i++) {
        const fp_fed_client_result *r = &f.c[i].res;
        CHECKF(r->got_proxy, "client %d has the proxy", i);
        CHECKF(r->bytes_recv < PROXY_BYTES + PROXY_BYTES / 2,
               "client %d received %.1f MiB for a %.0f MiB proxy (each copy queued again?)", i,
               r->bytes_recv / 1048576.0, PROXY_BYTES / 1048576.0);
    }
    fx_free(&f);
}

int main(void)
{
    test_large_proxy();
    test_slow_training(0);
    test_slow_training(1);
    return fp_test_report("test_fed_slow_link");
}
