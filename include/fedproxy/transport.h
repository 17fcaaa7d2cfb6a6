/* fedproxy: the encrypted, authenticated transport between server and clients.
 *
 * ZeroMQ: the server binds a ROUTER socket, each client connects a DEALER. Every
 * connection uses CURVE (X25519 + XSalsa20-Poly1305): the server's CURVE key is
 * its Ed25519 identity converted to Curve25519, and clients pin it (a client
 * that pins another key never completes the handshake). Clients authenticate
 * with their own converted identity; a ZAP handler thread inside the server
 * admits only keys derived from the allow-list (clients.json, below) and names
 * each connection by the client's Ed25519 public key (ZAP User-Id), so every
 * frame the server receives carries the authenticated sender key, which the
 * message guard compares with the envelope's sender.
 *
 * Frames are opaque byte strings of at most opts.max_msg_size bytes (enforced by
 * ZMQ_MAXMSGSIZE on receipt: a peer sending more is disconnected). Larger
 * payloads go through the chunked transfer (chunk.h). Queues are bounded by the
 * send/receive high-water marks; nothing else is buffered.
 *
 * clients.json, the allow-list: a JSON object
 *   { "version": 1,
 *     "clients": [ { "name": "lab-board-1", "key": "<64 hex digits>" }, ... ] }
 * "key" is the client's Ed25519 public key (its identity.pub). "name" is an
 * optional label (1..64 printable ASCII characters) used in log messages. No
 * other fields; no key twice; every key must be a valid Ed25519 point; at most
 * FP_ALLOWLIST_MAX entries; the file at most FP_ALLOWLIST_FILE_MAX bytes.
 *
 * Ownership: each object is created and destroyed by the caller; received
 * frames are malloc'd and freed by the caller with free(). Threading: an
 * fp_server or fp_client is used by one thread at a time (ZeroMQ sockets are
 * not thread-safe); distinct objects may live in distinct threads. The server's
 * ZAP thread is internal. An fp_allowlist is read-only after loading and may be
 * shared.
 */
#ifndef FEDPROXY_TRANSPORT_H
#define FEDPROXY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/identity.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_NET_KEY_BYTES 32u /* Ed25519 public key naming a peer */
#define FP_ALLOWLIST_MAX 100000u
#define FP_ALLOWLIST_FILE_MAX (16u << 20)
#define FP_ALLOWLIST_NAME_MAX 64u
/* The ZAP domain the server uses; ZAP requests for other domains are refused. */
#define FP_NET_ZAP_DOMAIN "fedproxy"

/* Defaults of fp_net_opts (fp_net_opts_default). */
#define FP_NET_MAX_MSG_DEFAULT ((size_t)4 << 20) /* 4 MiB: a 1 MiB chunk with room to spare */
#define FP_NET_HWM_DEFAULT 32                    /* frames queued per peer and direction */
#define FP_NET_LINGER_MS_DEFAULT 200
#define FP_NET_RECONNECT_MS_DEFAULT 100
#define FP_NET_RECONNECT_MAX_MS_DEFAULT 5000
#define FP_NET_HEARTBEAT_MS_DEFAULT 5000
#define FP_NET_HEARTBEAT_TIMEOUT_MS_DEFAULT 15000
#define FP_NET_HANDSHAKE_MS_DEFAULT 10000

typedef struct fp_net_opts {
    size_t max_msg_size;      /* ZMQ_MAXMSGSIZE: largest frame accepted */
    int hwm;                  /* ZMQ_SNDHWM and ZMQ_RCVHWM */
    int linger_ms;            /* ZMQ_LINGER: how long close waits for unsent frames */
    int reconnect_ms;         /* ZMQ_RECONNECT_IVL (client) */
    int reconnect_max_ms;     /* ZMQ_RECONNECT_IVL_MAX (client, exponential backoff cap) */
    int heartbeat_ms;         /* ZMQ_HEARTBEAT_IVL: ZMTP PING interval */
    int heartbeat_timeout_ms; /* ZMQ_HEARTBEAT_TIMEOUT (and the client's ZMQ_HEARTBEAT_TTL) */
    int handshake_ms;         /* ZMQ_HANDSHAKE_IVL: a CURVE handshake must finish within it */
} fp_net_opts;

void fp_net_opts_default(fp_net_opts *o);

/* ---- allow-list -------------------------------------------------------- */
typedef struct fp_allowlist fp_allowlist;

/* Loads clients.json (format above). FP_ENOTFOUND, FP_EIO, FP_EFORMAT (naming
 * the entry and the problem), FP_ECRYPTO for a key that is not an Ed25519 point. */
