/* clients.json: the documented format loads; every malformed variant is refused
 * with a message naming the problem. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fedproxy/fileio.h"
#include "fedproxy/transport.h"
#include "fp_test.h"

static char hex_a[65], hex_b[65];
static fp_identity a, b;

static int parse(const char *json, fp_allowlist **out)
{
    *out = NULL;
    return fp_allowlist_parse(out, json, strlen(json), "clients.json");
}

static void expect_bad(const char *json, int code, const char *needle)
{
    fp_allowlist *l = NULL;
    fp_errclear();
    int rc = parse(json, &l);
    CHECKF(rc == code && l == NULL && strstr(fp_errmsg(), needle), "'%s': rc %d msg '%s'", json, rc,
           fp_errmsg());
    fp_allowlist_free(l);
}

int main(void)
{
    unsigned char seed[32];
    memset(seed, 21, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&a, seed));
    memset(seed, 22, sizeof seed);
    CHECK_OK(fp_identity_from_seed(&b, seed));
    sodium_bin2hex(hex_a, sizeof hex_a, a.pk, 32);
    sodium_bin2hex(hex_b, sizeof hex_b, b.pk, 32);

    char json[1024];
    snprintf(json, sizeof json,
             "{\"version\": 1, \"clients\": [{\"name\": \"lab-board-1\", \"key\": \"%s\"}, "
             "{\"key\": \"%s\"}]}",
             hex_a, hex_b);
    const char *dir = fp_test_tmpdir("allowlist");
    char path[4200];
    snprintf(path, sizeof path, "%s/clients.json", dir);
    CHECK_OK(fp_write_file_atomic(path, json, strlen(json), 0644));
    fp_allowlist *l = NULL;
    CHECK_OK(fp_allowlist_load(&l, path));
    CHECK(fp_allowlist_count(l) == 2);
    long ia = fp_allowlist_find(l, a.pk), ib = fp_allowlist_find(l, b.pk);
    CHECK(ia >= 0 && ib >= 0 && ia != ib);
    CHECK(ia >= 0 && strcmp(fp_allowlist_name(l, (size_t)ia), "lab-board-1") == 0);
    CHECK(ib >= 0 && strcmp(fp_allowlist_name(l, (size_t)ib), "") == 0);
    CHECK(ia >= 0 && memcmp(fp_allowlist_key(l, (size_t)ia), a.pk, 32) == 0);
    CHECK(fp_allowlist_key(l, 2) == NULL);
    uint8_t other[32];
    memset(other, 9, sizeof other);
    CHECK(fp_allowlist_find(l, other) == -1);
    fp_allowlist_free(l);

    /* an empty list is valid (nobody may connect) */
    CHECK_OK(parse("{\"version\": 1, \"clients\": []}", &l));
    CHECK(fp_allowlist_count(l) == 0);
    fp_allowlist_free(l);

    /* upper-case hex is the same key */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(hex_a[i] >= 'a' && hex_a[i] <= 'f' ? hex_a[i] - 32 : hex_a[i]);
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"key\": \"%s\"}]}", upper);
    CHECK_OK(parse(json, &l));
    CHECK(fp_allowlist_find(l, a.pk) == 0);
    fp_allowlist_free(l);

    expect_bad("[]", FP_EFORMAT, "expected a JSON object");
    expect_bad("{\"clients\": []}", FP_EFORMAT, "missing required field \"version\"");
    expect_bad("{\"version\": 2, \"clients\": []}", FP_EFORMAT, "version 2");
    expect_bad("{\"version\": 1, \"clients\": [], \"x\": 1}", FP_EFORMAT, "unknown field \"x\"");
    expect_bad("{\"version\": 1, \"clients\": {}}", FP_EFORMAT, "must be an array");
    expect_bad("{\"version\": 1, \"clients\": [\"abc\"]}", FP_EFORMAT, "client 0");
    expect_bad("{\"version\": 1, \"clients\": [{\"key\": \"abcd\"}]}", FP_EFORMAT, "64 hex digits");
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"key\": \"%.63sg\"}]}", hex_a);
    expect_bad(json, FP_EFORMAT, "64 hex digits");
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"key\": \"%s\", \"role\": 1}]}", hex_a);
    expect_bad(json, FP_EFORMAT, "unknown field \"role\"");
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"key\": \"%s\", \"name\": \"\"}]}", hex_a);
    expect_bad(json, FP_EFORMAT, "\"name\"");
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"key\": \"%s\", \"name\": \"a\\nb\"}]}",
             hex_a);
    expect_bad(json, FP_EFORMAT, "printable");
    snprintf(json, sizeof json,
             "{\"version\": 1, \"clients\": [{\"key\": \"%s\"}, {\"key\": \"%s\"}, {\"key\": \"%s\"}]}",
             hex_a, hex_b, hex_a);
    expect_bad(json, FP_EFORMAT, "listed twice");
    /* a small-order point is no usable key */
    expect_bad("{\"version\": 1, \"clients\": [{\"key\": "
               "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
               FP_ECRYPTO, "not a valid Ed25519");
    /* The same key with the sign bit of x flipped converts to the same X25519
     * key; the server could not tell the two apart. */
    uint8_t neg[32];
    memcpy(neg, a.pk, 32);
    neg[31] ^= 0x80;
    char hex_neg[65];
    sodium_bin2hex(hex_neg, sizeof hex_neg, neg, 32);
    snprintf(json, sizeof json, "{\"version\": 1, \"clients\": [{\"key\": \"%s\"}, {\"key\": \"%s\"}]}",
             hex_a, hex_neg);
    expect_bad(json, FP_EFORMAT, "same Curve25519 form");

    snprintf(path, sizeof path, "%s/missing.json", dir);
    CHECK_ERR(fp_allowlist_load(&l, path), FP_ENOTFOUND);

    uint8_t keys[2][32];
    memcpy(keys[0], a.pk, 32);
    memcpy(keys[1], a.pk, 32);
    CHECK_ERR(fp_allowlist_from_keys(&l, (const uint8_t(*)[32])keys, 2), FP_EFORMAT);
    memcpy(keys[1], b.pk, 32);
    CHECK_OK(fp_allowlist_from_keys(&l, (const uint8_t(*)[32])keys, 2));
    CHECK(fp_allowlist_count(l) == 2 && fp_allowlist_find(l, b.pk) >= 0);
    fp_allowlist_free(l);
    fp_identity_wipe(&a);
    fp_identity_wipe(&b);
    return fp_test_report("test_allowlist");
}
