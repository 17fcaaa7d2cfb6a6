/* Whole-directory atomic replacement for outputs made of several files (a
 * merged, possibly sharded model): everything is written into a fresh sibling
 * "<dir>.tmp.<pid>.<n>", fsynced, and swapped into place in one rename, so a
 * reader — or a crash — sees the old directory or the whole new one, never a
 * mix. Internal to the library (src/); threading: safe, paths are per call. */
#ifndef FP_DIR_STAGE_H
#define FP_DIR_STAGE_H

#include <stddef.h>

/* Creates an empty sibling directory of dir (mode 0755) and writes its path
 * into tmp (cap bytes). dir's parent must exist (it is created if not). */
int fp_dir_stage(char *tmp, size_t cap, const char *dir);

/* fsyncs every file in tmp and tmp itself, then puts tmp at dir: a rename when
 * dir does not exist, else an atomic exchange (renameat2 RENAME_EXCHANGE; two
 * renames where the filesystem lacks it) after which the old dir is removed.
 * The caller has decided that replacing dir is allowed. The parent is fsynced. */
int fp_dir_commit(const char *tmp, const char *dir);

/* rm -r path (no error when it does not exist; symlinks are removed, never followed). */
int fp_rmtree(const char *path);

#endif
