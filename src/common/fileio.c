#include "fedproxy/fileio.h"
#include "error_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint tmp_counter;

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return 0;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        return 0; /* best effort: the rename itself already happened */
    fsync(fd);
    close(fd);
    return 0;
}

int fp_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    if (!path || (!data && len))
        return fp_seterr(FP_EINVAL, "fp_write_file_atomic: NULL argument");
    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
                     atomic_fetch_add(&tmp_counter, 1u));
    if (n < 0 || (size_t)n >= sizeof tmp)
        return fp_seterr(FP_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, (mode_t)mode);
    if (fd < 0)
        return fp_seterr(FP_EIO, "cannot create %s: %s", tmp, strerror(errno));
    const unsigned char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return fp_seterr(FP_EIO, "write to %s failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fp_seterr(FP_EIO, "fsync of %s failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fp_seterr(FP_EIO, "rename %s -> %s failed: %s", tmp, path, strerror(e));
    }
    return fsync_dir_of(path);
}

int fp_read_file(void **data, size_t *len, const char *path, size_t max_len)
{
    if (!data || !len || !path)
        return fp_seterr(FP_EINVAL, "fp_read_file: NULL argument");
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fp_seterr(errno == ENOENT ? FP_ENOTFOUND : FP_EIO, "cannot open %s: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fp_seterr(FP_EIO, "%s is not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_len) {
        fclose(f);
        return fp_seterr(FP_EFORMAT, "%s is %lld bytes, more than the %zu allowed", path,
                         (long long)st.st_size, max_len);
    }
    size_t sz = (size_t)st.st_size;
    char *buf = malloc(sz + 1);
    if (!buf) {
        fclose(f);
        return fp_seterr(FP_ENOMEM, "cannot allocate %zu bytes for %s", sz + 1, path);
    }
    size_t got = fread(buf, 1, sz, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != sz) {
        free(buf);
        return fp_seterr(FP_EIO, "short read of %s (%zu of %zu bytes)", path, got, sz);
    }
    buf[sz] = '\0';
    *data = buf;
    *len = sz;
    return 0;
}

int fp_mkdirs(const char *path, unsigned mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return fp_seterr(FP_EINVAL, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
                return fp_seterr(FP_EIO, "cannot create directory %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return 0;
}

int fp_cache_dir(char *out, size_t out_len)
{
    const char *d = getenv("FP_CACHE_DIR");
    int n;
    if (d && d[0]) {
        n = snprintf(out, out_len, "%s", d);
    } else if ((d = getenv("XDG_CACHE_HOME")) && d[0]) {
        n = snprintf(out, out_len, "%s/fedproxy", d);
    } else if ((d = getenv("HOME")) && d[0]) {
        n = snprintf(out, out_len, "%s/.cache/fedproxy", d);
    } else {
        return fp_seterr(FP_ENOTFOUND, "no cache directory: set FP_CACHE_DIR or HOME");
    }
    if (n < 0 || (size_t)n >= out_len)
        return fp_seterr(FP_EINVAL, "cache directory path too long");
    return fp_mkdirs(out, 0755);
}
