/* Internal open-addressing hash maps for the model-format code: byte-string keys
 * (tensor names, vocabulary entries, trainer words) and 64-bit integer keys
 * (BPE symbol pairs). Values are int64. Keys are copied into the map.
 * Not thread-safe for writers; concurrent readers are fine. */
#ifndef FP_MODEL_HASHMAP_H
#define FP_MODEL_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fp_strmap {
    struct fp_strmap_slot *slots; /* capacity entries, power of two */
    size_t cap, count;
    char *keys; /* arena of key bytes */
    size_t keys_len, keys_cap;
} fp_strmap;

/* All functions returning int return FP_ENOMEM (message set) on allocation failure. */
int fp_strmap_init(fp_strmap *m, size_t expected);
void fp_strmap_free(fp_strmap *m);
/* Inserts key -> value. Returns 1 if inserted, 0 if the key was already there
 * (the old value is kept and stored in *old when old is not NULL). */
int fp_strmap_put(fp_strmap *m, const void *key, size_t len, int64_t value, int64_t *old);
/* 1 and *value if found, 0 if not. */
int fp_strmap_get(const fp_strmap *m, const void *key, size_t len, int64_t *value);
/* Pointer to the stored value for update in place, or NULL. Invalidated by put. */
int64_t *fp_strmap_ref(const fp_strmap *m, const void *key, size_t len);
/* Iteration over slots 0..m->cap-1: 1 and the entry if slot i is used, else 0.
 * Key pointers are invalidated by put. */
int fp_strmap_slot(const fp_strmap *m, size_t i, const void **key, size_t *len, int64_t *value);

typedef struct fp_u64map {
    uint64_t *keys;
    int64_t *vals;
    unsigned char *used;
    size_t cap, count;
} fp_u64map;

int fp_u64map_init(fp_u64map *m, size_t expected);
void fp_u64map_free(fp_u64map *m);
int fp_u64map_put(fp_u64map *m, uint64_t key, int64_t value, int64_t *old);
int fp_u64map_get(const fp_u64map *m, uint64_t key, int64_t *value);
int64_t *fp_u64map_ref(const fp_u64map *m, uint64_t key);

#endif
