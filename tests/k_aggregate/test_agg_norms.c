/* Per-client L2 norms and clipping, every stage-1 variant (fp_agg_norms picks
 * "flat" on CPU devices and "tree" on GPUs; FP_AGG_NORM forces either so that
 * lavapipe runs both), under every built-in overlay, the native profile, and
 * a custom overlay that only widens the subgroup range down to 4 (flat with
 * subgroups then reserves twice the partials a lavapipe workgroup has
 * subgroups for: the unused slots must be written 0) and one with 64 KiB
 * bindings (row groups and column chunks).
 *
 * Checks: norms vs fp_agg_norms_ref (which accumulates in double) by NMSE <=
 * 1e-7 and relative error <= 1e-5 per client (the device sums squares in f32:
 * at most a few thousand positive terms per chain here, relative error ~1e-6
 * worst); clipping vs fp_agg_clip_ref by NMSE <= 1e-7. The scratch tensor is
 * filled with NaN first, so a partial slot the kernels leave unwritten turns
 * a norm into NaN and fails the check. Shapes: K = 1, 33, 100 and D = 1, 7,
 * 257 (scalar loads), 1000 (vec4), plus several workgroups per row (vec4 and
 * a scalar tail), a tiny per-invocation slice (FP_AGG_NORM_ITEMS=12: partial
 * last slices, many workgroups) and 64-invocation flat workgroups (several
 * subgroups each). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/ops_aggregate.h"
#include "fp_test.h"

static char seen[32][96]; /* variant lines printed for the current profile */
static int nseen;

typedef struct ncase {
    int64_t K, D;
} ncase;

static void one(fp_ctx *ctx, fp_stream *s, int64_t K, int64_t D, const char *mode)
{
    size_t kd = (size_t)(K * D);
    float *X = malloc(kd * 4), *X2 = malloc(kd * 4), *Y = malloc(kd * 4), *n = malloc((size_t)K * 4),
          *r = malloc((size_t)K * 4);
    int64_t ws = fp_agg_norms_worksize(ctx, K, D);
    float *nan = malloc((size_t)ws * 4);
    CHECK(X && X2 && Y && n && r && nan && ws > 0);
    if (!X || !X2 || !Y || !n || !r || !nan || ws <= 0)
        goto out;
    for (size_t i = 0; i < kd; i++)
        X[i] = fp_test_normal() * (0.5f + (float)(i / (size_t)D % 5)); /* clients of different norms */
    for (int64_t i = 0; i < ws; i++)
        nan[i] = NAN;
    int64_t shp[2] = {K, D};
    fp_tensor *tX = NULL, *tn = NULL, *tw = NULL;
    CHECK_OK(fp_tensor_new(&tX, ctx, FP_F32, 2, shp));
    CHECK_OK(fp_tensor_new(&tn, ctx, FP_F32, 1, &K));
    CHECK_OK(fp_tensor_new(&tw, ctx, FP_F32, 1, &ws));
    if (!tX || !tn || !tw)
        goto done;
    CHECK_OK(fp_tensor_upload(tX, X, kd * 4));
    CHECK_OK(fp_tensor_upload(tw, nan, (size_t)ws * 4));
    CHECK_OK(fp_agg_norms(s, tn, tX, tw));
    CHECK_OK(fp_stream_run(s));
    char variant[64];
    snprintf(variant, sizeof variant, "%s", fp_agg_last_variant());
    CHECK_OK(fp_tensor_download(n, (size_t)K * 4, tn));
    CHECK_OK(fp_agg_norms_ref(r, X, K, D));
    double nmse = fp_test_nmse(n, r, (size_t)K), rel = 0;
    for (int64_t k = 0; k < K; k++) {
        double e = isfinite(n[k]) ? fabs((double)n[k] - r[k]) / r[k] : INFINITY;
        if (!(e <= rel))
            rel = e;
    }
    CHECKF(nmse <= 1e-7 && rel <= 1e-5, "norms %s K=%lld D=%lld (%s): nmse %.3g, max rel %.3g", mode, (long long)K,
           (long long)D, variant, nmse, rel);
    /* clip every client above 70% of client 0's norm */
    float c = r[0] * 0.7f;
    memcpy(X2, X, kd * 4);
    CHECK_OK(fp_agg_clip_ref(X2, r, c, K, D));
    CHECK_OK(fp_agg_clip(s, tX, tn, c));
    CHECK_OK(fp_stream_run(s));
    CHECK_OK(fp_tensor_download(Y, kd * 4, tX));
    double cn = fp_test_nmse(Y, X2, kd);
    CHECKF(cn <= 1e-7, "clip %s K=%lld D=%lld (%s): nmse %.3g", mode, (long long)K, (long long)D,
           fp_agg_last_variant(), cn);
    char line[96];
    snprintf(line, sizeof line, "%s: norms=%s clip=%s", mode, variant, fp_agg_last_variant());
    int fresh = 1;
    for (int i = 0; i < nseen; i++)
        fresh &= strcmp(seen[i], line) != 0;
    if (fresh && nseen < 32) {
        snprintf(seen[nseen++], sizeof seen[0], "%s", line);
        printf("  variant %s\n", line);
    }
done:
    fp_tensor_free(tX);
    fp_tensor_free(tn);
    fp_tensor_free(tw);
out:
    free(X), free(X2), free(Y), free(n), free(r), free(nan);
}

