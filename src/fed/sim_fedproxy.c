/* fp sim's "fedproxy" section: the whole FedProxy pipeline around a simulated
 * federation — compress the LLM into a signed proxy (proxy.h), federate it
 * (sim.c), fuse the global adapter back into the LLM and evaluate the LLM
 * zero-shot, the proxy before/after and the fused LLM on every client's
 * held-out text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fed_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/json_check.h"
#include "fedproxy/proxy.h"
#include "fedproxy/tokenizer.h"
#include "fedproxy/train.h"
#include "sim_internal.h"

static int sub_path(char *out, size_t cap, const char *base, const char *p)
{
    int n = snprintf(out, cap, "%s%s%s", p[0] == '/' ? "" : base, p[0] == '/' ? "" : "/", p);
    return n < 0 || (size_t)n >= cap ? fp_seterr(FP_EINVAL, "sim fedproxy: path %s too long", p) : 0;
}

int fed_sim_fedproxy_parse(fed_fedproxy *f, const cJSON *o, const char *base)
{
    static const fp_json_field fl[] = {
        {"llm", FP_JSON_STRING, 1},          {"calib", FP_JSON_STRING, 1},       {"out", FP_JSON_STRING, 0},
        {"keep_first", FP_JSON_UINT, 0},     {"keep_last", FP_JSON_UINT, 0},     {"middle", FP_JSON_UINT, 0},
        {"select", FP_JSON_STRING, 0},       {"distill_data", FP_JSON_STRING, 0}, {"distill_steps", FP_JSON_UINT, 0},
        {"kd_weight", FP_JSON_NUMBER, 0},    {"temperature", FP_JSON_NUMBER, 0}, {"lr", FP_JSON_NUMBER, 0},
        {"batch", FP_JSON_UINT, 0},          {"seq", FP_JSON_UINT, 0},           {"span", FP_JSON_STRING, 0},
        {"eval_seq", FP_JSON_UINT, 0}};
    memset(f, 0, sizeof *f);
    int rc = fp_json_check(o, fl, sizeof fl / sizeof fl[0], "sim config \"fedproxy\"");
    if (rc)
        return rc;
    f->on = 1;
    fp_compress_opts_default(&f->co);
    rc = sub_path(f->llm, sizeof f->llm, base, fed_jstr(o, "llm", ""));
    if (!rc)
        rc = sub_path(f->calib, sizeof f->calib, base, fed_jstr(o, "calib", ""));
    if (!rc && fed_jstr(o, "out", NULL))
        rc = sub_path(f->out, sizeof f->out, base, fed_jstr(o, "out", ""));
    if (!rc && fed_jstr(o, "distill_data", NULL))
        rc = sub_path(f->distill, sizeof f->distill, base, fed_jstr(o, "distill_data", ""));
    if (rc)
        return rc;
    f->co.keep_first = (int)fed_jnum(o, "keep_first", f->co.keep_first);
    f->co.keep_last = (int)fed_jnum(o, "keep_last", f->co.keep_last);
    f->co.middle = (int)fed_jnum(o, "middle", f->co.middle);
    snprintf(f->select, sizeof f->select, "%s", fed_jstr(o, "select", "influence"));
    f->co.distill_steps = (int)fed_jnum(o, "distill_steps", 0);
    f->co.kd_weight = (float)fed_jnum(o, "kd_weight", f->co.kd_weight);
    f->co.temperature = (float)fed_jnum(o, "temperature", f->co.temperature);
    f->co.lr = (float)fed_jnum(o, "lr", f->co.lr);
    f->co.batch = (int64_t)fed_jnum(o, "batch", (double)f->co.batch);
    f->co.seq = (int64_t)fed_jnum(o, "seq", (double)f->co.seq);
    snprintf(f->span, sizeof f->span, "%s", fed_jstr(o, "span", "none"));
    f->eval_seq = (int64_t)fed_jnum(o, "eval_seq", 64);
    if (strcmp(f->span, "none") && strcmp(f->span, "spread"))
        return fp_seterr(FP_EFORMAT, "sim config \"fedproxy\": \"span\" is \"none\" or \"spread\", not \"%s\"", f->span);
    if (f->co.distill_steps > 0 && !f->distill[0])
        return fp_seterr(FP_EFORMAT, "sim config \"fedproxy\": \"distill_steps\" needs \"distill_data\"");
    return 0;
}

int fed_sim_fedproxy_compress(fed_fedproxy *f, fp_fed_server_config *sc, const fp_identity *server)
{
    if (!f->out[0] && sub_path(f->out, sizeof f->out, sc->state_dir, "fedproxy"))
        return FP_EINVAL;
    if (sc->lora.rank < 1)
        return fp_seterr(FP_EFORMAT, "sim config: \"fedproxy\" needs a \"lora\" layout in \"server\"");
    int rc = fp_mkdirs(f->out, 0755);
    if (!rc)
        rc = sub_path(sc->proxy_dir, sizeof sc->proxy_dir, f->out, "proxy");
    if (!rc && !sc->adapter_out[0])
        rc = sub_path(sc->adapter_out, sizeof sc->adapter_out, f->out, "adapter");
    if (rc)
        return rc;
    f->co.select = f->select;
    f->co.calib = f->calib;
    f->co.distill_data = f->distill[0] ? f->distill : NULL;
    f->co.quiet = 1;
    fp_ctx *ctx = NULL;
    rc = fp_ctx_create(&ctx, NULL);
    if (!rc) {
        fed_log("fp sim: compressing %s into %s\n", f->llm, sc->proxy_dir);
        rc = fp_proxy_compress(ctx, f->llm, sc->proxy_dir, &f->co, server);
    }
    fp_ctx_destroy(ctx);
    return rc ? fp_adderr(rc, "sim fedproxy: compress") : 0;
}

int fed_sim_fedproxy_finish(fed_fedproxy *f, const fp_fed_server_config *sc, const fp_identity *server,
                            const char *const *names, const char *const *eval_paths, size_t n, fp_fed_sim_result *out)
{
    char fused[FP_FED_PATH_MAX];
    int rc = sub_path(fused, sizeof fused, f->out, "fused");
    if (rc)
        return rc;
    snprintf(out->workdir, sizeof out->workdir, "%s", f->out);
    fp_fuse_opts fo = {f->span, 0, 0};
    fed_log("fp sim: fusing %s into %s\n", sc->adapter_out, fused);
    rc = fp_proxy_fuse(f->llm, sc->proxy_dir, sc->adapter_out, server->pk, &fo, fused, NULL);
    if (rc)
        return fp_adderr(rc, "sim fedproxy: fuse");
    out->evals = calloc(n ? n : 1, sizeof *out->evals);
    if (!out->evals)
        return fp_seterr(FP_ENOMEM, "sim fedproxy: out of memory");
    char tp[FP_FED_PATH_MAX + 32];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", f->llm);
    fp_tokenizer *tk = NULL;
    fp_ctx *ctx = NULL;
    int32_t **ids = calloc(n ? n : 1, sizeof *ids);
    rc = ids ? fp_tokenizer_load(&tk, tp) : fp_seterr(FP_ENOMEM, "sim fedproxy: out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        fp_fed_sim_eval *e = &out->evals[i];
        snprintf(e->name, sizeof e->name, "%s", names[i]);
        void *txt = NULL;
        size_t len = 0, k = 0;
        rc = fp_read_file(&txt, &len, eval_paths[i], (size_t)1 << 30);
        if (!rc)
            rc = fp_tokenizer_encode(&ids[i], &k, tk, txt, len, 0);
        free(txt);
        e->tokens = (int64_t)(k > FP_ENGINE_EVAL_MAX ? FP_ENGINE_EVAL_MAX : k);
        if (rc)
            rc = fp_adderr(rc, "sim fedproxy: client %s's %s", names[i], eval_paths[i]);
    }
    if (!rc)
        rc = fp_ctx_create(&ctx, NULL);
    /* each model once, every client's text on it */
    const char *dirs[FP_SIM_EVAL_N] = {f->llm, sc->proxy_dir, sc->proxy_dir, fused};
    for (int w = 0; !rc && w < FP_SIM_EVAL_N; w++) {
        fp_model *m = NULL;
        rc = fp_model_load_dir(&m, ctx, dirs[w]);
        if (!rc && w == FP_SIM_EVAL_PROXY_TUNED)
            rc = fp_model_load_adapter(m, sc->adapter_out);
        for (size_t i = 0; !rc && i < n; i++) {
            fp_fed_sim_eval *e = &out->evals[i];
            fp_eval_result ev;
            rc = fp_model_eval_tokens(m, ids[i], e->tokens, f->eval_seq, &ev);
            e->loss[w] = ev.loss;
            e->ppl[w] = ev.ppl;
            e->acc[w] = ev.accuracy;
        }
        fp_model_free(m);
        if (rc)
            rc = fp_adderr(rc, "sim fedproxy: evaluating %s", dirs[w]);
    }
    if (!rc)
        out->n_evals = n;
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    fp_ctx_destroy(ctx);
    fp_tokenizer_free(tk);
    return rc;
}
