/* fp sim's FedProxy pipeline (sim_fedproxy.c), driven by sim.c. */
#ifndef FP_SIM_INTERNAL_H
#define FP_SIM_INTERNAL_H

#include "fed_internal.h"
#include "fedproxy/proxy.h"

typedef struct fed_fedproxy {
    int on;
    char llm[FP_FED_PATH_MAX], calib[FP_FED_PATH_MAX], out[FP_FED_PATH_MAX], distill[FP_FED_PATH_MAX];
    char select[16], span[16];
    int64_t eval_seq;
    fp_compress_opts co; /* its strings point into this struct */
} fed_fedproxy;

/* "fedproxy" of sim.json (paths relative to base). */
int fed_sim_fedproxy_parse(fed_fedproxy *f, const cJSON *o, const char *base);
/* Compresses the LLM into out/proxy signed by server; sets sc's proxy_dir and
 * (unless given) adapter_out = out/adapter. */
int fed_sim_fedproxy_compress(fed_fedproxy *f, fp_fed_server_config *sc, const fp_identity *server);
/* After the federation: fuses into out/fused and evaluates the four models on
 * every client's eval text (out->evals). */
int fed_sim_fedproxy_finish(fed_fedproxy *f, const fp_fed_server_config *sc, const fp_identity *server,
                            const char *const *names, const char *const *eval_paths, size_t n,
                            fp_fed_sim_result *out);

#endif
