/* fp bench kernels|train|fed [--json] [--quick] [--only F[,F...]] [--profile]
 * Runs the library's benchmarks on the current device and prints their figures
 * (GFLOP/s, GB/s, tokens/s) with the comparison each names (OpenBLAS sgemm,
 * the device's copy bandwidth, plain aggregation). Speed is only ever reported
 * here, never asserted by tests. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fedproxy/fed.h"
#include "fedproxy/ops_aggregate.h"
#include "fedproxy/ops_attention.h"
#include "fedproxy/ops_matmul.h"
#include "fedproxy/ops_train.h"
#include "fedproxy/probe.h"
#include "fedproxy/runtime.h"
#include "fedproxy/train.h"

typedef int (*bench_fn)(fp_ctx *, int, char **);

static const struct {
    const char *name;
    bench_fn fn;
} kernel_families[] = {
    {"matmul", fp_bench_matmul},
    {"attention", fp_bench_attention},
    {"train_ops", fp_bench_train_ops},
    {"aggregate", fp_bench_aggregate},
};

static void usage(void)
{
    puts("usage: fp bench kernels|train|fed [--json] [--quick] [--only F[,F...]] [--profile]\n"
         "  kernels  matmul (vs OpenBLAS sgemm), attention, training ops, aggregation (vs copy bandwidth)\n"
         "  train    LoRA and full fine-tuning of the benchmark model: tokens/s, GFLOP/s, peak memory;\n"
         "           --profile adds each step's GPU time per pipeline (timestamps around every dispatch)\n"
         "  fed      server time per round for 10/50/100 clients, with and without secure aggregation\n"
         "  fed --aggregators  server time and peak memory of every aggregator at 100 clients x 4 MiB\n"
         "  --only F with kernels: the families F names, in its order (matmul, attention, train_ops,\n"
         "           aggregate; \"aggregate,matmul,aggregate\" runs aggregate twice, the second as aggregate_2);\n"
         "           with fed --aggregators: one aggregator");
}

#define KERNEL_LIST_MAX 16

/* The families `fp bench kernels` runs, in order: all of them, or those `only`
 * names ("aggregate" or "aggregate,matmul,aggregate"), in its order and as
 * often as it names them. Running one family after others in one process shows
 * whether the earlier ones leave the device slower (an H100 once measured the
 * aggregation kernels at half their lone-run bandwidth after the others).
 * Returns -1, having said why, for an unknown name or a list too long. */
static int kernel_list(size_t *order, size_t *n, const char *only)
{
    const size_t nf = sizeof kernel_families / sizeof kernel_families[0];
    *n = 0;
    if (!only) {
        for (size_t i = 0; i < nf; i++)
            order[(*n)++] = i;
        return 0;
    }
    for (const char *p = only;;) {
        size_t len = strcspn(p, ",");
        size_t i = 0;
        while (i < nf && !(strlen(kernel_families[i].name) == len && !strncmp(p, kernel_families[i].name, len)))
            i++;
        if (i == nf) {
            fprintf(stderr, "fp bench kernels: --only: unknown family '%.*s'\n", (int)len, p);
            return -1;
        }
        if (*n == KERNEL_LIST_MAX) {
            fprintf(stderr, "fp bench kernels: --only: more than %d families\n", KERNEL_LIST_MAX);
            return -1;
        }
        order[(*n)++] = i;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* adds the JSON text `s` (freed here) under key, or an error object */
static void add_result(cJSON *root, const char *key, int rc, char *s)
{
    cJSON *j = rc == 0 && s ? cJSON_Parse(s) : NULL;
    if (!j) {
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "error", rc ? fp_errmsg() : "benchmark returned no JSON");
    }
    cJSON_AddItemToObject(root, key, j);
    free(s);
}

int fp_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || fp_cli_flag(argc, argv, "--help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    const char *what = argv[1];
    int json = fp_cli_flag(argc, argv, "--json"), quick = fp_cli_flag(argc, argv, "--quick");
    const char *only = fp_cli_opt(argc, argv, "--only");
    /* the kernel families to run, checked before any device work */
    size_t order[KERNEL_LIST_MAX], n = 0;
    if (!strcmp(what, "kernels") && kernel_list(order, &n, only)) {
        usage();
        return 2;
    }
    cJSON *root = cJSON_CreateObject();
    int failed = 0;

    if (!strcmp(what, "fed") && fp_cli_flag(argc, argv, "--aggregators")) {
        char *s = NULL;
        int rc = fp_bench_aggregators(quick, only, &s);
        failed |= rc != 0;
        add_result(root, "aggregators", rc, s);
    } else if (!strcmp(what, "fed")) {
        char *s = NULL;
        if (!json)
            fprintf(stderr, "fp bench fed: simulating rounds...\n");
        int rc = fp_bench_fed(quick, &s);
        failed |= rc != 0;
        add_result(root, "fed", rc, s);
    } else if (!strcmp(what, "kernels") || !strcmp(what, "train")) {
        fp_ctx *ctx = NULL;
        /* --profile: per-dispatch GPU timestamps (bench train's per-pipeline table) */
        fp_ctx_opts co = {.validate = -1, .profiling = fp_cli_flag(argc, argv, "--profile")};
        int rc = fp_ctx_create(&ctx, &co);
        if (rc) {
            cJSON_Delete(root);
            return fp_cli_fail("bench", rc);
        }
        char *ps = NULL;
        if (fp_profile_to_json(&ps, fp_ctx_profile(ctx)) == 0)
            add_result(root, "device", 0, ps);
        double copy = 0;
        if (fp_probe_copy_bandwidth(&copy, ctx, quick) == 0)
            cJSON_AddNumberToObject(root, "copy_gbps", copy);
        if (!strcmp(what, "kernels")) {
            for (size_t k = 0; k < n; k++) {
                size_t i = order[k];
                if (!json)
                    fprintf(stderr, "[%zu/%zu] %s...\n", k + 1, n, kernel_families[i].name);
                char *s = NULL;
                rc = kernel_families[i].fn(ctx, quick, &s);
                failed |= rc != 0;
                /* a family named again gets its run's number: "aggregate_2" */
                char key[64];
                size_t seen = 0;
                for (size_t j = 0; j < k; j++)
                    seen += order[j] == i;
                if (seen)
                    snprintf(key, sizeof key, "%s_%zu", kernel_families[i].name, seen + 1);
                else
                    snprintf(key, sizeof key, "%s", kernel_families[i].name);
                add_result(root, key, rc, s);
            }
        } else {
            char *s = NULL;
            if (!json)
                fprintf(stderr, "fp bench train: fine-tuning the benchmark model...\n");
            rc = fp_bench_train(ctx, quick, &s);
            failed |= rc != 0;
            add_result(root, "train", rc, s);
        }
        fp_ctx_destroy(ctx);
    } else {
        cJSON_Delete(root);
        fprintf(stderr, "fp bench: unknown benchmark '%s'\n", what);
        usage();
        return 2;
    }
    char *out = json ? cJSON_PrintUnformatted(root) : cJSON_Print(root);
    puts(out);
    free(out);
    cJSON_Delete(root);
    return failed ? 1 : 0;
}
