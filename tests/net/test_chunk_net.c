/* A large payload through the real transport with the connection dropped
 * halfway: upload (client -> server) and download (server -> client), each
 * resuming from the last acknowledged chunk, and the received bytes hashing
 * to what was sent. Size from FP_CHUNK_TEST_MIB (24 by default; 200 in the
 * slow variant). Also reports loopback throughput without a drop. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "fedproxy/chunk.h"
#include "fp_test.h"

static fp_identity server_id, alice;
static fp_server *srv;
static uint8_t *payload;
static size_t payload_len;

/* Long enough that a loaded machine (ASan, parallel builds) never trips the
 * no-progress probe by accident, so the clean run really is clean; the drop
 * runs do not wait for it: the client end notices its own reconnect at once. */
#define ACK_TIMEOUT_MS 10000

typedef struct job {
    int upload; /* server receives (1) or sends (0) */
    uint64_t id;
    int rc;
    void *got;
    size_t got_len;
    fp_chunk_stats st;
} job;

static void *server_main(void *arg)
{
    job *j = arg;
    fp_chunk_opts o;
    fp_chunk_opts_default(&o);
    o.ack_timeout_ms = ACK_TIMEOUT_MS;
    o.max_total = (uint64_t)payload_len;
    if (j->upload) {
        j->rc = fp_chunk_server_recv(srv, alice.pk, j->id, &j->got, &j->got_len, &o, 60000, &j->st);
    } else {
        /* the client says hello first: the server can only reach a client it has heard from */
        uint8_t peer[32];
        void *hello = NULL;
        size_t hl = 0;
        j->rc = fp_server_recv(srv, peer, &hello, &hl, 10000);
        free(hello);
        if (!j->rc)
            j->rc = fp_chunk_server_send(srv, alice.pk, j->id, payload, payload_len, &o, 60000, &j->st);
    }
    if (j->rc)
        fprintf(stderr, "server side: %s\n", fp_errmsg());
    return NULL;
}

typedef struct dropper {
    fp_client *c;
    uint64_t at; /* chunks held by the receiver when the link was dropped */
} dropper;

/* Drops the client's connection once the transfer is half done. */
static int drop_halfway(void *ctx, uint64_t done, uint64_t n)
{
    dropper *d = ctx;
    if (!d->at && done >= n / 2) {
        d->at = done;
        CHECK_OK(fp_client_reconnect(d->c));
    }
    return 0;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void run(fp_client *c, int upload, int drop, uint64_t id)
{
    job j = {.upload = upload, .id = id};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, server_main, &j) == 0);
    dropper d = {.c = c};
    fp_chunk_opts o;
    fp_chunk_opts_default(&o);
    o.ack_timeout_ms = ACK_TIMEOUT_MS;
    o.max_total = (uint64_t)payload_len;
    if (drop) {
        o.progress = drop_halfway;
        o.progress_ctx = &d;
    }
    fp_chunk_stats cst;
    memset(&cst, 0, sizeof cst);
    void *got = NULL;
    size_t got_len = 0;
    double t0 = seconds();
    if (upload) {
        CHECK_OK(fp_chunk_client_send(c, id, payload, payload_len, &o, 60000, &cst));
    } else {
        CHECK_OK(fp_client_send(c, "ready", 5, 5000));
        CHECK_OK(fp_chunk_client_recv(c, id, &got, &got_len, &o, 60000, &cst));
    }
    pthread_join(th, NULL);
    double dt = seconds() - t0;
    CHECK_OK(j.rc);
    if (upload) {
        got = j.got;
        got_len = j.got_len;
    }
    uint8_t h1[32], h2[32];
    crypto_generichash(h1, 32, payload, payload_len, NULL, 0);
    crypto_generichash(h2, 32, got, got_len, NULL, 0);
    CHECK(got_len == payload_len && memcmp(h1, h2, 32) == 0);
    free(got);
    const fp_chunk_stats *tx = upload ? &cst : &j.st, *rx = upload ? &j.st : &cst;
    uint64_t n = tx->n_chunks;
    printf("%s %s: %.1f MiB in %.2f s = %.0f MiB/s; chunks %llu, DATA frames sent %llu, "
           "received %llu, resumes %llu from chunk %llu (dropped at %llu)\n",
           upload ? "upload" : "download", drop ? "with a drop halfway" : "clean",
           payload_len / 1048576.0, dt, payload_len / 1048576.0 / dt, (unsigned long long)n,
           (unsigned long long)tx->data_frames, (unsigned long long)rx->data_frames,
           (unsigned long long)tx->resumes, (unsigned long long)tx->resume_from,
           (unsigned long long)d.at);
    if (drop) {
        CHECK(d.at >= n / 2 && d.at < n);
        /* resumed from where the receiver was, at least the chunks acknowledged
         * before the drop, not from zero */
        CHECK(tx->resumes >= 1);
        CHECKF(tx->resume_from >= d.at && tx->resume_from > 0 && tx->resume_from < n,
               "resume_from %llu, acked at drop %llu", (unsigned long long)tx->resume_from,
               (unsigned long long)d.at);
        /* resending from zero would cost another n/2 chunks; resuming costs at
         * most the window in flight when the link died (plus a few re-ACKed) */
        CHECKF(tx->data_frames <= n + 2 * FP_CHUNK_WINDOW_DEFAULT, "sent %llu DATA frames for %llu",
               (unsigned long long)tx->data_frames, (unsigned long long)n);
    } else {
        CHECK(tx->data_frames == n && tx->resumes == 0);
    }
}

int main(void)
{
    const char *mib_s = getenv("FP_CHUNK_TEST_MIB");
    long mib = mib_s ? strtol(mib_s, NULL, 10) : 24;
    if (mib < 4 || mib > 1024)
        mib = 24;
    payload_len = (size_t)mib << 20;
    payload_len += 12345; /* a short last chunk */
    payload = malloc(payload_len);
    fp_test_seed(7);
    for (size_t i = 0; i < payload_len; i += 4) {
        uint32_t r = fp_test_u32();
        memcpy(payload + i, &r, payload_len - i < 4 ? payload_len - i : 4);
    }
    unsigned char seed[32];
    memset(seed, 61, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&server_id, seed));
    memset(seed, 62, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&alice, seed));
    fp_allowlist *allow = NULL;
    CHECK_OK(fp_allowlist_from_keys(&allow, (const uint8_t(*)[32])alice.pk, 1));
    fp_net_opts no;
    fp_net_opts_default(&no);
    no.reconnect_ms = 50;
    no.linger_ms = 0;
    CHECK_OK(fp_server_create(&srv, "tcp://127.0.0.1:0", &server_id, allow, &no));
    fp_allowlist_free(allow);
    char ep[256];
    CHECK_OK(fp_server_endpoint(srv, ep, sizeof ep));
    fp_client *c = NULL;
    CHECK_OK(fp_client_create(&c, ep, server_id.pk, &alice, &no));
    CHECK_OK(fp_client_wait_ready(c, 5000));

    run(c, 1, 0, 1);
    run(c, 1, 1, 2);
    run(c, 0, 1, 3);

    fp_client_destroy(c);
    fp_server_destroy(srv);
    free(payload);
    fp_identity_wipe(&server_id);
    fp_identity_wipe(&alice);
    return fp_test_report("test_chunk_net");
}
