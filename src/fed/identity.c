/* Ed25519 identities: generation, files, signatures, conversion to X25519. */
#include "fedproxy/identity.h"
#include "fedproxy/fileio.h"
#include "error_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int init_sodium(void)
{
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "libsodium failed to initialise");
    return 0;
}

int fp_identity_keygen(fp_identity *out)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_identity_keygen: NULL output");
    int rc = init_sodium();
    if (rc)
        return rc;
    if (crypto_sign_keypair(out->pk, out->sk) != 0) {
        fp_identity_wipe(out);
        return fp_seterr(FP_ECRYPTO, "Ed25519 key generation failed");
    }
    return 0;
}

int fp_identity_from_seed(fp_identity *out, const unsigned char seed[FP_IDENTITY_SEEDBYTES])
{
    if (!out || !seed)
        return fp_seterr(FP_EINVAL, "fp_identity_from_seed: NULL argument");
    int rc = init_sodium();
    if (rc)
        return rc;
    if (crypto_sign_seed_keypair(out->pk, out->sk, seed) != 0) {
        fp_identity_wipe(out);
        return fp_seterr(FP_ECRYPTO, "Ed25519 key derivation from seed failed");
    }
    return 0;
}

int fp_hex_encode(char *hex, size_t hex_cap, const void *bin, size_t bin_len)
{
    if (!hex || (!bin && bin_len))
        return fp_seterr(FP_EINVAL, "fp_hex_encode: NULL argument");
    if (bin_len > (SIZE_MAX - 1) / 2 || hex_cap < 2 * bin_len + 1)
        return fp_seterr(FP_EINVAL, "fp_hex_encode: %zu bytes need %zu characters, buffer has %zu",
                         bin_len, 2 * bin_len + 1, hex_cap);
    sodium_bin2hex(hex, hex_cap, bin, bin_len);
    return 0;
}

int fp_hex_decode(void *bin, size_t bin_len, const char *hex, size_t hex_len)
{
    if (!bin || !hex)
        return fp_seterr(FP_EINVAL, "fp_hex_decode: NULL argument");
    if (hex_len != 2 * bin_len)
        return fp_seterr(FP_EFORMAT, "expected %zu hex digits, got %zu characters", 2 * bin_len,
                         hex_len);
    size_t got = 0;
    const char *end = NULL;
    if (sodium_hex2bin(bin, bin_len, hex, hex_len, NULL, &got, &end) != 0 || got != bin_len ||
        end != hex + hex_len) {
        sodium_memzero(bin, bin_len);
        return fp_seterr(FP_EFORMAT, "not a string of %zu hex digits", 2 * bin_len);
    }
    return 0;
}

/* Accepts exactly 64 hex digits, optionally followed by "\n" or "\r\n". */
static int parse_key_line(unsigned char out[32], const char *text, size_t len, const char *path)
{
    size_t n = len;
    if (n && text[n - 1] == '\n') {
        n--;
        if (n && text[n - 1] == '\r')
            n--;
    }
    if (fp_hex_decode(out, 32, text, n) != 0)
        return fp_seterr(FP_EFORMAT, "%s is malformed: expected one line of 64 hex digits", path);
    return 0;
}

static int join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return fp_seterr(FP_EINVAL, "identity directory path too long: %s", dir);
    return 0;
}

int fp_identity_save(const fp_identity *id, const char *dir)
{
    if (!id || !dir)
        return fp_seterr(FP_EINVAL, "fp_identity_save: NULL argument");
    char pub_path[4096], key_path[4096];
    int rc = join_path(pub_path, sizeof pub_path, dir, "identity.pub");
    if (!rc)
        rc = join_path(key_path, sizeof key_path, dir, "identity.key");
    if (!rc)
        rc = fp_mkdirs(dir, 0700);
    if (rc)
        return fp_adderr(rc, "saving identity");

    char text[2 * 32 + 2];
    sodium_bin2hex(text, sizeof text, id->pk, 32);
    text[64] = '\n';
    rc = fp_write_file_atomic(pub_path, text, 65, 0644);
    if (rc)
        return fp_adderr(rc, "saving identity");
    /* libsodium's secret key starts with the 32-byte seed. */
    sodium_bin2hex(text, sizeof text, id->sk, 32);
    text[64] = '\n';
    rc = fp_write_file_atomic(key_path, text, 65, 0600);
    sodium_memzero(text, sizeof text);
    if (rc)
        return fp_adderr(rc, "saving identity");
    /* The umask can only remove bits, but make the mode exact in case the
     * process runs with an unusual umask and the file already existed. */
    if (chmod(key_path, 0600) != 0)
        return fp_seterr(FP_EIO, "cannot chmod 0600 %s: %s", key_path, strerror(errno));
    return 0;
}

/* Reads a small file through one descriptor so that the permission check and
 * the read see the same file (no stat-then-open race). */
static int read_small(char *buf, size_t cap, size_t *len, const char *path, int secret)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fp_seterr(errno == ENOENT ? FP_ENOTFOUND : FP_EIO, "cannot open %s: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fp_seterr(secret ? FP_ECRYPTO : FP_EIO, "%s is not a regular file", path);
    }
    if (secret && (st.st_mode & 077)) {
        close(fd);
        return fp_seterr(FP_ECRYPTO,
                         "refusing secret key %s: its mode %04o lets group or others access it; "
                         "run chmod 600 %s",
                         path, (unsigned)(st.st_mode & 07777), path);
    }
    if ((unsigned long long)st.st_size >= cap) {
        close(fd);
        return fp_seterr(FP_EFORMAT, "%s is malformed: %lld bytes, an identity file has 65", path,
                         (long long)st.st_size);
    }
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return fp_seterr(FP_EIO, "read of %s failed: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *len = got;
    return 0;
}

