/* The server's allow-list of client keys, clients.json (format in fedproxy/transport.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/json_check.h"
#include "net_internal.h"

typedef struct entry {
    uint8_t key[FP_NET_KEY_BYTES];
    uint8_t curve[32];
    char name[FP_ALLOWLIST_NAME_MAX + 1];
} entry;

struct fp_allowlist {
    size_t n;
    entry *e;       /* sorted by key: lookups by bsearch, duplicates adjacent */
    uint32_t *by_curve; /* indices into e, sorted by curve key */
};

void fp_net_keyname(char out[20], const uint8_t key[32])
{
    sodium_bin2hex(out, 17, key, 8);
    memcpy(out + 16, "..", 3);
}

int64_t fp_net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_entry(const void *a, const void *b)
{
    return memcmp(((const entry *)a)->key, ((const entry *)b)->key, FP_NET_KEY_BYTES);
}

/* qsort has no context argument; the curve index sort reads the table here.
 * Only used inside finish(), which callers never run concurrently on one list
 * being built (each build has its own list), but two threads building lists
 * at once would race, so the table pointer is thread-local. */
static _Thread_local const entry *sort_table;
static int cmp_curve_idx(const void *a, const void *b)
{
    return memcmp(sort_table[*(const uint32_t *)a].curve, sort_table[*(const uint32_t *)b].curve, 32);
}

void fp_allowlist_free(fp_allowlist *a)
{
    if (!a)
        return;
    free(a->e);
    free(a->by_curve);
    free(a);
}

/* Sorts, rejects duplicates, builds the curve index. what names the source. */
static int finish(fp_allowlist *a, const char *what)
{
    if (a->n == 0)
        return 0;
    qsort(a->e, a->n, sizeof *a->e, cmp_entry);
    for (size_t i = 1; i < a->n; i++)
        if (memcmp(a->e[i - 1].key, a->e[i].key, FP_NET_KEY_BYTES) == 0) {
            char k[20];
            fp_net_keyname(k, a->e[i].key);
            return fp_seterr(FP_EFORMAT, "%s: client key %s listed twice", what, k);
        }
    a->by_curve = malloc(a->n * sizeof *a->by_curve);
    if (!a->by_curve)
        return fp_seterr(FP_ENOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < a->n; i++)
        a->by_curve[i] = (uint32_t)i;
    sort_table = a->e;
    qsort(a->by_curve, a->n, sizeof *a->by_curve, cmp_curve_idx);
    sort_table = NULL;
    /* Ed25519 keys that differ only in the sign of x convert to one X25519 key;
     * CURVE could not tell such clients apart, so the list may not hold both. */
    for (size_t i = 1; i < a->n; i++)
        if (memcmp(a->e[a->by_curve[i - 1]].curve, a->e[a->by_curve[i]].curve, 32) == 0) {
            char k[20];
            fp_net_keyname(k, a->e[a->by_curve[i]].key);
            return fp_seterr(FP_EFORMAT, "%s: client key %s has the same Curve25519 form as another",
                             what, k);
        }
    return 0;
}

static int set_key(entry *e, const uint8_t key[FP_NET_KEY_BYTES], const char *what, size_t i)
{
    memcpy(e->key, key, FP_NET_KEY_BYTES);
    if (fp_identity_pk_to_curve25519(e->curve, key) != 0)
        return fp_seterr(FP_ECRYPTO, "%s: client %zu: key is not a valid Ed25519 public key", what, i);
    return 0;
}

