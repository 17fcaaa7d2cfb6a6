/* fedproxy: chunked, acknowledged, resumable transfer of large payloads
 * (models, updates: up to hundreds of MiB) over the transport's bounded frames.
 *
 * The sender splits the payload into chunks (FP_CHUNK_SIZE_DEFAULT, 1 MiB) and
 * keeps at most `window` unacknowledged chunks in flight; the receiver accepts
 * chunks strictly in order, acknowledges each cumulatively, hashes the payload
 * as it arrives (BLAKE2b-256, crypto_generichash) and compares the hash
 * announced at the start when the last chunk is in. After a dropped connection
 * the transfer resumes from the receiver's next expected chunk, not from zero.
 *
 * Frames (little-endian; all start with a 16-byte header):
 *   magic "FPC1" u32 | type u8 | 3 zero bytes | transfer id u64
 *   BEGIN  (tx->rx) + total u64 + chunk_size u32 + 0 u32 + hash[32]   64 bytes
 *   DATA   (tx->rx) + index u64 + chunk bytes (chunk_size, the last one shorter)
 *   RESUME (rx->tx) + next u64: "send from chunk `next`": the answer to BEGIN,
 *                     and what a receiver sends after reconnecting
 *   ACK    (rx->tx) + next u64: all chunks below `next` received
 *   DONE   (rx->tx) + n_chunks u64: complete and the hash matched
 *   ABORT  (either) + error code i32 + 0 u32: the transfer is over, failed
 * Protocol: tx sends BEGIN and waits for RESUME(k); then DATA k, k+1, ... within
 * the window; rx answers each in-order DATA with ACK, and the last with DONE
 * (or ABORT on a hash mismatch). If tx sees no progress for ack_timeout_ms it
 * sends BEGIN again and waits for RESUME: this both probes a silent link and
 * re-synchronises after a reconnect. rx ignores duplicate chunks (re-ACKs them)
 * and chunks beyond the one it expects (a gap means frames were lost with a
 * connection; the RESUME that follows the next BEGIN fixes it).
 *
 * Why our own framing rather than the signed envelope per chunk: chunks ride
 * CURVE (encrypted and authenticated per connection), the payload as a whole is
 * normally an fp_msg envelope whose signature is checked once it is assembled,
 * and per-chunk Ed25519 would double the CPU cost for no added assurance.
 *
 * Memory: the sender reads the caller's payload in place (no copy) and builds
 * one frame at a time; the transport holds at most `window` DATA frames per
 * transfer. The receiver writes into a buffer of the announced size, bounded by
 * max_total, or streams to a sink callback and then holds nothing.
 *
 * Ownership: fp_chunk_tx borrows the payload until destroyed. Threading: a tx
 * or rx is used by one thread at a time.
 */
#ifndef FEDPROXY_CHUNK_H
#define FEDPROXY_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP_CHUNK_MAGIC0 0x46u /* 'F' */
#define FP_CHUNK_MAGIC1 0x50u /* 'P' */
#define FP_CHUNK_MAGIC2 0x43u /* 'C' */
#define FP_CHUNK_MAGIC3 0x31u /* '1' */
#define FP_CHUNK_HDR_BYTES 16u
#define FP_CHUNK_DATA_HDR_BYTES 24u
#define FP_CHUNK_CTRL_BYTES 64u /* room for any non-DATA frame */
#define FP_CHUNK_HASH_BYTES 32u
#define FP_CHUNK_SIZE_DEFAULT ((uint32_t)1 << 20)
#define FP_CHUNK_SIZE_MIN 1024u
#define FP_CHUNK_SIZE_MAX ((uint32_t)64 << 20)
#define FP_CHUNK_WINDOW_DEFAULT 8u
#define FP_CHUNK_ACK_TIMEOUT_MS_DEFAULT 2000
#define FP_CHUNK_MAX_TOTAL_DEFAULT ((uint64_t)1 << 30)

enum fp_chunk_frame_type {
    FP_CHUNK_BEGIN = 1,
    FP_CHUNK_DATA = 2,
    FP_CHUNK_RESUME = 3,
    FP_CHUNK_ACK = 4,
    FP_CHUNK_DONE = 5,
    FP_CHUNK_ABORT = 6
};

/* Progress callback: called after each advance with the chunks the receiver
 * holds and the total. A nonzero return aborts the transfer with FP_EABORT.
 * The callback may call fp_client_reconnect on the client doing the transfer. */
typedef int (*fp_chunk_progress_fn)(void *ctx, uint64_t done_chunks, uint64_t n_chunks);

/* Sink for received bytes, called in order (offset is the running total). A
 * nonzero return aborts the transfer with that code. */
typedef int (*fp_chunk_sink_fn)(void *ctx, uint64_t offset, const void *data, size_t len);

typedef struct fp_chunk_opts {
    uint32_t chunk_size; /* bytes per chunk (tx) */
    uint32_t window;     /* chunks in flight (tx) */
    int ack_timeout_ms;  /* no progress for this long: probe with BEGIN (tx), RESUME (rx) */
    uint64_t max_total;  /* largest payload accepted (rx) */
    fp_chunk_progress_fn progress;
    void *progress_ctx;
    fp_chunk_sink_fn sink; /* rx: stream here instead of assembling in memory */
    void *sink_ctx;
} fp_chunk_opts;

void fp_chunk_opts_default(fp_chunk_opts *o);

/* Nonzero if frame starts with the chunk magic (to route it away from the
 * envelope decoder); *type gets the frame type (0 if unknown). */
int fp_chunk_is_frame(const void *frame, size_t len, unsigned *type);

