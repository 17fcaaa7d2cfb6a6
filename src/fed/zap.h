/* The server's ZAP authentication thread (internal; see zap.c). */
#ifndef FP_ZAP_H
#define FP_ZAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "fedproxy/transport.h"

typedef struct fp_zap {
    void *sock;
    pthread_t thread;
    int running;
    const fp_allowlist *allow; /* borrowed from the server, outlives the thread */
    _Atomic uint64_t accepted, refused;
    int64_t last_warn_ms; /* ZAP thread only */
} fp_zap;

/* Binds the handler in ctx and starts its thread. It stops when the context is
 * shut down (zmq_ctx_shutdown); then call fp_zap_join. */
int fp_zap_start(fp_zap *z, void *ctx, const fp_allowlist *allow);
void fp_zap_join(fp_zap *z);

#endif
