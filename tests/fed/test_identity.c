/* Identity keys: save/load round trip, 0600 secret, refusal of exposed or malformed
 * files, signatures, hex, and the X25519 conversion used for ZeroMQ CURVE. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fedproxy/fileio.h"
#include "fedproxy/identity.h"
#include "fp_test.h"

static void write_file(const char *dir, const char *name, const char *text, unsigned mode)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_OK(fp_write_file_atomic(path, text, strlen(text), mode));
    chmod(path, mode);
}

int main(void)
{
    const char *base = fp_test_tmpdir("identity");
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/alice", base);

    fp_identity a, b;
    CHECK_OK(fp_identity_keygen(&a));
    CHECK_OK(fp_identity_save(&a, dir));
    struct stat st;
    snprintf(path, sizeof path, "%s/identity.key", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof path, "%s/identity.pub", dir);
    mode_t um = umask(0);
    umask(um);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == (0644 & ~um));

    CHECK_OK(fp_identity_load(&b, dir));
    CHECK(memcmp(a.pk, b.pk, 32) == 0 && memcmp(a.sk, b.sk, 64) == 0);
    unsigned char pk[32];
    CHECK_OK(fp_identity_load_public(pk, dir));
    CHECK(memcmp(pk, a.pk, 32) == 0);
    /* The .pub file is the hex of the public key, one line. */
    void *text = NULL;
    size_t len = 0;
    CHECK_OK(fp_read_file(&text, &len, path, 1000));
    char hex[FP_IDENTITY_PUBLICKEY_HEXBYTES];
    CHECK_OK(fp_hex_encode(hex, sizeof hex, a.pk, 32));
    CHECK(len == 65 && memcmp(text, hex, 64) == 0 && ((char *)text)[64] == '\n');
    free(text);

    /* Signatures. */
    const char msg[] = "round 7 update";
    unsigned char sig[FP_IDENTITY_SIGBYTES];
    CHECK_OK(fp_identity_sign(sig, msg, sizeof msg, &b));
    CHECK_OK(fp_identity_verify(sig, msg, sizeof msg, a.pk));
    sig[5] ^= 1;
    CHECK_ERR(fp_identity_verify(sig, msg, sizeof msg, a.pk), FP_ECRYPTO);
    sig[5] ^= 1;
    fp_identity other;
    CHECK_OK(fp_identity_keygen(&other));
    CHECK_ERR(fp_identity_verify(sig, msg, sizeof msg, other.pk), FP_ECRYPTO);

    /* X25519 conversion: the converted pairs of two parties agree on a secret. */
    unsigned char apk[32], ask[32], opk[32], osk[32], opk2[32], s1[32], s2[32];
    CHECK_OK(fp_identity_curve25519(apk, ask, &a));
    CHECK_OK(fp_identity_curve25519(opk, osk, &other));
    CHECK_OK(fp_identity_pk_to_curve25519(opk2, other.pk));
    CHECK(memcmp(opk, opk2, 32) == 0);
    unsigned char derived[32];
    crypto_scalarmult_base(derived, ask);
    CHECK(memcmp(derived, apk, 32) == 0);
    CHECK(crypto_scalarmult(s1, ask, opk) == 0 && crypto_scalarmult(s2, osk, apk) == 0);
    CHECK(memcmp(s1, s2, 32) == 0);
    sodium_memzero(ask, 32);
    sodium_memzero(osk, 32);

    /* Deterministic from seed. */
    unsigned char seed[32] = {42};
    fp_identity s_a, s_b;
    CHECK_OK(fp_identity_from_seed(&s_a, seed));
    CHECK_OK(fp_identity_from_seed(&s_b, seed));
    CHECK(memcmp(s_a.pk, s_b.pk, 32) == 0);

    /* Hex helpers. */
    unsigned char bin[4];
    CHECK_OK(fp_hex_decode(bin, 4, "DEADbeef", 8));
    CHECK(bin[0] == 0xde && bin[3] == 0xef);
    CHECK_ERR(fp_hex_decode(bin, 4, "deadbee", 7), FP_EFORMAT);
    CHECK_ERR(fp_hex_decode(bin, 4, "deadbeeg", 8), FP_EFORMAT);
    CHECK_ERR(fp_hex_encode(hex, 10, a.pk, 32), FP_EINVAL);

    /* A secret key readable by group or others is refused, with the reason. */
    snprintf(path, sizeof path, "%s/identity.key", dir);
    CHECK(chmod(path, 0644) == 0);
    CHECK_ERR(fp_identity_load(&b, dir), FP_ECRYPTO);
    CHECK(strstr(fp_errmsg(), "chmod 600") != NULL);
    CHECK(chmod(path, 0640) == 0);
    CHECK_ERR(fp_identity_load(&b, dir), FP_ECRYPTO);
    CHECK(chmod(path, 0600) == 0);
    CHECK_OK(fp_identity_load(&b, dir));
    /* Saving again over an exposed file restores 0600. */
    CHECK(chmod(path, 0666) == 0);
    CHECK_OK(fp_identity_save(&a, dir));
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* Malformed files. */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/bad", base);
    CHECK_OK(fp_mkdirs(bad, 0700));
    CHECK_ERR(fp_identity_load(&b, bad), FP_ENOTFOUND); /* nothing there */
    write_file(bad, "identity.key", "not hex at all\n", 0600);
    CHECK_ERR(fp_identity_load(&b, bad), FP_EFORMAT);
    CHECK(memcmp(b.sk, (unsigned char[64]){0}, 64) == 0); /* wiped on failure */
    write_file(bad, "identity.key", "00112233\n", 0600); /* too short */
    CHECK_ERR(fp_identity_load(&b, bad), FP_EFORMAT);
    char line[200];
    CHECK_OK(fp_hex_encode(line, sizeof line, a.sk, 32));
    strcat(line, "00\n"); /* too long */
    write_file(bad, "identity.key", line, 0600);
    CHECK_ERR(fp_identity_load(&b, bad), FP_EFORMAT);
    CHECK_OK(fp_hex_encode(line, sizeof line, a.sk, 32));
    strcat(line, "\n");
    write_file(bad, "identity.key", line, 0600);
    CHECK_OK(fp_identity_load(&b, bad)); /* the seed alone is enough */
    CHECK(memcmp(b.pk, a.pk, 32) == 0);
    CHECK_OK(fp_hex_encode(line, sizeof line, other.pk, 32));
    strcat(line, "\n");
    write_file(bad, "identity.pub", line, 0644); /* a .pub of another identity */
    CHECK_ERR(fp_identity_load(&b, bad), FP_ECRYPTO);
    write_file(bad, "identity.pub", "zz\n", 0644);
    CHECK_ERR(fp_identity_load(&b, bad), FP_EFORMAT);
    CHECK_ERR(fp_identity_load_public(pk, bad), FP_EFORMAT);

    fp_identity_wipe(&a);
    CHECK(memcmp(a.sk, (unsigned char[64]){0}, 64) == 0);
    fp_identity_wipe(&b);
    fp_identity_wipe(&other);
    fp_identity_wipe(&s_a);
    fp_identity_wipe(&s_b);
    return fp_test_report("test_identity");
}
