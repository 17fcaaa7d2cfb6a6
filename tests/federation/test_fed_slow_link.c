/* A large proxy over a link whose clients re-HELLO on the slightest silence.
 *
 * Seen on a starved machine (a 27 MB proxy bundle, six clients, CPU shared with
 * other jobs): every pause of more than idle_hello_ms made a client reset its
 * link and say HELLO again without the proxy; the client threw away the part it
 * had received, and the server queued one more full copy per HELLO: 9 GB sent in
 * one round, which never completed. Here idle_hello_ms is 1 ms, so the clients
 * re-HELLO many times while a 24 MiB proxy is in flight. A client must keep
 * what it has received and the server must not queue the proxy again while its
 * copy is still queued: each client receives it about once, and the round
 * completes. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fed_fixture.h"

#define PROXY_BYTES ((size_t)24 << 20)

int main(void)
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
    return fp_test_report("test_fed_slow_link");
}
