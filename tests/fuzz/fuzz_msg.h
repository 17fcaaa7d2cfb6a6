/* Shared by the libFuzzer target and its plain test driver. */
#ifndef FP_FUZZ_MSG_H
#define FP_FUZZ_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "fedproxy/identity.h"

/* Input modes: the first byte of a fuzz input (mod FUZZ_MODES) picks the parser
 * the rest goes to. */
enum {
    FUZZ_DECODE = 0,  /* fp_msg_decode as received from the wire, then fp_msg_json */
    FUZZ_SIGNED = 1,  /* the rest is header+payload: signed with the fuzz key first,
                         so the fuzzer also reaches what lies behind the signature */
    FUZZ_CHUNK = 2,   /* a sequence of [u16 length][frame] fed to a chunk receiver */
    FUZZ_ALLOWLIST = 3, /* clients.json text */
    FUZZ_MODES = 4
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fixed identity whose key the fuzz inputs are signed with. */
const fp_identity *fuzz_msg_key(void);

/* Generates the seed corpus: valid messages of every payload kind and mutations
 * of them. emit gets each input (mode byte included) and whether fp_msg_decode
 * must accept it (1), must refuse it (0), or either (-1). */
typedef void (*fuzz_emit_fn)(void *ctx, const uint8_t *p, size_t n, int expect);
void fuzz_msg_corpus(fuzz_emit_fn emit, void *ctx);

#endif