int fp_allowlist_load(fp_allowlist **out, const char *path);
/* The same from text; what names it in messages. */
int fp_allowlist_parse(fp_allowlist **out, const char *json, size_t len, const char *what);
/* From raw keys (names empty). Same checks as the file. */
int fp_allowlist_from_keys(fp_allowlist **out, const uint8_t (*keys)[FP_NET_KEY_BYTES], size_t n);
void fp_allowlist_free(fp_allowlist *a);
size_t fp_allowlist_count(const fp_allowlist *a);
/* The i-th key / name ("" if none); NULL if i is out of range. */
const uint8_t *fp_allowlist_key(const fp_allowlist *a, size_t i);
const char *fp_allowlist_name(const fp_allowlist *a, size_t i);
/* Index of key, or -1. */
long fp_allowlist_find(const fp_allowlist *a, const uint8_t key[FP_NET_KEY_BYTES]);

/* ---- server ------------------------------------------------------------ */
typedef struct fp_server fp_server;

/* Binds endpoint ("tcp://127.0.0.1:0" picks a free port; see fp_server_endpoint)
 * with CURVE from id and starts the ZAP thread admitting the keys of allow
 * (copied). opts NULL = defaults. FP_ENET if the bind fails. */
int fp_server_create(fp_server **out, const char *endpoint, const fp_identity *id,
                     const fp_allowlist *allow, const fp_net_opts *opts);
/* Closes the socket, stops the ZAP thread. NULL allowed. */
void fp_server_destroy(fp_server *s);
/* The endpoint actually bound, e.g. "tcp://127.0.0.1:41234". */
int fp_server_endpoint(const fp_server *s, char *out, size_t out_cap);

/* Receives one frame from any client, waiting up to timeout_ms (-1 = forever).
 * peer gets the sender's authenticated Ed25519 key; *data (malloc'd, caller
 * frees) and *len the frame. FP_ETIMEOUT if nothing came; FP_EPROTO (peer
 * filled, frame dropped) for a multi-frame message; FP_EAUTH (frame dropped)
 * for a frame without an allow-listed User-Id, which our ZAP handler never
 * lets happen; FP_ENET for socket errors. */
int fp_server_recv(fp_server *s, uint8_t peer[FP_NET_KEY_BYTES], void **data, size_t *len,
                   int timeout_ms);
/* Sends one frame to the client with key peer, on the connection it last sent
 * from. FP_ENET if that client has no live connection (it never sent, or
 * disconnected), FP_ETIMEOUT if its queue stayed full for timeout_ms. */
int fp_server_send(fp_server *s, const uint8_t peer[FP_NET_KEY_BYTES], const void *data, size_t len,
                   int timeout_ms);

/* Counters of the ZAP handler, for logs and tests. */
typedef struct fp_server_stats {
    uint64_t zap_accepted; /* handshakes admitted */
    uint64_t zap_refused;  /* handshakes refused (key not on the allow-list, wrong domain...) */
} fp_server_stats;
void fp_server_get_stats(const fp_server *s, fp_server_stats *out);

/* ---- client ------------------------------------------------------------ */
typedef struct fp_client fp_client;

/* Connects (asynchronously: ZeroMQ connects and reconnects in the background)
 * to endpoint, pinning server_pk (the server's Ed25519 public key) and
 * authenticating with id. opts NULL = defaults. */
int fp_client_create(fp_client **out, const char *endpoint, const uint8_t server_pk[FP_NET_KEY_BYTES],
                     const fp_identity *id, const fp_net_opts *opts);
void fp_client_destroy(fp_client *c);

/* Waits until the CURVE handshake with the server has succeeded. FP_EAUTH if the
 * server refused our key (ZAP), FP_ECRYPTO if handshakes keep failing (a server
 * that does not hold the pinned key cannot complete one), FP_ETIMEOUT if
 * nothing conclusive happened in timeout_ms. */
int fp_client_wait_ready(fp_client *c, int timeout_ms);

/* Sends one frame; frames are only queued on a connection whose handshake has
 * completed, so this waits (up to timeout_ms) while there is none. */
int fp_client_send(fp_client *c, const void *data, size_t len, int timeout_ms);
/* Receives one frame from the server (malloc'd, caller frees). */
int fp_client_recv(fp_client *c, void **data, size_t *len, int timeout_ms);

/* Drops the connection and opens a new one (new socket, same keys): what a
 * client does when it suspects a dead link. Queued frames are discarded. */
int fp_client_reconnect(fp_client *c);
/* Incremented by every fp_client_reconnect; lets a protocol loop notice that
 * in-flight frames were lost. */
uint64_t fp_client_generation(const fp_client *c);

#ifdef __cplusplus
}
#endif
#endif
