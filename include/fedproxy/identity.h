/* fedproxy: long-term Ed25519 identities of servers and clients.
 *
 * One identity signs federation messages (crypto_sign, Ed25519) and, converted
 * to X25519 with fp_identity_curve25519(), serves as the ZeroMQ CURVE key, so
 * one pair of files identifies a party everywhere.
 *
 * On disk (fp_identity_save / fp_identity_load), in a directory DIR:
 *   DIR/identity.pub  "<64 hex digits of the Ed25519 public key>\n", mode 0644
 *   DIR/identity.key  "<64 hex digits of the Ed25519 seed>\n",        mode 0600
 * The seed (the first half of libsodium's 64-byte secret key) determines the
 * whole key pair; loading re-derives the pair and checks it against identity.pub.
 * Both files are written atomically (temp file, fsync, rename).
 *
 * Ownership: fp_identity is plain data owned by the caller; it holds a secret,
 * so call fp_identity_wipe() when done with it (also on error paths).
 * Threading: every function is safe to call from any thread on distinct
 * objects; an fp_identity may be read (sign) from several threads at once.
 */
#ifndef FEDPROXY_IDENTITY_H
#define FEDPROXY_IDENTITY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_IDENTITY_PUBLICKEYBYTES 32u /* Ed25519 public key */
#define FP_IDENTITY_SECRETKEYBYTES 64u /* libsodium Ed25519 secret key (seed || pk) */
#define FP_IDENTITY_SEEDBYTES 32u
#define FP_IDENTITY_SIGBYTES 64u
#define FP_IDENTITY_CURVE_PUBLICKEYBYTES 32u /* X25519 public key */
#define FP_IDENTITY_CURVE_SECRETKEYBYTES 32u /* X25519 secret key */
/* Hex text of a public key, with its terminating NUL. */
#define FP_IDENTITY_PUBLICKEY_HEXBYTES (2u * FP_IDENTITY_PUBLICKEYBYTES + 1u)

/* Largest identity file accepted by fp_identity_load (anything bigger is not ours). */
#define FP_IDENTITY_FILE_MAX 256u

typedef struct fp_identity {
    unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES];
    unsigned char sk[FP_IDENTITY_SECRETKEYBYTES]; /* secret: wipe with fp_identity_wipe */
} fp_identity;

/* A fresh random identity (libsodium CSPRNG). */
int fp_identity_keygen(fp_identity *out);

/* The identity determined by a 32-byte seed (deterministic; for tests and for
 * deriving keys from a secret the caller already protects). */
int fp_identity_from_seed(fp_identity *out, const unsigned char seed[FP_IDENTITY_SEEDBYTES]);

/* Writes DIR/identity.pub (0644) and DIR/identity.key (0600), creating DIR
 * (mode 0700) if missing. Overwrites an existing identity in DIR. */
int fp_identity_save(const fp_identity *id, const char *dir);

/* Reads DIR/identity.key (and DIR/identity.pub if present, which must match).
 * Refuses, with FP_ECRYPTO and a message saying so, a key file that group or
 * others may read or write (mode & 077 != 0), or that is not a regular file;
 * a file that is not exactly one line of 64 hex digits gives FP_EFORMAT; a
 * missing key file gives FP_ENOTFOUND. On failure *out is zeroed. */
int fp_identity_load(fp_identity *out, const char *dir);

/* Reads only DIR/identity.pub (e.g. a peer's exported public key). */
int fp_identity_load_public(unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES], const char *dir);

/* Detached Ed25519 signature of msg[0..len). */
int fp_identity_sign(unsigned char sig[FP_IDENTITY_SIGBYTES], const void *msg, size_t len,
                     const fp_identity *id);

/* 0 if sig is pk's valid signature of msg; FP_ECRYPTO (with message) if not. */
int fp_identity_verify(const unsigned char sig[FP_IDENTITY_SIGBYTES], const void *msg, size_t len,
                       const unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES]);

/* Lower-case hex of bin[0..bin_len) into hex (needs 2*bin_len+1 bytes, NUL-terminated). */
int fp_hex_encode(char *hex, size_t hex_cap, const void *bin, size_t bin_len);

/* Exactly 2*bin_len hex digits (either case, nothing else) into bin; FP_EFORMAT otherwise. */
int fp_hex_decode(void *bin, size_t bin_len, const char *hex, size_t hex_len);

/* The X25519 (Curve25519) key pair equivalent to the identity, for ZeroMQ CURVE.
 * curve_sk is a secret: the caller wipes it (sodium_memzero) when done. */
int fp_identity_curve25519(unsigned char curve_pk[FP_IDENTITY_CURVE_PUBLICKEYBYTES],
                           unsigned char curve_sk[FP_IDENTITY_CURVE_SECRETKEYBYTES],
                           const fp_identity *id);

/* A peer's Ed25519 public key as an X25519 public key (FP_ECRYPTO if it is not a
 * valid Ed25519 point). */
int fp_identity_pk_to_curve25519(unsigned char curve_pk[FP_IDENTITY_CURVE_PUBLICKEYBYTES],
                                 const unsigned char ed_pk[FP_IDENTITY_PUBLICKEYBYTES]);

/* Zeroes the whole structure (secret included). NULL is allowed. */
void fp_identity_wipe(fp_identity *id);

#ifdef __cplusplus
}
#endif
#endif