int fp_allowlist_from_keys(fp_allowlist **out, const uint8_t (*keys)[FP_NET_KEY_BYTES], size_t n)
{
    if (!out || (!keys && n))
        return fp_seterr(FP_EINVAL, "fp_allowlist_from_keys: missing argument");
    *out = NULL;
    if (n > FP_ALLOWLIST_MAX)
        return fp_seterr(FP_EFORMAT, "allow-list of %zu keys exceeds the limit %u", n, FP_ALLOWLIST_MAX);
    fp_allowlist *a = calloc(1, sizeof *a);
    if (!a || (n && !(a->e = calloc(n, sizeof *a->e)))) {
        fp_allowlist_free(a);
        return fp_seterr(FP_ENOMEM, "allow-list: out of memory for %zu keys", n);
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++, a->n++)
        rc = set_key(&a->e[i], keys[i], "allow-list", i);
    if (!rc)
        rc = finish(a, "allow-list");
    if (rc) {
        fp_allowlist_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int fp_allowlist_parse(fp_allowlist **out, const char *json, size_t len, const char *what)
{
    static const fp_json_field top[] = {
        {"version", FP_JSON_UINT, 1},
        {"clients", FP_JSON_ARRAY, 1},
    };
    static const fp_json_field client[] = {
        {"name", FP_JSON_STRING, 0},
        {"key", FP_JSON_STRING, 1},
    };
    if (!what)
        what = "clients.json";
    if (!out)
        return fp_seterr(FP_EINVAL, "%s: missing output", what);
    *out = NULL;
    cJSON *root = NULL;
    int rc = fp_json_parse(&root, json, len, top, 2, what);
    if (rc)
        return rc;
    fp_allowlist *a = NULL;
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "clients");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (ver->valuedouble != 1) {
        rc = fp_seterr(FP_EFORMAT, "%s: version %.0f, this build reads version 1", what, ver->valuedouble);
        goto done;
    }
    if (n > FP_ALLOWLIST_MAX) {
        rc = fp_seterr(FP_EFORMAT, "%s: %zu clients exceed the limit %u", what, n, FP_ALLOWLIST_MAX);
        goto done;
    }
    a = calloc(1, sizeof *a);
    if (!a || (n && !(a->e = calloc(n, sizeof *a->e)))) {
        rc = fp_seterr(FP_ENOMEM, "%s: out of memory for %zu clients", what, n);
        goto done;
    }
    size_t i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        char ctx[96];
        snprintf(ctx, sizeof ctx, "%s: client %zu", what, i);
        if ((rc = fp_json_check(it, client, 2, ctx)))
            goto done;
        const char *hex = cJSON_GetObjectItemCaseSensitive(it, "key")->valuestring;
        uint8_t key[FP_NET_KEY_BYTES];
        if (strlen(hex) != 2 * FP_NET_KEY_BYTES ||
            fp_hex_decode(key, sizeof key, hex, 2 * FP_NET_KEY_BYTES) != 0) {
            rc = fp_seterr(FP_EFORMAT, "%s: \"key\" must be 64 hex digits", ctx);
            goto done;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (name) {
            size_t nl = strlen(name->valuestring);
            int ok = nl >= 1 && nl <= FP_ALLOWLIST_NAME_MAX;
            for (size_t k = 0; ok && k < nl; k++)
                ok = name->valuestring[k] >= 0x20 && name->valuestring[k] < 0x7f;
            if (!ok) {
                rc = fp_seterr(FP_EFORMAT, "%s: \"name\" must be 1..%u printable ASCII characters",
                               ctx, FP_ALLOWLIST_NAME_MAX);
                goto done;
            }
            memcpy(a->e[i].name, name->valuestring, nl + 1);
        }
        if ((rc = set_key(&a->e[i], key, what, i)))
            goto done;
        a->n++;
    }
    rc = finish(a, what);
done:
    cJSON_Delete(root);
    if (rc) {
        fp_allowlist_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int fp_allowlist_load(fp_allowlist **out, const char *path)
{
    if (!out || !path)
        return fp_seterr(FP_EINVAL, "fp_allowlist_load: missing argument");
    *out = NULL;
    void *text = NULL;
    size_t len = 0;
    int rc = fp_read_file(&text, &len, path, FP_ALLOWLIST_FILE_MAX);
    if (rc)
        return rc;
    rc = fp_allowlist_parse(out, text, len, path);
    free(text);
    return rc;
}

int fp_allowlist_dup(fp_allowlist **out, const fp_allowlist *a)
{
    *out = NULL;
    fp_allowlist *b = calloc(1, sizeof *b);
    if (!b)
        return fp_seterr(FP_ENOMEM, "allow-list copy: out of memory");
    if (a->n) {
        b->e = malloc(a->n * sizeof *b->e);
        b->by_curve = malloc(a->n * sizeof *b->by_curve);
        if (!b->e || !b->by_curve) {
            fp_allowlist_free(b);
            return fp_seterr(FP_ENOMEM, "allow-list copy: out of memory for %zu keys", a->n);
        }
        memcpy(b->e, a->e, a->n * sizeof *b->e);
        memcpy(b->by_curve, a->by_curve, a->n * sizeof *b->by_curve);
    }
    b->n = a->n;
    *out = b;
    return 0;
}

size_t fp_allowlist_count(const fp_allowlist *a) { return a ? a->n : 0; }

const uint8_t *fp_allowlist_key(const fp_allowlist *a, size_t i)
{
    return a && i < a->n ? a->e[i].key : NULL;
}

const char *fp_allowlist_name(const fp_allowlist *a, size_t i)
{
    return a && i < a->n ? a->e[i].name : NULL;
}

long fp_allowlist_find(const fp_allowlist *a, const uint8_t key[FP_NET_KEY_BYTES])
{
    if (!a || !key || a->n == 0)
        return -1;
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(a->e[mid].key, key, FP_NET_KEY_BYTES);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

long fp_allowlist_find_curve(const fp_allowlist *a, const uint8_t curve[32])
{
    if (!a || !curve || a->n == 0)
        return -1;
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t idx = a->by_curve[mid];
        int c = memcmp(a->e[idx].curve, curve, 32);
        if (c == 0)
            return (long)idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}
