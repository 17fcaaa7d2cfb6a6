/* fedproxy: safetensors files (Hugging Face's tensor container), read and write.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value"}}, then the data section; offsets are relative
 * to the start of the data section.
 *
 * Reading maps the file read-only (mmap) and validates the whole header before
 * handing anything out: header length sane, JSON an object, every tensor with a
 * known dtype, a shape of rank <= 8 of non-negative integers, offsets inside the
 * data section whose length is exactly numel x dtype size, names unique and no
 * two tensors overlapping. A violation is FP_EFORMAT with a message naming the
 * file and the tensor. Tensor data pointers point into the mapping: no copy, no
 * alignment guarantee (use memcpy or the fp_st_to_f32 helper).
 *
 * A fp_st_file is one file or a merged view of a sharded checkpoint (a directory
 * with model.safetensors.index.json); the calls below do not care which.
 *
 * Ownership: a fp_st_file owns its mappings, names and tensor table; pointers it
 * hands out live until fp_st_close. Threading: an open fp_st_file is read-only
 * and may be shared between threads; opening and closing are per caller.
 */
#ifndef FEDPROXY_SAFETENSORS_H
#define FEDPROXY_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. The engine uses F32, F16 and BF16; the others are readable so
 * that any ordinary checkpoint opens (e.g. an I64 position-ids buffer). */
enum fp_st_dtype {
    FP_ST_F32 = 1,
    FP_ST_F16 = 2,
    FP_ST_BF16 = 3,
    FP_ST_F64 = 4,
    FP_ST_I32 = 5,
    FP_ST_I64 = 6,
    FP_ST_U8 = 7
};

#define FP_ST_MAX_RANK 8

typedef struct fp_st_tensor {
    const char *name;
    int dtype;                       /* enum fp_st_dtype */
    int rank;                        /* 0..FP_ST_MAX_RANK; rank 0 is a scalar */
    int64_t shape[FP_ST_MAX_RANK];   /* shape[0..rank) */
    uint64_t numel;                  /* product of the shape (1 for a scalar) */
    const void *data;                /* nbytes bytes inside the mapping, unaligned */
    size_t nbytes;
} fp_st_tensor;

typedef struct fp_st_file fp_st_file;

/* Opens one .safetensors file. */
int fp_st_open(fp_st_file **out, const char *path);

/* Opens a checkpoint directory: DIR/model.safetensors.index.json if present
 * (weight_map name -> shard file; every shard opened, names unique across
 * shards, every indexed name present in its shard), else DIR/model.safetensors. */
int fp_st_open_dir(fp_st_file **out, const char *dir);

/* Unmaps and frees; NULL is a no-op. */
void fp_st_close(fp_st_file *f);

/* Tensors in a stable order (by shard, then by data offset). */
size_t fp_st_count(const fp_st_file *f);
const fp_st_tensor *fp_st_at(const fp_st_file *f, size_t i);

/* Lookup by name; NULL if absent (no error message set). */
const fp_st_tensor *fp_st_find(const fp_st_file *f, const char *name);

/* The files behind f: one, or every shard in the index's order of first
 * mention. fp_st_file_at returns file i's path (owned by f; NULL past the
 * end) and its tensors' range: fp_st_at(f, j) for *first <= j < *end. */
size_t fp_st_file_count(const fp_st_file *f);
const char *fp_st_file_at(const fp_st_file *f, size_t i, size_t *first, size_t *end);

/* __metadata__ entries (of the first shard for a sharded set; string -> string).
 * fp_st_metadata returns the value for key or NULL. */
size_t fp_st_metadata_count(const fp_st_file *f);
void fp_st_metadata_at(const fp_st_file *f, size_t i, const char **key, const char **value);
const char *fp_st_metadata(const fp_st_file *f, const char *key);

/* "F32", "BF16", ...; NULL for an unknown dtype. fp_st_dtype_size: bytes per
 * element, 0 if unknown. fp_st_dtype_parse: FP_ST_* for a name, 0 if unknown. */
const char *fp_st_dtype_name(int dtype);
size_t fp_st_dtype_size(int dtype);
int fp_st_dtype_parse(const char *name);

/* Converts t (F32, F16 or BF16) to n floats; n must equal t->numel. Other dtypes
 * give FP_EUNSUPPORTED, a wrong n FP_ESHAPE. */
int fp_st_to_f32(float *out, size_t n, const fp_st_tensor *t);

/* Scalar conversions. Widening is exact (inf, nan and subnormals preserved);
 * narrowing rounds to nearest even, overflows to inf and keeps nan a nan. */
float fp_f16_to_f32(uint16_t h);
float fp_bf16_to_f32(uint16_t b);
uint16_t fp_f32_to_f16(float f);
uint16_t fp_f32_to_bf16(float f);

/* ---- writing ---- */

typedef struct fp_st_entry {
    const char *name;
    int dtype;              /* enum fp_st_dtype */
    int rank;
    const int64_t *shape;   /* rank entries, each >= 0 */
    const void *data;       /* numel x dtype size bytes, host byte order = little endian */
} fp_st_entry;

/* Writes path atomically (a temp file in the same directory streamed to, fsynced,
 * renamed over path). Tensor data is streamed from the callers' buffers, never
 * gathered into one buffer. The header is padded with spaces to a multiple of 8
 * bytes (as Hugging Face does), and tensors are laid out widest dtype first so
 * every tensor starts aligned to its element size. metadata: n_meta (key, value)
 * pairs as metadata[2i], metadata[2i+1], written as __metadata__; may be NULL. */
int fp_st_write(const char *path, const fp_st_entry *tensors, size_t n,
                const char *const *metadata, size_t n_meta);

#ifdef __cplusplus
}
#endif
#endif