typedef struct mode {
    const char *name, *norm, *items, *wg;
    int all_profiles;
} mode;

int main(void)
{
    fp_test_seed(3);
    static const ncase cases[] = {{1, 1},   {33, 1},   {100, 1},   {1, 7},      {33, 7},    {100, 7},
                                  {1, 257}, {33, 257}, {100, 257}, {1, 1000},   {33, 1000}, {100, 1000},
                                  {2, 65536}, {3, 100003}};
    static const mode modes[] = {
        {"default", NULL, NULL, NULL, 1},
        {"tree", "tree", NULL, NULL, 1},
        {"flat items=12", "flat", "12", NULL, 0},
        {"flat wg=64", "flat", NULL, "64", 0},
    };
    char sg4[512];
    snprintf(sg4, sizeof sg4, "%s/sg4.json", fp_test_tmpdir("agg_norms"));
    FILE *f = fopen(sg4, "w");
    CHECK(f != NULL);
    if (!f)
        return fp_test_report("test_agg_norms");
    fputs("{\"name\": \"sg4\", \"subgroup_min\": 4}\n", f);
    fclose(f);
    /* 64 KiB bindings: row groups (K = 100 x D = 1000) and column chunks (D = 65536, 100003) */
    char tiny[512];
    snprintf(tiny, sizeof tiny, "%s/tiny-range.json", fp_test_tmpdir("agg_norms"));
    f = fopen(tiny, "w");
    CHECK(f != NULL);
    if (!f)
        return fp_test_report("test_agg_norms");
    fputs("{\"name\": \"tiny-range\", \"storage_range\": 65536}\n", f);
    fclose(f);
    const char *profiles[16] = {"", sg4, tiny};
    const char *pname[16] = {"", "sg4", "tiny-range"};
    int np = 3;
    for (int i = 0; fp_overlay_builtin_names[i] && np < 16; i++, np++)
        profiles[np] = pname[np] = fp_overlay_builtin_names[i];
    for (int p = 0; p < np; p++) {
        fp_ctx *ctx = fp_test_ctx(profiles[p]);
        if (!ctx)
            continue;
        const fp_profile *pr = fp_ctx_profile(ctx);
        printf("profile '%s' (subgroup ops %d, sizes %u..%u)\n", pname[p], pr->subgroup_ops,
               pr->subgroup_min, pr->subgroup_max);
        fp_stream *s = NULL;
        CHECK_OK(fp_stream_new(&s, ctx));
        nseen = 0;
        for (size_t m = 0; m < sizeof modes / sizeof modes[0] && s; m++) {
            /* every mode on native, sg4, tiny-range and minimal; the other overlays run the main ones */
            if (!modes[m].all_profiles && p > 2 && strcmp(profiles[p], "minimal"))
                continue;
            modes[m].norm ? setenv("FP_AGG_NORM", modes[m].norm, 1) : unsetenv("FP_AGG_NORM");
            modes[m].items ? setenv("FP_AGG_NORM_ITEMS", modes[m].items, 1) : unsetenv("FP_AGG_NORM_ITEMS");
            modes[m].wg ? setenv("FP_AGG_NORM_WG", modes[m].wg, 1) : unsetenv("FP_AGG_NORM_WG");
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
                one(ctx, s, cases[c].K, cases[c].D, modes[m].name);
        }
        unsetenv("FP_AGG_NORM");
        unsetenv("FP_AGG_NORM_ITEMS");
        unsetenv("FP_AGG_NORM_WG");
        fp_stream_free(s);
        fp_test_ctx_done(ctx);
    }
    return fp_test_report("test_agg_norms");
}
