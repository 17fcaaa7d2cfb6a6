/* See dir_stage.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 */
#endif
#include "dir_stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"

static atomic_uint stage_counter;

/* the parent directory of path ("." when none) */
static void parent_of(char *out, size_t cap, const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0)
        snprintf(out, cap, ".");
    else
        snprintf(out, cap, "%.*s", (int)n, path);
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return fp_seterr(FP_EIO, "cannot open %s to sync it: %s", path, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL) /* EINVAL: this filesystem cannot sync directories */
        rc = fp_seterr(FP_EIO, "fsync %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int fp_dir_stage(char *tmp, size_t cap, const char *dir)
{
    if (!tmp || !dir || !dir[0])
        return fp_seterr(FP_EINVAL, "fp_dir_stage: NULL argument or empty directory name");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    char parent[4096];
    parent_of(parent, sizeof parent, dir);
    int rc = fp_mkdirs(parent, 0755);
    if (rc)
        return rc;
    for (int tries = 0; tries < 100; tries++) {
        int w = snprintf(tmp, cap, "%.*s.tmp.%ld.%u", (int)n, dir, (long)getpid(),
                         atomic_fetch_add(&stage_counter, 1u));
        if (w < 0 || (size_t)w >= cap)
            return fp_seterr(FP_EINVAL, "path too long: %s", dir);
        if (mkdir(tmp, 0755) == 0)
            return 0;
        if (errno != EEXIST)
            return fp_seterr(FP_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    return fp_seterr(FP_EIO, "cannot create a temporary directory next to %s", dir);
}

/* the replaced directory, once the new one is in place: failing to remove it
 * leaves clutter, not a wrong output, so it is a warning */
static int drop_old(const char *old)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fp_errmsg());
    if (fp_rmtree(old) != 0) {
        fp_warn("the replaced directory %s could not be removed: %s", old, fp_errmsg());
        fp_seterr(0, "%s", msg);
    }
    return 0;
}

int fp_dir_commit(const char *tmp, const char *dir)
{
    if (!tmp || !dir)
        return fp_seterr(FP_EINVAL, "fp_dir_commit: NULL argument");
    DIR *d = opendir(tmp);
    if (!d)
        return fp_seterr(FP_EIO, "cannot open %s: %s", tmp, strerror(errno));
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            rc = fsync_path(p, 0);
    }
    closedir(d);
    if (rc || (rc = fsync_path(tmp, 1)))
        return rc;
    char parent[4096];
    parent_of(parent, sizeof parent, dir);
    if (rename(tmp, dir) == 0)
        return fsync_path(parent, 1);
    if (errno != EEXIST && errno != ENOTEMPTY)
        return fp_seterr(FP_EIO, "cannot rename %s to %s: %s", tmp, dir, strerror(errno));
    /* dir exists: swap atomically, then tmp holds the old contents */
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        if ((rc = fsync_path(parent, 1)))
            return rc;
        return drop_old(tmp);
    }
    if (errno != EINVAL && errno != ENOSYS)
        return fp_seterr(FP_EIO, "cannot exchange %s and %s: %s", tmp, dir, strerror(errno));
#endif
    /* no exchange here: move the old one aside, then the new one in */
    char old[4400];
    snprintf(old, sizeof old, "%s.old", tmp);
    if (rename(dir, old) != 0)
        return fp_seterr(FP_EIO, "cannot move %s aside: %s", dir, strerror(errno));
    if (rename(tmp, dir) != 0) {
        int e = errno;
        rename(old, dir);
        return fp_seterr(FP_EIO, "cannot rename %s to %s: %s", tmp, dir, strerror(e));
    }
    if ((rc = fsync_path(parent, 1)))
        return rc;
    return drop_old(old);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(p) : unlink(p);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

int fp_rmtree(const char *path)
{
    if (!path || !path[0])
        return fp_seterr(FP_EINVAL, "fp_rmtree: empty path");
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : fp_seterr(FP_EIO, "cannot stat %s: %s", path, strerror(errno));
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return fp_seterr(FP_EIO, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}
