/* Internals shared by the transport files (allowlist.c, zap.c, transport.c, chunk.c). */
#ifndef FP_NET_INTERNAL_H
#define FP_NET_INTERNAL_H

#include <stdint.h>

#include "fedproxy/transport.h"

/* A deep copy (the server keeps its own, so the caller may free theirs). */
int fp_allowlist_dup(fp_allowlist **out, const fp_allowlist *a);

/* Index (as fp_allowlist_key) of the entry whose Ed25519 key converts to the
 * X25519 key curve, or -1. This is how the ZAP handler maps a CURVE client key
 * back to the identity the allow-list names. */
long fp_allowlist_find_curve(const fp_allowlist *a, const uint8_t curve[32]);

/* "3f2a9c01b2.." style short key for messages: out needs 20 bytes. */
void fp_net_keyname(char out[20], const uint8_t key[32]);

/* Milliseconds on the monotonic clock. */
int64_t fp_net_now_ms(void);

#endif
