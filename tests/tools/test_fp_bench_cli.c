/* fp bench kernels --only as a user runs it: a list of families runs in the
 * order given, a family named twice is reported twice (the second under
 * "<family>_2"), and an unknown family is refused by name with exit status 2
 * before any benchmark runs. The aggregation family is made small here
 * (FP_BENCH_AGG_D, FP_BENCH_AGG_ONLY) so the test stays a few seconds on
 * lavapipe; its figures are not judged, only that each run measured some.
 * The benchmark runs with the validation layer on and must stay silent. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fp_test.h"

/* the file at path, NUL-terminated (malloc'd), or NULL */
static char *read_text(const char *path)
{
    void *d = NULL;
    size_t n;
    return fp_read_file(&d, &n, path, 1 << 20) ? NULL : d;
}

/* the aggregation result under key: copy measured, and wsum at K = 10 timed */
static int agg_measured(const cJSON *root, const char *key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    const cJSON *copy = cJSON_GetObjectItemCaseSensitive(a, "copy_gbps");
    if (!cJSON_IsNumber(copy) || !(copy->valuedouble > 0))
        return 0;
    const cJSON *ks = cJSON_GetObjectItemCaseSensitive(a, "kernels");
    int wsum = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, ks)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(k, "kernel");
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(k, "gbps");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, "wsum") && cJSON_IsNumber(g) && g->valuedouble > 0)
            wsum++;
    }
    return wsum > 0;
}

int main(void)
{
    const char *tmp = fp_test_tmpdir("bench_cli");
    char cmd[8192], *out = NULL;

    /* a family named twice: both runs reported, in order, under distinct keys */
    snprintf(cmd, sizeof cmd,
             "FP_VALIDATE=1 FP_BENCH_AGG_D=1024 FP_BENCH_AGG_ONLY=wsum %s/tools/fp bench kernels --quick --json "
             "--only aggregate,aggregate 2>%s/stderr.txt",
             FP_BINARY_DIR, tmp);
    int st = fp_test_run(cmd, &out);
    CHECKF(st == 0, "fp bench kernels --only aggregate,aggregate exited %d", st);
    cJSON *j = cJSON_Parse(out);
    CHECKF(j != NULL, "not JSON: %.300s", out);
    CHECKF(agg_measured(j, "aggregate"), "first aggregate run missing or unmeasured: %.300s", out);
    CHECKF(agg_measured(j, "aggregate_2"), "second aggregate run (aggregate_2) missing or unmeasured: %.300s", out);
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "matmul") == NULL); /* only what was named */
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "aggregate_3") == NULL);
    /* order: the first child after "device"/"copy_gbps" is "aggregate", then "aggregate_2" */
    const cJSON *c, *first = NULL, *second = NULL;
    cJSON_ArrayForEach(c, j)
    {
        if (!strncmp(c->string, "aggregate", 9)) {
            if (!first)
                first = c;
            else if (!second)
                second = c;
        }
    }
    CHECK(first && !strcmp(first->string, "aggregate") && second && !strcmp(second->string, "aggregate_2"));
    cJSON_Delete(j);
    free(out);
    /* the child ran with validation on: the layer must not have said anything */
    char path[4096];
    snprintf(path, sizeof path, "%s/stderr.txt", tmp);
    char *err = read_text(path);
    CHECKF(err && !strstr(err, "validation"), "fp bench stderr: %s", err ? err : "(unreadable)");
    free(err);

    /* an unknown family: exit 2, named on stderr, nothing benchmarked */
    snprintf(cmd, sizeof cmd, "%s/tools/fp bench kernels --json --only aggregate,matmull 2>%s/stderr2.txt",
             FP_BINARY_DIR, tmp);
    st = fp_test_run(cmd, &out);
    CHECKF(st == 2, "unknown family: exit %d, want 2", st);
    snprintf(path, sizeof path, "%s/stderr2.txt", tmp);
    err = read_text(path);
    CHECKF(err && strstr(err, "unknown family 'matmull'"), "stderr does not name the family: %s", err ? err : "");
    CHECKF(strstr(out, "copy_gbps") == NULL, "benchmarked before refusing: %.200s", out);
    free(err);
    free(out);
    return fp_test_report("test_fp_bench_cli");
}
