/* Shared between the safetensors reader (one file) and the sharded-set opener. */
#ifndef FP_SAFETENSORS_INTERNAL_H
#define FP_SAFETENSORS_INTERNAL_H

#include "fedproxy/safetensors.h"
#include "model/hashmap.h"

struct st_map {
    char *path;
    void *base; /* mmap of the whole file; NULL for an empty mapping */
    size_t size;
    size_t first; /* its tensors are tensors[first .. next map's first (or n)) */
};

struct fp_st_file {
    struct st_map *maps;
    size_t n_maps, cap_maps;
    fp_st_tensor *tensors; /* names are malloc'd and owned */
    size_t n, cap;
    fp_strmap by_name; /* name -> index into tensors */
    char **meta;       /* key, value, key, value ... (owned) */
    size_t n_meta;
};

/* A new, empty set. */
int st_file_new(fp_st_file **out);

/* Maps path, validates it and appends its tensors to f. A name already in f is
 * FP_EFORMAT. keep_meta: store the file's __metadata__ in f. On failure f is
 * unchanged except that it may hold the extra mapping (freed with f). */
int st_file_append(fp_st_file *f, const char *path, int keep_meta);

#endif