int fp_identity_load_public(unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES], const char *dir)
{
    if (!pk || !dir)
        return fp_seterr(FP_EINVAL, "fp_identity_load_public: NULL argument");
    char path[4096], text[FP_IDENTITY_FILE_MAX];
    size_t len = 0;
    int rc = join_path(path, sizeof path, dir, "identity.pub");
    if (!rc)
        rc = read_small(text, sizeof text, &len, path, 0);
    if (!rc)
        rc = parse_key_line(pk, text, len, path);
    return rc;
}

int fp_identity_load(fp_identity *out, const char *dir)
{
    if (!out || !dir)
        return fp_seterr(FP_EINVAL, "fp_identity_load: NULL argument");
    memset(out, 0, sizeof *out);
    int rc = init_sodium();
    if (rc)
        return rc;
    char path[4096], text[FP_IDENTITY_FILE_MAX];
    unsigned char seed[32];
    size_t len = 0;
    rc = join_path(path, sizeof path, dir, "identity.key");
    if (!rc)
        rc = read_small(text, sizeof text, &len, path, 1);
    if (!rc)
        rc = parse_key_line(seed, text, len, path);
    if (!rc && crypto_sign_seed_keypair(out->pk, out->sk, seed) != 0)
        rc = fp_seterr(FP_ECRYPTO, "cannot derive the key pair from %s", path);
    sodium_memzero(text, sizeof text);
    sodium_memzero(seed, sizeof seed);
    if (rc) {
        fp_identity_wipe(out);
        return rc;
    }
    /* identity.pub is optional (it is derivable), but if present it must agree:
     * a mismatch means the directory mixes two identities. */
    unsigned char pk[32];
    char pub_path[4096];
    join_path(pub_path, sizeof pub_path, dir, "identity.pub");
    rc = fp_identity_load_public(pk, dir);
    if (rc == FP_ENOTFOUND)
        return 0;
    if (!rc && sodium_memcmp(pk, out->pk, 32) != 0)
        rc = fp_seterr(FP_ECRYPTO, "%s does not match the secret key in %s", pub_path, path);
    if (rc)
        fp_identity_wipe(out);
    return rc;
}

int fp_identity_sign(unsigned char sig[FP_IDENTITY_SIGBYTES], const void *msg, size_t len,
                     const fp_identity *id)
{
    if (!sig || !id || (!msg && len))
        return fp_seterr(FP_EINVAL, "fp_identity_sign: NULL argument");
    if (crypto_sign_detached(sig, NULL, msg, len, id->sk) != 0)
        return fp_seterr(FP_ECRYPTO, "Ed25519 signing failed");
    return 0;
}

int fp_identity_verify(const unsigned char sig[FP_IDENTITY_SIGBYTES], const void *msg, size_t len,
                       const unsigned char pk[FP_IDENTITY_PUBLICKEYBYTES])
{
    if (!sig || !pk || (!msg && len))
        return fp_seterr(FP_EINVAL, "fp_identity_verify: NULL argument");
    int rc = init_sodium();
    if (rc)
        return rc;
    if (crypto_sign_verify_detached(sig, msg, len, pk) != 0) {
        char hex[17];
        sodium_bin2hex(hex, sizeof hex, pk, 8);
        return fp_seterr(FP_ECRYPTO, "bad Ed25519 signature for key %s...", hex);
    }
    return 0;
}

int fp_identity_curve25519(unsigned char curve_pk[FP_IDENTITY_CURVE_PUBLICKEYBYTES],
                           unsigned char curve_sk[FP_IDENTITY_CURVE_SECRETKEYBYTES],
                           const fp_identity *id)
{
    if (!curve_pk || !curve_sk || !id)
        return fp_seterr(FP_EINVAL, "fp_identity_curve25519: NULL argument");
    int rc = init_sodium();
    if (rc)
        return rc;
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, id->pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(curve_sk, id->sk) != 0) {
        sodium_memzero(curve_sk, FP_IDENTITY_CURVE_SECRETKEYBYTES);
        return fp_seterr(FP_ECRYPTO, "cannot convert the Ed25519 identity to X25519");
    }
    return 0;
}

int fp_identity_pk_to_curve25519(unsigned char curve_pk[FP_IDENTITY_CURVE_PUBLICKEYBYTES],
                                 const unsigned char ed_pk[FP_IDENTITY_PUBLICKEYBYTES])
{
    if (!curve_pk || !ed_pk)
        return fp_seterr(FP_EINVAL, "fp_identity_pk_to_curve25519: NULL argument");
    int rc = init_sodium();
    if (rc)
        return rc;
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, ed_pk) != 0)
        return fp_seterr(FP_ECRYPTO, "public key is not a valid Ed25519 point");
    return 0;
}

void fp_identity_wipe(fp_identity *id)
{
    if (id)
        sodium_memzero(id, sizeof *id);
}
