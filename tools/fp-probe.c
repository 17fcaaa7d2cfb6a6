/* fp-probe: lists Vulkan devices with their profiles, measures the selected one
 * (copy bandwidth, transfers, dispatch latency, kernel autotuning), caches the
 * measurements for the library, and recommends LoRA training shapes.
 *
 *   fp-probe [--json] [--quick] [--list] [--device D] [--profile P]
 *            [--budget-mib N] [--step-seconds S]
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedproxy/ops_aggregate.h"
#include "fedproxy/ops_attention.h"
#include "fedproxy/ops_matmul.h"
#include "fedproxy/probe.h"
#include "fedproxy/recommend.h"
#include "fedproxy/runtime.h"

#define MAX_DEVICES 16

static const char *opt(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], name, n) && argv[i][n] == '=')
            return argv[i] + n + 1;
        if (!strcmp(argv[i], name) && i + 1 < argc)
            return argv[i + 1];
    }
    return NULL;
}

static int flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
}

static void usage(void)
{
    puts("usage: fp-probe [--json] [--quick] [--list] [--device D] [--profile P] [--budget-mib N] "
         "[--step-seconds S]\n"
         "  --list          only list devices and their profiles (no benchmarks)\n"
         "  --quick         short benchmarks (under 10 s on lavapipe); no matmul autotune unless --tune\n"
         "  --tune          run the matmul, attention and aggregation autotuners (default without --quick)\n"
         "  --json          machine-readable output on stdout, nothing else\n"
         "  --device D      device index, name substring or vendor (default: $FP_DEVICE or the best)\n"
         "  --profile P     restriction overlay: minimal, mali-valhall, adreno-7xx, intel-xe, amd-rdna, nvidia,\n"
         "                  or a JSON file (default: $FP_PROFILE)\n"
         "  --budget-mib N  memory budget for the training recommendation\n"
         "  --step-seconds S  target seconds per training step for the recommendation (default 2)");
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static void print_profile(const fp_profile *p)
{
    printf("  %-22s %s\n", "name", p->name);
    printf("  %-22s %s (0x%04x), %s\n", "vendor", fp_vendor_name(p->vendor), p->vendor_id,
           fp_device_type_name(p->type));
    printf("  %-22s %s %s (api %u.%u.%u)\n", "driver", p->driver_name, p->driver_info,
           p->api_version >> 22, (p->api_version >> 12) & 0x3ff, p->api_version & 0xfff);
    if (p->overlay[0])
        printf("  %-22s %s\n", "overlay", p->overlay);
    printf("  %-22s %u (range %u-%u), ops %s, size control %s\n", "subgroup", p->subgroup_size, p->subgroup_min,
           p->subgroup_max, p->subgroup_ops ? "yes" : "no", p->subgroup_size_control ? "yes" : "no");
    printf("  %-22s %u KiB\n", "shared memory", p->shared_mem / 1024);
    printf("  %-22s %u (%u x %u x %u)\n", "workgroup invocations", p->max_wg_invocations, p->max_wg_size[0],
           p->max_wg_size[1], p->max_wg_size[2]);
    printf("  %-22s fp16 %s, 16-bit storage %s, int8 %s, int dot %s, coop. matrix %s\n", "features",
           p->fp16_arith ? "yes" : "no", p->storage16 ? "yes" : "no", p->int8_arith ? "yes" : "no",
           p->int_dot ? "yes" : "no", p->coopmat ? "yes" : "no");
    printf("  %-22s %s, storage range %.0f MiB, max allocation %.0f MiB\n", "memory",
           p->uma ? "unified (no staging)" : "discrete (staging)", mib(p->storage_range), mib(p->max_alloc));
    for (uint32_t h = 0; h < p->heap_count; h++)
        printf("  %-22s %.0f MiB%s%s\n", h ? "" : "heaps", mib(p->heaps[h].size),
               p->heaps[h].device_local ? " device-local" : "", p->heaps[h].host_visible ? " host-visible" : "");
    printf("  %-22s %s, timestamps %s\n", "transfer queue", p->transfer_queue ? "dedicated" : "shared",
           p->timestamps ? "yes" : "no");
}

static void on_progress(const char *stage, double f, void *user)
{
    if (!*(int *)user)
        return;
    fprintf(stderr, "\r  measuring: %-26s [%3.0f%%]", stage, f * 100);
    if (f >= 1.0)
        fputc('\n', stderr);
    fflush(stderr);
}

int main(int argc, char **argv)
{
    if (flag(argc, argv, "--help") || flag(argc, argv, "-h")) {
        usage();
        return 0;
    }
    int json = flag(argc, argv, "--json"), quick = flag(argc, argv, "--quick"), list = flag(argc, argv, "--list");
    fp_profile devs[MAX_DEVICES];
    uint32_t n = 0;
    int rc = fp_device_list(devs, MAX_DEVICES, &n);
    if (rc) {
        fprintf(stderr, "fp-probe: %s\n", fp_errmsg());
        return 1;
    }
    if (n > MAX_DEVICES)
        n = MAX_DEVICES;

    cJSON *root = json ? cJSON_CreateObject() : NULL;
    cJSON *jdevs = json ? cJSON_AddArrayToObject(root, "devices") : NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (json) {
            char *s = NULL;
            if (fp_profile_to_json(&s, &devs[i]) == 0) {
                cJSON_AddItemToArray(jdevs, cJSON_Parse(s));
                free(s);
            }
        } else {
            printf("device %u\n", i);
            print_profile(&devs[i]);
        }
    }
    int exit_code = 0;
    if (!list) {
        fp_ctx_opts o = {0};
        o.validate = -1;
        o.device = opt(argc, argv, "--device");
        o.profile = opt(argc, argv, "--profile");
        fp_ctx *ctx = NULL;
        rc = fp_ctx_create(&ctx, &o);
        if (rc) {
            fprintf(stderr, "fp-probe: %s\n", fp_errmsg());
            cJSON_Delete(root);
            return 1;
        }
        const fp_profile *p = fp_ctx_profile(ctx);
        int tty = !json && isatty(2);
        if (!json)
            printf("\nmeasuring device %u: %s%s%s\n", p->index, p->name, p->overlay[0] ? " under overlay " : "",
                   p->overlay);
        fp_measured m;
        double t0 = fp_now();
        rc = fp_probe_measure(&m, ctx, quick, on_progress, &tty);
        /* matmul autotuning compiles many pipelines (minutes on a cold lavapipe
         * cache): it runs without --quick, or with --tune */
        if (!rc && (!quick || flag(argc, argv, "--tune"))) {
            if (tty)
                fprintf(stderr, "  measuring: matmul autotune (every variant, checked against the C reference)\n");
            int trc = fp_matmul_autotune(ctx, &m, quick);
            if (trc)
                fprintf(stderr, "fp-probe: warning: matmul autotune failed: %s\n", fp_errmsg());
            if (tty)
                fprintf(stderr, "  measuring: attention autotune (every variant, checked against the C reference)\n");
            if ((trc = fp_attention_autotune(ctx, &m, quick)))
                fprintf(stderr, "fp-probe: warning: attention autotune failed: %s\n", fp_errmsg());
            if (tty)
                fprintf(stderr, "  measuring: aggregation autotune (sorting network vs radix select, norms tree vs "
                                "flat; checked against the C reference)\n");
            if ((trc = fp_agg_autotune(ctx, &m, quick)))
                fprintf(stderr, "fp-probe: warning: aggregation autotune failed: %s\n", fp_errmsg());
        }
        double memcpy_gbps = fp_probe_memcpy_gbps(quick);
        double elapsed = fp_now() - t0;
        if (rc) {
            fprintf(stderr, "fp-probe: measuring %s failed: %s\n", p->name, fp_errmsg());
            exit_code = 1;
        } else if (fp_measured_save(&m, p) != 0) {
            fprintf(stderr, "fp-probe: warning: could not cache the measurements: %s\n", fp_errmsg());
        }
        const char *bud = opt(argc, argv, "--budget-mib");
        const char *sts = opt(argc, argv, "--step-seconds");
        fp_model_shape model = fp_model_shape_bench();
        fp_train_plan plan;
        int prc = fp_recommend_train(&plan, p, &m, &model, bud ? (uint64_t)atof(bud) * 1048576ull : 0,
                                     sts ? atof(sts) : 0);
        char path[512] = "";
        fp_measured_path(path, sizeof path, p);
        if (json) {
            cJSON_AddNumberToObject(root, "selected", p->index);
            char *s = NULL;
            if (fp_profile_to_json(&s, p) == 0) {
                cJSON_AddItemToObject(root, "profile", cJSON_Parse(s));
                free(s);
            }
            if (!rc && fp_measured_to_json(&s, &m) == 0) {
                cJSON *jm = cJSON_Parse(s);
                cJSON_AddNumberToObject(jm, "host_memcpy_gbps", memcpy_gbps);
                cJSON_AddNumberToObject(jm, "copy_vs_memcpy", m.copy_gbps / memcpy_gbps);
                cJSON_AddNumberToObject(jm, "seconds", elapsed);
                cJSON_AddStringToObject(jm, "cache_file", path);
                cJSON_AddItemToObject(root, "measured", jm);
                free(s);
            }
            if (!prc) {
                cJSON *r = cJSON_AddObjectToObject(root, "recommendation");
                cJSON_AddStringToObject(r, "model", "bench: 8 layers, hidden 512, 8 heads, 2 kv heads, "
                                                    "intermediate 1408, vocab 8192");
                cJSON_AddNumberToObject(r, "lora_rank", plan.rank);
                cJSON_AddNumberToObject(r, "batch", plan.batch);
                cJSON_AddNumberToObject(r, "seq", plan.seq);
                cJSON_AddNumberToObject(r, "planned_bytes", (double)plan.bytes);
                cJSON_AddNumberToObject(r, "budget_bytes", (double)plan.budget);
                cJSON_AddNumberToObject(r, "est_step_seconds", plan.step_seconds);
                cJSON_AddStringToObject(r, "why", plan.why);
            }
        } else if (!rc) {
            printf("  %-22s %.2f GB/s (host memcpy %.2f GB/s, ratio %.2f)\n", "copy bandwidth", m.copy_gbps,
                   memcpy_gbps, m.copy_gbps / memcpy_gbps);
            printf("  %-22s %.2f GB/s up, %.2f GB/s down\n", "host<->device", m.h2d_gbps, m.d2h_gbps);
            printf("  %-22s %.2f us per dispatch in a command buffer, %.1f us per submit\n", "dispatch latency",
                   m.dispatch_us, m.submit_us);
            if (m.matmul_gflops > 0)
                printf("  %-22s %.1f GFLOP/s (f32, best variant)\n", "matmul", m.matmul_gflops);
            for (unsigned i = 0; i < m.ntune; i++)
                printf("  %-22s %s = %s\n", i ? "" : "tuned variants", m.tune[i].key, m.tune[i].value);
            printf("  %-22s %s (%.1f s)\n", "cached in", path, elapsed);
            if (!prc)
                printf("\nrecommended LoRA fine-tuning of the benchmark model: rank %d, batch %d, sequence %d "
                       "(%.0f MiB, ~%.2f s/step)\n  %s\n",
                       plan.rank, plan.batch, plan.seq, mib(plan.bytes), plan.step_seconds, plan.why);
            else
                printf("\nno training plan fits: %s\n", fp_errmsg());
        }
        fp_ctx_destroy(ctx);
    }
    if (json) {
        char *s = cJSON_Print(root);
        puts(s);
        free(s);
        cJSON_Delete(root);
    }
    return exit_code;
}
