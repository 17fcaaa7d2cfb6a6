/* Open addressing with linear probing; the table doubles at 1/2 load so probe
 * runs stay short. Keys of fp_strmap live in one arena so a vocabulary of
 * 150k tokens costs one allocation, not 150k. */
#include "model/hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "error_internal.h"

struct fp_strmap_slot {
    uint64_t hash; /* 0 marks an empty slot (real hashes are forced non-zero) */
    size_t key_off;
    size_t key_len;
    int64_t value;
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    /* FNV-1a, then a final avalanche so linear probing sees well-spread bits. */
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static size_t cap_for(size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 2)
        cap *= 2;
    return cap;
}

int fp_strmap_init(fp_strmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    m->cap = cap_for(expected);
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots)
        return fp_seterr(FP_ENOMEM, "out of memory for a hash table of %zu entries", m->cap);
    return 0;
}

void fp_strmap_free(fp_strmap *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

static struct fp_strmap_slot *str_find(const fp_strmap *m, const void *key, size_t len, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct fp_strmap_slot *s = &m->slots[i];
        if (s->hash == 0)
            return s;
        if (s->hash == h && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0)
            return s;
    }
}

static int str_grow(fp_strmap *m)
{
    size_t ncap = m->cap * 2;
    struct fp_strmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return fp_seterr(FP_ENOMEM, "out of memory growing a hash table to %zu entries", ncap);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        size_t j = (size_t)m->slots[i].hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int fp_strmap_put(fp_strmap *m, const void *key, size_t len, int64_t value, int64_t *old)
{
    uint64_t h = hash_bytes(key, len);
    struct fp_strmap_slot *s = str_find(m, key, len, h);
    if (s->hash) {
        if (old)
            *old = s->value;
        return 0;
    }
    if ((m->count + 1) * 2 > m->cap) {
        int rc = str_grow(m);
        if (rc)
            return rc;
        s = str_find(m, key, len, h);
    }
    if (m->keys_len + len > m->keys_cap) {
        size_t ncap = m->keys_cap ? m->keys_cap * 2 : 4096;
        while (ncap < m->keys_len + len)
            ncap *= 2;
        char *nk = realloc(m->keys, ncap);
        if (!nk)
            return fp_seterr(FP_ENOMEM, "out of memory for hash table keys (%zu bytes)", ncap);
        m->keys = nk;
        m->keys_cap = ncap;
    }
    if (len)
        memcpy(m->keys + m->keys_len, key, len);
    s->hash = h;
    s->key_off = m->keys_len;
    s->key_len = len;
    s->value = value;
    m->keys_len += len;
    m->count++;
    return 1;
}

int64_t *fp_strmap_ref(const fp_strmap *m, const void *key, size_t len)
{
    if (!m->slots)
        return NULL;
    struct fp_strmap_slot *s = str_find(m, key, len, hash_bytes(key, len));
    return s->hash ? &s->value : NULL;
}

int fp_strmap_get(const fp_strmap *m, const void *key, size_t len, int64_t *value)
{
    int64_t *r = fp_strmap_ref(m, key, len);
    if (!r)
        return 0;
    if (value)
        *value = *r;
    return 1;
}

int fp_u64map_init(fp_u64map *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    m->cap = cap_for(expected);
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->vals = malloc(m->cap * sizeof *m->vals);
    m->used = calloc(m->cap, 1);
    if (!m->keys || !m->vals || !m->used) {
        fp_u64map_free(m);
        return fp_seterr(FP_ENOMEM, "out of memory for a hash table of %zu entries", cap_for(expected));
    }
    return 0;
}

void fp_u64map_free(fp_u64map *m)
{
    if (!m)
        return;
    free(m->keys);
    free(m->vals);
    free(m->used);
    memset(m, 0, sizeof *m);
}

static size_t u64_find(const fp_u64map *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)hash_u64(key) & mask;
    while (m->used[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

int fp_u64map_put(fp_u64map *m, uint64_t key, int64_t value, int64_t *old)
{
    size_t i = u64_find(m, key);
    if (m->used[i]) {
        if (old)
            *old = m->vals[i];
        return 0;
    }
    if ((m->count + 1) * 2 > m->cap) {
        fp_u64map g;
        int rc = fp_u64map_init(&g, m->cap / 2 + 1); /* doubles the capacity */
        if (rc)
            return rc;
        for (size_t j = 0; j < m->cap; j++) {
            if (m->used[j]) {
                size_t k = u64_find(&g, m->keys[j]);
                g.used[k] = 1;
                g.keys[k] = m->keys[j];
                g.vals[k] = m->vals[j];
            }
        }
        g.count = m->count;
        fp_u64map_free(m);
        *m = g;
        i = u64_find(m, key);
    }
    m->used[i] = 1;
    m->keys[i] = key;
    m->vals[i] = value;
    m->count++;
    return 1;
}

int64_t *fp_u64map_ref(const fp_u64map *m, uint64_t key)
{
    if (!m->used)
        return NULL;
    size_t i = u64_find(m, key);
    return m->used[i] ? &m->vals[i] : NULL;
}

int fp_u64map_get(const fp_u64map *m, uint64_t key, int64_t *value)
{
    int64_t *r = fp_u64map_ref(m, key);
    if (!r)
        return 0;
    if (value)
        *value = *r;
    return 1;
}

int fp_strmap_slot(const fp_strmap *m, size_t i, const void **key, size_t *len, int64_t *value)
{
    if (i >= m->cap || !m->slots[i].hash)
        return 0;
    *key = m->keys + m->slots[i].key_off;
    *len = m->slots[i].key_len;
    *value = m->slots[i].value;
    return 1;
}
