/* Atomic file writes and bounded reads: what every module that saves state relies on. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "fedproxy/fileio.h"
#include "fp_test.h"

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            n++;
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    const char *dir = fp_test_tmpdir("fileio");
    char path[4200];
    snprintf(path, sizeof path, "%s/state.bin", dir);

    const char first[] = "first version";
    CHECK_OK(fp_write_file_atomic(path, first, sizeof first, 0600));
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    CHECK_OK(fp_write_file_atomic(path, big, sizeof big, 0644));
    void *data = NULL;
    size_t len = 0;
    CHECK_OK(fp_read_file(&data, &len, path, 1 << 20));
    CHECK(len == sizeof big && data && memcmp(data, big, len) == 0);
    free(data);
    CHECK(count_tmp_files(dir) == 0);

    /* over the limit: refused with a message naming the file */
    CHECK_ERR(fp_read_file(&data, &len, path, 1000), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "state.bin") != NULL);
    CHECK(data == NULL);

    /* missing file */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    CHECK_ERR(fp_read_file(&data, &len, missing, 10), FP_ENOTFOUND);

    /* writing into a directory that does not exist fails and leaves nothing */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/no/such/dir/file", dir);
    CHECK_ERR(fp_write_file_atomic(bad, first, sizeof first, 0644), FP_EIO);

    /* the old content survives a failed replacement: simulate by making the dir read-only */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/ro", dir);
    CHECK_OK(fp_mkdirs(sub, 0755));
    char inner[4300];
    snprintf(inner, sizeof inner, "%s/keep.txt", sub);
    CHECK_OK(fp_write_file_atomic(inner, first, sizeof first, 0644));
    if (geteuid() != 0) { /* root ignores directory permissions */
        chmod(sub, 0555);
        CHECK_ERR(fp_write_file_atomic(inner, big, sizeof big, 0644), FP_EIO);
        chmod(sub, 0755);
    }
    CHECK_OK(fp_read_file(&data, &len, inner, 1 << 20));
    CHECK(len == sizeof first && memcmp(data, first, len) == 0);
    free(data);

    return fp_test_report("test_fileio");
}
