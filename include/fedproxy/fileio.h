/* fedproxy: crash-safe file helpers shared by every module that writes to disk.
 *
 * fp_write_file_atomic writes to "<path>.tmp.<pid>.<n>", fsyncs it, renames it
 * over path and fsyncs the directory, so a reader sees either the old file or
 * the whole new one, never a half-written one. Threading: safe.
 */
#ifndef FEDPROXY_FILEIO_H
#define FEDPROXY_FILEIO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* mode: permission bits for the new file (e.g. 0644, 0600 for secrets). */
int fp_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* Reads a whole file into a new malloc'd buffer (NUL-terminated for convenience;
 * the terminator is not counted in *len). Fails with FP_EFORMAT if the file is
 * larger than max_len. The caller frees *data with free(). */
int fp_read_file(void **data, size_t *len, const char *path, size_t max_len);

/* mkdir -p; mode for each created directory. */
int fp_mkdirs(const char *path, unsigned mode);

/* The user's cache directory for fedproxy: $FP_CACHE_DIR, else
 * $XDG_CACHE_HOME/fedproxy, else $HOME/.cache/fedproxy. Created if missing. */
int fp_cache_dir(char *out, size_t out_len);

#ifdef __cplusplus
}
#endif
#endif
