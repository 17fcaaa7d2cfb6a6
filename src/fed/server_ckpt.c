/* The server's round checkpoint, written atomically after every complete round.
 *
 * checkpoint.bin (little-endian):
 *   "FPCK" u32 version=3 | session[16] | completed u32 | next_round u32 |
 *   rng_key[32] | rng_counter u64 | dim u64 | n_clients u32 | flags u32 |
 *   adaptive u32 | 0[12] |
 *   global f32[dim] | [velocity f32[dim] if flags bit 0] |
 *   [m f32[dim] v f32[dim] if flags bit 1] |
 *   n_clients x (key[32] samples u64 rank i32 batch i32 seq i32 0 u32) |
 *   BLAKE2b-256 of everything before it
 * flags bit 0: the server's FedAvgM velocity follows the global vector; bit 1:
 * FedAdam's or FedYogi's m and v follow, and `adaptive` says whose
 * (fp_fed_server_opt: 1 adam, 2 yogi). Version 2 (bit 0 only; `adaptive` was
 * reserved, written 0) and version 1 (flags always 0, no velocity) are still
 * read, as are their files' sizes. A torn or altered file fails the hash and
 * is refused (FP_EFORMAT). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"

#define CK_HDR 104u
#define CK_CLIENT 56u

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void ck_path(char *out, size_t cap, const char *dir) { snprintf(out, cap, "%s/checkpoint.bin", dir); }

int fed_ckpt_write(const char *state_dir, const fed_ckpt *c)
{
    if (c->dim > FP_FED_MAX_DIM)
        return fp_seterr(FP_EINVAL, "checkpoint: dim %llu too large", (unsigned long long)c->dim);
    int has_v = c->velocity != NULL;
    int has_mv = c->adaptive != 0;
    if (has_mv && (!c->m || !c->v || (c->adaptive != FP_FED_SERVER_ADAM && c->adaptive != FP_FED_SERVER_YOGI)))
        return fp_seterr(FP_EINVAL, "checkpoint: optimizer state %d without m and v", c->adaptive);
    const float *vecs[4] = {c->global, c->velocity, c->m, c->v};
    size_t nvec = 1 + (size_t)has_v + 2 * (size_t)has_mv;
    size_t n = CK_HDR + (size_t)c->dim * 4 * nvec + (size_t)c->n_clients * CK_CLIENT + 32;
    uint8_t *b = calloc(1, n);
    if (!b)
        return fp_seterr(FP_ENOMEM, "checkpoint: out of memory (%zu bytes)", n);
    memcpy(b, "FPCK", 4);
    put32(b + 4, 3);
    memcpy(b + 8, c->session, 16);
    put32(b + 24, c->completed);
    put32(b + 28, c->next_round);
    memcpy(b + 32, c->rng_key, 32);
    put64(b + 64, c->rng_counter);
    put64(b + 72, c->dim);
    put32(b + 80, c->n_clients);
    put32(b + 84, (has_v ? 1u : 0u) | (has_mv ? 2u : 0u));
    put32(b + 88, has_mv ? (uint32_t)c->adaptive : 0u);
    /* 92..104 zero */
    uint8_t *p = b + CK_HDR;
    for (int k = 0; k < 4; k++) {
        const float *x = vecs[k];
        if (!x || (k == 1 && !has_v) || (k >= 2 && !has_mv))
            continue;
        for (uint64_t i = 0; i < c->dim; i++, p += 4) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            put32(p, u);
        }
    }
    for (uint32_t i = 0; i < c->n_clients; i++, p += CK_CLIENT) {
        memcpy(p, c->clients[i].key, 32);
        put64(p + 32, c->clients[i].samples);
        put32(p + 40, (uint32_t)c->clients[i].rank);
        put32(p + 44, (uint32_t)c->clients[i].batch);
        put32(p + 48, (uint32_t)c->clients[i].seq);
    }
    crypto_generichash(p, 32, b, n - 32, NULL, 0);
    int rc = fp_mkdirs(state_dir, 0700);
    char path[FP_FED_PATH_MAX + 32];
    ck_path(path, sizeof path, state_dir);
    if (!rc)
        rc = fp_write_file_atomic(path, b, n, 0600);
    free(b);
    if (rc)
        return fp_adderr(rc, "writing the round checkpoint %s", path);
    return 0;
}

