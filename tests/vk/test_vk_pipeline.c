/* Pipelines: lazy creation and reuse, the on-disk cache reused by a second
 * context, and a forced build failure falling back to a simpler variant. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>

#include "fedproxy/ops_basic.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

int main(void)
{
    /* first context: builds pipelines and saves the cache on destroy */
    fp_ctx *ctx = fp_test_ctx("");
    fp_pipeline_stats ps;
    fp_ctx_pipeline_stats(ctx, &ps);
    char path[512];
    snprintf(path, sizeof path, "%s", ps.cache_path);
    CHECK(path[0] != '\0');
    remove(path); /* start cold */
    fp_test_ctx_done(ctx);
    setenv("FP_TRACE_MS", "0", 1); /* 0: every build (Mesa's own shader cache can make one quick) */
    ctx = fp_test_ctx("");
    unsetenv("FP_TRACE_MS");
    fp_ctx_pipeline_stats(ctx, &ps);
    CHECK(ps.cache_bytes_loaded == 0);

    uint32_t spec[3] = {64, 1, 1};
    fp_pipeline *p1, *p2, *p3;
    /* FP_TRACE_MS reports the build on stderr */
    char tpath[600];
    snprintf(tpath, sizeof tpath, "%s/trace.txt", fp_test_tmpdir("vk_pipeline"));
    fflush(stderr);
    int saved = dup(2), fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    CHECK_OK(fp_pipeline_get(&p1, ctx, "axpb_f32", spec, 3));
    fflush(stderr);
    dup2(saved, 2);
    close(fd);
    close(saved);
    char tbuf[512] = "";
    FILE *tf = fopen(tpath, "r");
    if (tf) {
        size_t n = fread(tbuf, 1, sizeof tbuf - 1, tf);
        tbuf[n] = 0;
        fclose(tf);
    }
    CHECKF(strstr(tbuf, "fp trace: pipeline axpb_f32 built: ") != NULL, "trace output: '%s'", tbuf);
    CHECK_OK(fp_pipeline_get(&p2, ctx, "axpb_f32", spec, 3));
    CHECK(p1 == p2); /* created once */
    uint32_t spec32[3] = {32, 1, 1};
    CHECK_OK(fp_pipeline_get(&p3, ctx, "axpb_f32", spec32, 3));
    CHECK(p3 != p1); /* other specialization, other pipeline */
    CHECK_ERR(fp_pipeline_get(&p3, ctx, "no_such_shader", spec, 3), FP_ENOTFOUND);
    fp_ctx_pipeline_stats(ctx, &ps);
    CHECK(ps.pipelines_created == 2);
    fp_test_ctx_done(ctx);

    struct stat st;
    CHECKF(stat(path, &st) == 0 && st.st_size > 0, "pipeline cache %s not written", path);

    /* second run: the cache is loaded */
    ctx = fp_test_ctx("");
    fp_ctx_pipeline_stats(ctx, &ps);
    CHECKF(ps.cache_bytes_loaded == (uint64_t)st.st_size, "loaded %llu of %lld bytes",
           (unsigned long long)ps.cache_bytes_loaded, (long long)st.st_size);
    CHECK(!strcmp(ps.cache_path, path));
    CHECK_OK(fp_pipeline_get(&p1, ctx, "axpb_f32", spec, 3));
    fp_test_ctx_done(ctx);

    /* a corrupt cache file is ignored with a warning, never fatal */
    FILE *f = fopen(path, "wb");
    fputs("garbage that is not a pipeline cache, but long enough to have a header", f);
    fclose(f);
    ctx = fp_test_ctx("");
    fp_ctx_pipeline_stats(ctx, &ps);
    CHECK(ps.cache_bytes_loaded == 0);

    /* forced failure of the fast variant: the simple one is used, with the right result */
    fp_ctx_debug_fail_pipelines(ctx, "copy_vec4");
    fp_variant v[2] = {{"copy_vec4", spec, 3}, {"copy_f32", spec, 3}};
    fp_pipeline *p = NULL;
    uint32_t chosen = 99;
    CHECK_OK(fp_pipeline_get_first(&p, &chosen, ctx, v, 2));
    CHECK(chosen == 1 && p && !strcmp(fp_pipeline_name(p), "copy_f32"));
    fp_ctx_pipeline_stats(ctx, &ps);
    CHECK(ps.fallbacks == 1);
    /* with every variant failing, the error names the pipeline (other specialization
     * constants than above: pipelines already built stay usable) */
    fp_ctx_debug_fail_pipelines(ctx, "copy");
    v[0].spec = v[1].spec = spec32;
    CHECK_ERR(fp_pipeline_get_first(&p, &chosen, ctx, v, 2), FP_EPIPELINE);
    CHECK(strstr(fp_errmsg(), "copy_f32") != NULL);
    fp_ctx_debug_fail_pipelines(ctx, NULL);

    /* a workgroup larger than the profile allows is refused at build time */
    fp_test_ctx_done(ctx);
    ctx = fp_test_ctx("minimal");
    uint32_t big[3] = {128, 1, 1};
    CHECK_ERR(fp_pipeline_get(&p, ctx, "axpb_f32", big, 3), FP_EPIPELINE);
    CHECK(strstr(fp_errmsg(), "minimal") != NULL);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_vk_pipeline");
}