typedef struct fp_chunk_stats {
    uint64_t n_chunks;
    uint64_t data_frames;   /* DATA frames sent (tx) or received (rx), duplicates included */
    uint64_t resumes;       /* tx: RESUMEs acted on after the first; rx: repeated BEGINs answered */
    uint64_t resume_from;   /* the chunk the latest resume restarted from */
    uint64_t duplicates;    /* rx: chunks received again and ignored */
    uint64_t gaps;          /* rx: chunks ahead of the expected one, ignored */
} fp_chunk_stats;

/* ---- sender state machine ---------------------------------------------- */
typedef struct fp_chunk_tx fp_chunk_tx;

/* transfer_id: nonzero, unique per transfer between the two ends. Hashes the
 * payload up front. */
int fp_chunk_tx_create(fp_chunk_tx **out, uint64_t transfer_id, const void *data, size_t len,
                       const fp_chunk_opts *opts);
void fp_chunk_tx_destroy(fp_chunk_tx *t);
/* Frame capacity tx needs: FP_CHUNK_DATA_HDR_BYTES + chunk_size. */
size_t fp_chunk_tx_frame_cap(const fp_chunk_tx *t);
/* The next frame to send now (BEGIN, DATA or nothing: *frame_len 0) given the
 * time now_ms (monotonic). Call until it yields nothing, then wait for input. */
int fp_chunk_tx_poll(fp_chunk_tx *t, int64_t now_ms, uint8_t *frame, size_t cap, size_t *frame_len);
/* Processes a frame from the receiver. FP_EPROTO for frames that make no sense
 * (wrong id, ACK beyond what was sent; the transfer goes on), FP_EABORT when the
 * receiver aborted (the transfer is over: fp_chunk_tx_done returns it). */
int fp_chunk_tx_input(fp_chunk_tx *t, const void *frame, size_t len, int64_t now_ms);
/* The link was replaced: stop sending and re-announce with BEGIN. */
void fp_chunk_tx_link_reset(fp_chunk_tx *t);
/* 1 once DONE arrived, 0 while running, the failure code once failed. */
int fp_chunk_tx_done(const fp_chunk_tx *t);
void fp_chunk_tx_get_stats(const fp_chunk_tx *t, fp_chunk_stats *out);

/* ---- receiver state machine -------------------------------------------- */
typedef struct fp_chunk_rx fp_chunk_rx;

/* expect_id: the transfer to accept, 0 = the first one that begins. */
int fp_chunk_rx_create(fp_chunk_rx **out, uint64_t expect_id, const fp_chunk_opts *opts);
void fp_chunk_rx_destroy(fp_chunk_rx *r);
/* Processes a frame from the sender; *reply_len > 0 if reply (cap >=
 * FP_CHUNK_CTRL_BYTES) holds a frame to send back. A failing return either
 * ends the transfer (fp_chunk_rx_done then returns the same code: hash
 * mismatch FP_ECRYPTO, payload over max_total FP_EFORMAT, a chunk of the wrong
 * length FP_EPROTO, sink or allocation failure; reply holds the ABORT to send)
 * or only refuses this frame (malformed FP_EFORMAT, out of protocol FP_EPROTO,
 * another transfer FP_ESTATE, answered with an ABORT for that transfer). */
int fp_chunk_rx_input(fp_chunk_rx *r, const void *frame, size_t len, uint8_t *reply, size_t cap,
                      size_t *reply_len);
/* The RESUME frame to send after reconnecting (0 if nothing has begun). */
int fp_chunk_rx_resume_frame(const fp_chunk_rx *r, uint8_t *reply, size_t cap, size_t *reply_len);
/* 1 once complete and verified, 0 while running, the failure code once failed. */
int fp_chunk_rx_done(const fp_chunk_rx *r);
/* Next chunk expected (= chunks held). */
uint64_t fp_chunk_rx_next(const fp_chunk_rx *r);
/* Takes the assembled payload (malloc'd; caller frees) once done; without a sink only. */
int fp_chunk_rx_take(fp_chunk_rx *r, void **data, size_t *len);
void fp_chunk_rx_get_stats(const fp_chunk_rx *r, fp_chunk_stats *out);

/* ---- blocking drivers over the transport -------------------------------
 * Each runs one transfer to completion or timeout_ms (-1 = none). Frames from
 * the other end that are not chunk frames of this transfer are dropped with a
 * warning: these are for a client, or a server serving one peer at a time
 * (tests, tools); a server juggling many peers feeds the state machines from
 * its own event loop. The client drivers notice fp_client_reconnect (also from
 * the progress callback) and resume at once instead of waiting for a timeout. */
int fp_chunk_client_send(fp_client *c, uint64_t transfer_id, const void *data, size_t len,
                         const fp_chunk_opts *opts, int timeout_ms, fp_chunk_stats *stats);
int fp_chunk_client_recv(fp_client *c, uint64_t transfer_id, void **data, size_t *len,
                         const fp_chunk_opts *opts, int timeout_ms, fp_chunk_stats *stats);
int fp_chunk_server_send(fp_server *s, const uint8_t peer[FP_NET_KEY_BYTES], uint64_t transfer_id,
                         const void *data, size_t len, const fp_chunk_opts *opts, int timeout_ms,
                         fp_chunk_stats *stats);
int fp_chunk_server_recv(fp_server *s, const uint8_t peer[FP_NET_KEY_BYTES], uint64_t transfer_id,
                         void **data, size_t *len, const fp_chunk_opts *opts, int timeout_ms,
                         fp_chunk_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