int fed_ckpt_read(fed_ckpt *out, const char *state_dir)
{
    memset(out, 0, sizeof *out);
    char path[FP_FED_PATH_MAX + 32];
    ck_path(path, sizeof path, state_dir);
    void *data = NULL;
    size_t n = 0;
    /* global, velocity, m and v at most */
    int rc = fp_read_file(&data, &n, path, (size_t)FP_FED_MAX_DIM * 16 + ((size_t)64 << 20));
    if (rc)
        return fp_adderr(rc, "reading the round checkpoint");
    const uint8_t *b = data;
    rc = FP_EFORMAT;
    uint32_t version = n >= 8 ? get32(b + 4) : 0;
    if (n < CK_HDR + 32 || memcmp(b, "FPCK", 4) || version < 1 || version > 3) {
        fp_seterr(rc, "checkpoint %s: not a version-1, -2 or -3 checkpoint", path);
        goto out;
    }
    uint8_t h[32];
    crypto_generichash(h, 32, b, n - 32, NULL, 0);
    if (sodium_memcmp(h, b + n - 32, 32)) {
        fp_seterr(rc, "checkpoint %s: hash mismatch (torn or altered file)", path);
        goto out;
    }
    uint64_t dim = get64(b + 72);
    uint32_t nc = get32(b + 80), flags = get32(b + 84);
    uint32_t known = version == 1 ? 0u : version == 2 ? 1u : 3u;
    if (flags & ~known) {
        fp_seterr(rc, "checkpoint %s: unknown flags 0x%x for version %u", path, flags, version);
        goto out;
    }
    int has_v = flags & 1u, has_mv = (flags & 2u) != 0;
    uint32_t adaptive = has_mv ? get32(b + 88) : 0;
    if (has_mv && adaptive != FP_FED_SERVER_ADAM && adaptive != FP_FED_SERVER_YOGI) {
        fp_seterr(rc, "checkpoint %s: optimizer state of unknown optimizer %u", path, adaptive);
        goto out;
    }
    size_t nvec = 1 + (size_t)has_v + 2 * (size_t)has_mv;
    if (dim > FP_FED_MAX_DIM || nc > FP_ALLOWLIST_MAX ||
        n != CK_HDR + (size_t)dim * 4 * nvec + (size_t)nc * CK_CLIENT + 32) {
        fp_seterr(rc, "checkpoint %s: sizes disagree (dim %llu, %u clients, %zu bytes)", path,
                  (unsigned long long)dim, nc, n);
        goto out;
    }
    memcpy(out->session, b + 8, 16);
    out->completed = get32(b + 24);
    out->next_round = get32(b + 28);
    memcpy(out->rng_key, b + 32, 32);
    out->rng_counter = get64(b + 64);
    out->dim = dim;
    out->n_clients = nc;
    out->global = malloc((size_t)dim * 4 + 4);
    out->velocity = has_v ? malloc((size_t)dim * 4 + 4) : NULL;
    out->adaptive = (int)adaptive;
    out->m = has_mv ? malloc((size_t)dim * 4 + 4) : NULL;
    out->v = has_mv ? malloc((size_t)dim * 4 + 4) : NULL;
    out->clients = calloc(nc + 1, sizeof *out->clients);
    if (!out->global || !out->clients || (has_v && !out->velocity) || (has_mv && (!out->m || !out->v))) {
        fed_ckpt_free(out);
        rc = fp_seterr(FP_ENOMEM, "checkpoint: out of memory");
        goto out;
    }
    const uint8_t *p = b + CK_HDR;
    float *vecs[4] = {out->global, out->velocity, out->m, out->v};
    for (int k = 0; k < 4; k++) {
        float *x = vecs[k];
        if (!x)
            continue;
        for (uint64_t i = 0; i < dim; i++, p += 4) {
            uint32_t u = get32(p);
            memcpy(&x[i], &u, 4);
        }
    }
    for (uint32_t i = 0; i < nc; i++, p += CK_CLIENT) {
        memcpy(out->clients[i].key, p, 32);
        out->clients[i].samples = get64(p + 32);
        out->clients[i].rank = (int32_t)get32(p + 40);
        out->clients[i].batch = (int32_t)get32(p + 44);
        out->clients[i].seq = (int32_t)get32(p + 48);
    }
    rc = 0;
out:
    free(data);
    return rc;
}

void fed_ckpt_free(fed_ckpt *c)
{
    if (!c)
        return;
    free(c->global);
    free(c->velocity);
    free(c->m);
    free(c->v);
    free(c->clients);
    c->global = NULL;
    c->velocity = NULL;
    c->m = NULL;
    c->v = NULL;
    c->adaptive = 0;
    c->clients = NULL;
}

int fp_fed_checkpoint_read(float **global, size_t *dim, uint32_t *completed, uint32_t *next_round,
                           const char *state_dir)
{
    fed_ckpt c;
    int rc = fed_ckpt_read(&c, state_dir);
    if (rc)
        return rc;
    if (global) {
        *global = c.global;
        c.global = NULL;
    }
    if (dim)
        *dim = (size_t)c.dim;
    if (completed)
        *completed = c.completed;
    if (next_round)
        *next_round = c.next_round;
    fed_ckpt_free(&c);
    return 0;
}
