/* proxy.json (proxy.h): writing it signed, reading and verifying it. The
 * signature covers canonical bytes rebuilt from the parsed values, so it
 * does not depend on JSON formatting; every key is required and unknown keys
 * are refused, so nothing in the file goes unsigned. */
#include <cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/fileio.h"
#include "fedproxy/model_config.h"
#include "fedproxy/proxy.h"

#define HEXLEN(n) (2 * (n) + 1)

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = b->p ? vsnprintf(b->p + b->len, room, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && (size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (k >= 0 && nc < b->len + (size_t)k + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
}

static void hex(char *out, const unsigned char *bin, size_t n) { fp_hex_encode(out, HEXLEN(n), bin, n); }

int fp_proxy_signed_bytes(char **out, size_t *len, const fp_proxy_map *m)
{
    if (!out || !len || !m)
        return fp_seterr(FP_EINVAL, "proxy signed bytes: NULL argument");
    sbuf b = {0};
    char h[HEXLEN(32)];
    sb_printf(&b, "fedproxy-proxy-v1\nversion=1\n");
    hex(h, m->llm_fingerprint, 32);
    sb_printf(&b, "llm.fingerprint=%s\nllm.layers=%d\nllm.hidden=%lld\nllm.vocab=%lld\n", h, m->llm_layers,
              (long long)m->llm_hidden, (long long)m->llm_vocab);
    sb_printf(&b, "select=%s\nscores=", m->select);
    for (int l = 0; m->has_scores && l < m->llm_layers; l++)
        sb_printf(&b, "%s%.17g", l ? "," : "", m->scores[l]);
    sb_printf(&b, "\nlayers=");
    for (int i = 0; i < m->proxy_layers; i++)
        sb_printf(&b, "%s%d:%d:%d-%d", i ? "," : "", i, m->layers[i].llm, m->layers[i].span_first,
                  m->layers[i].span_last);
    sb_printf(&b, "\ndistill.steps=%d\ndistill.kd_weight=%.9g\ndistill.temperature=%.9g\ndistill.hidden_weight=%.9g\n"
                  "distill.final_loss=%.17g\n", m->distill.steps, (double)m->distill.kd_weight,
              (double)m->distill.temperature, (double)m->distill.hidden_weight, m->distill.final_loss);
    hex(h, m->proxy_fingerprint, 32);
    sb_printf(&b, "proxy_fingerprint=%s\n", h);
    hex(h, m->config_hash, 32);
    sb_printf(&b, "files.config.json=%s\n", h);
    if (m->has_tokenizer)
        hex(h, m->tokenizer_hash, 32);
    else
        h[0] = 0;
    sb_printf(&b, "files.tokenizer.json=%s\n", h);
    hex(h, m->server_key, 32);
    sb_printf(&b, "server_key=%s\n", h);
    if (b.oom) {
        free(b.p);
        return fp_seterr(FP_ENOMEM, "proxy signed bytes: out of host memory");
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* BLAKE2b-256 of a file's bytes; *present = 0 (and 0 returned) when it does not exist and may be absent */
static int hash_file(unsigned char out[32], const char *dir, const char *name, int optional, int *present)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (optional) {
        FILE *f = fopen(path, "rb");
        *present = f != NULL;
        if (f)
            fclose(f);
        if (!*present) {
            memset(out, 0, 32);
            return 0;
        }
    }
    void *data = NULL;
    size_t len = 0;
    int rc = fp_read_file(&data, &len, path, (size_t)1 << 30);
    if (rc)
        return rc;
    crypto_generichash(out, 32, data, len, NULL, 0);
    free(data);
    return 0;
}

/* the fingerprints and hashes of what is in proxy_dir now */
static int dir_digests(fp_proxy_map *m, const char *proxy_dir)
{
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "proxy: libsodium failed to initialise");
    int rc = fp_model_fingerprint(m->proxy_fingerprint, proxy_dir);
    int dummy = 1;
    if (!rc)
        rc = hash_file(m->config_hash, proxy_dir, "config.json", 0, &dummy);
    if (!rc)
        rc = hash_file(m->tokenizer_hash, proxy_dir, "tokenizer.json", 1, &m->has_tokenizer);
    return rc;
}

/* cJSON prints 15 significant digits when they compare equal within an
 * epsilon, which does not always parse back to the same double: the signed
 * values are written with %.17g (exact round trip) as raw number text. */
static cJSON *exact(double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.17g", v);
    return cJSON_CreateRaw(b);
}

static cJSON *to_json(const fp_proxy_map *m, const unsigned char sig[64])
{
    char h[HEXLEN(64)];
    cJSON *o = cJSON_CreateObject(), *llm = cJSON_CreateObject(), *sc = cJSON_CreateArray(),
          *ly = cJSON_CreateArray(), *ds = cJSON_CreateObject(), *files = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", 1);
    hex(h, m->llm_fingerprint, 32);
    cJSON_AddStringToObject(llm, "fingerprint", h);
    cJSON_AddNumberToObject(llm, "layers", m->llm_layers);
    cJSON_AddNumberToObject(llm, "hidden", (double)m->llm_hidden);
    cJSON_AddNumberToObject(llm, "vocab", (double)m->llm_vocab);
    cJSON_AddItemToObject(o, "llm", llm);
    cJSON_AddStringToObject(o, "select", m->select);
    for (int l = 0; m->has_scores && l < m->llm_layers; l++)
        cJSON_AddItemToArray(sc, exact(m->scores[l]));
    cJSON_AddItemToObject(o, "scores", sc);
    for (int i = 0; i < m->proxy_layers; i++) {
        cJSON *e = cJSON_CreateObject(), *sp = cJSON_CreateArray();
        cJSON_AddNumberToObject(e, "proxy", i);
        cJSON_AddNumberToObject(e, "llm", m->layers[i].llm);
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(m->layers[i].span_first));
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(m->layers[i].span_last));
        cJSON_AddItemToObject(e, "span", sp);
        cJSON_AddItemToArray(ly, e);
    }
    cJSON_AddItemToObject(o, "layers", ly);
    cJSON_AddNumberToObject(ds, "steps", m->distill.steps);
    cJSON_AddItemToObject(ds, "kd_weight", exact((double)m->distill.kd_weight));
    cJSON_AddItemToObject(ds, "temperature", exact((double)m->distill.temperature));
    cJSON_AddItemToObject(ds, "hidden_weight", exact((double)m->distill.hidden_weight));
    cJSON_AddItemToObject(ds, "final_loss", exact(m->distill.final_loss));
    cJSON_AddItemToObject(o, "distill", ds);
    hex(h, m->proxy_fingerprint, 32);
    cJSON_AddStringToObject(o, "proxy_fingerprint", h);
    hex(h, m->config_hash, 32);
    cJSON_AddStringToObject(files, "config.json", h);
    if (m->has_tokenizer)
        hex(h, m->tokenizer_hash, 32);
    else
        h[0] = 0;
    cJSON_AddStringToObject(files, "tokenizer.json", h);
    cJSON_AddItemToObject(o, "files", files);
    hex(h, m->server_key, 32);
    cJSON_AddStringToObject(o, "server_key", h);
    hex(h, sig, 64);
    cJSON_AddStringToObject(o, "signature", h);
    return o;
}

int fp_proxy_write(const char *proxy_dir, fp_proxy_map *map, const fp_identity *server)
{
    if (!proxy_dir || !map || !server)
        return fp_seterr(FP_EINVAL, "proxy write: NULL argument");
    int rc = dir_digests(map, proxy_dir);
    if (rc)
        return rc;
    memcpy(map->server_key, server->pk, sizeof map->server_key);
    char *msg = NULL;
    size_t len = 0;
    if ((rc = fp_proxy_signed_bytes(&msg, &len, map)))
        return rc;
    unsigned char sig[FP_IDENTITY_SIGBYTES];
    rc = fp_identity_sign(sig, msg, len, server);
    free(msg);
    if (rc)
        return rc;
    cJSON *o = to_json(map, sig);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return fp_seterr(FP_ENOMEM, "proxy write: out of host memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/proxy.json", proxy_dir);
    size_t tl = strlen(text);
    text[tl] = '\n'; /* replaces the NUL: the file ends with a newline */
    rc = fp_write_file_atomic(path, text, tl + 1, 0644);
    free(text);
    return rc;
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct rd {
    const char *path;
    int rc;
} rd;

static int bad(rd *r, const char *fmt, const char *what)
{
    if (!r->rc)
        r->rc = fp_seterr(FP_EFORMAT, "%s: %s %s", r->path, what, fmt);
    return r->rc;
}

/* only the listed keys, each present */
static void keys_only(rd *r, const cJSON *o, const char *where, const char *const *keys, int n)
{
    if (r->rc)
        return;
    if (!cJSON_IsObject(o)) {
        bad(r, "is not an object", where);
        return;
    }
    for (const cJSON *c = o->child; c; c = c->next) {
        int ok = 0;
        for (int i = 0; i < n; i++)
            ok |= c->string && !strcmp(c->string, keys[i]);
        if (!ok) {
            r->rc = fp_seterr(FP_EFORMAT, "%s: unknown key '%s' in %s (nothing unsigned is accepted)", r->path,
                              c->string ? c->string : "?", where);
            return;
        }
    }
    for (int i = 0; i < n; i++)
        if (!cJSON_GetObjectItemCaseSensitive(o, keys[i])) {
            r->rc = fp_seterr(FP_EFORMAT, "%s: %s has no '%s'", r->path, where, keys[i]);
            return;
        }
}

static double num(rd *r, const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (r->rc)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        bad(r, "is not a finite number", key);
        return 0;
    }
    return v->valuedouble;
}

static int64_t integer(rd *r, const cJSON *o, const char *key, int64_t lo, int64_t hi)
{
    double d = num(r, o, key);
    if (!r->rc && (d != floor(d) || d < (double)lo || d > (double)hi)) {
        r->rc = fp_seterr(FP_EFORMAT, "%s: %s is %g, not an integer in %lld..%lld", r->path, key, d, (long long)lo,
                          (long long)hi);
        return 0;
    }
    return (int64_t)d;
}

static void hexfield(rd *r, unsigned char *out, size_t n, const cJSON *o, const char *key, int may_be_empty,
                     int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (r->rc)
        return;
    if (!cJSON_IsString(v)) {
        bad(r, "is not a string", key);
        return;
    }
    size_t len = strlen(v->valuestring);
    if (may_be_empty && len == 0) {
        memset(out, 0, n);
        *present = 0;
        return;
    }
    if (present)
        *present = 1;
    if (fp_hex_decode(out, n, v->valuestring, len))
        r->rc = fp_seterr(FP_EFORMAT, "%s: %s is not %zu hex digits", r->path, key, 2 * n);
}

static void parse_map(rd *r, fp_proxy_map *m, const cJSON *o, unsigned char sig[64])
{
    static const char *const top[] = {"version", "llm", "select", "scores", "layers", "distill",
                                      "proxy_fingerprint", "files", "server_key", "signature"};
    static const char *const llmk[] = {"fingerprint", "layers", "hidden", "vocab"};
    static const char *const dk[] = {"steps", "kd_weight", "temperature", "hidden_weight", "final_loss"};
    static const char *const fk[] = {"config.json", "tokenizer.json"};
    static const char *const lk[] = {"proxy", "llm", "span"};
    keys_only(r, o, "proxy.json", top, 10);
    if (!r->rc && integer(r, o, "version", 0, 1 << 20) != 1 && !r->rc)
        r->rc = fp_seterr(FP_EUNSUPPORTED, "%s: version %g is not 1", r->path,
                          cJSON_GetObjectItemCaseSensitive(o, "version")->valuedouble);
    const cJSON *llm = cJSON_GetObjectItemCaseSensitive(o, "llm");
    keys_only(r, llm, "llm", llmk, 4);
    hexfield(r, m->llm_fingerprint, 32, llm, "fingerprint", 0, NULL);
    m->llm_layers = (int32_t)integer(r, llm, "layers", 1, FP_PROXY_MAX_LAYERS);
    m->llm_hidden = integer(r, llm, "hidden", 1, 1 << 24);
    m->llm_vocab = integer(r, llm, "vocab", 1, 1 << 24);
    const cJSON *sel = cJSON_GetObjectItemCaseSensitive(o, "select");
    if (!r->rc && (!cJSON_IsString(sel) || (strcmp(sel->valuestring, "influence") && strcmp(sel->valuestring, "uniform"))))
        bad(r, "is not \"influence\" or \"uniform\"", "select");
    if (!r->rc)
        snprintf(m->select, sizeof m->select, "%s", sel->valuestring);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "scores");
    int ns = cJSON_IsArray(sc) ? cJSON_GetArraySize(sc) : -1;
    if (!r->rc && ns != 0 && ns != m->llm_layers)
        r->rc = fp_seterr(FP_EFORMAT, "%s: scores must be an array of %d numbers or []", r->path, m->llm_layers);
    m->has_scores = ns > 0;
    for (int l = 0; !r->rc && l < ns; l++) {
        const cJSON *v = cJSON_GetArrayItem(sc, l);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            r->rc = fp_seterr(FP_EFORMAT, "%s: scores[%d] is not a finite number", r->path, l);
        else
            m->scores[l] = v->valuedouble;
    }
    const cJSON *ly = cJSON_GetObjectItemCaseSensitive(o, "layers");
    int nl = cJSON_IsArray(ly) ? cJSON_GetArraySize(ly) : -1;
    if (!r->rc && (nl < 1 || nl > m->llm_layers))
        r->rc = fp_seterr(FP_EFORMAT, "%s: layers must be an array of 1..%d entries", r->path, m->llm_layers);
    m->proxy_layers = nl;
    int next = 0; /* spans must partition 0..L-1 in order */
    for (int i = 0; !r->rc && i < nl; i++) {
        const cJSON *e = cJSON_GetArrayItem(ly, i);
        keys_only(r, e, "a layers entry", lk, 3);
        int p = (int)integer(r, e, "proxy", 0, FP_PROXY_MAX_LAYERS);
        int j = (int)integer(r, e, "llm", 0, m->llm_layers - 1);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "span");
        if (r->rc)
            break;
        if (!cJSON_IsArray(sp) || cJSON_GetArraySize(sp) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(sp, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(sp, 1))) {
            r->rc = fp_seterr(FP_EFORMAT, "%s: layers[%d].span is not [first, last]", r->path, i);
            break;
        }
        int a = (int)cJSON_GetArrayItem(sp, 0)->valuedouble, b = (int)cJSON_GetArrayItem(sp, 1)->valuedouble;
        if (p != i || a != next || b < a || b >= m->llm_layers || j < a || j > b) {
            r->rc = fp_seterr(FP_EFORMAT, "%s: layers[%d] = {proxy %d, llm %d, span [%d, %d]} breaks the layer map "
                                          "(spans must partition 0..%d in order, each containing its layer)",
                              r->path, i, p, j, a, b, m->llm_layers - 1);
            break;
        }
        m->layers[i] = (fp_proxy_layer){j, a, b};
        next = b + 1;
    }
    if (!r->rc && next != m->llm_layers)
        r->rc = fp_seterr(FP_EFORMAT, "%s: the spans end at layer %d, the LLM has %d", r->path, next - 1,
                          m->llm_layers);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "distill");
    keys_only(r, ds, "distill", dk, 5);
    m->distill.steps = (int32_t)integer(r, ds, "steps", 0, INT32_MAX);
    m->distill.kd_weight = (float)num(r, ds, "kd_weight");
    m->distill.temperature = (float)num(r, ds, "temperature");
    m->distill.hidden_weight = (float)num(r, ds, "hidden_weight");
    m->distill.final_loss = num(r, ds, "final_loss");
    hexfield(r, m->proxy_fingerprint, 32, o, "proxy_fingerprint", 0, NULL);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    keys_only(r, files, "files", fk, 2);
    hexfield(r, m->config_hash, 32, files, "config.json", 0, NULL);
    hexfield(r, m->tokenizer_hash, 32, files, "tokenizer.json", 1, &m->has_tokenizer);
    hexfield(r, m->server_key, 32, o, "server_key", 0, NULL);
    hexfield(r, sig, 64, o, "signature", 0, NULL);
}

int fp_proxy_read(fp_proxy_map *out, const char *proxy_dir, const unsigned char *server_pk)
{
    if (!out || !proxy_dir)
        return fp_seterr(FP_EINVAL, "proxy read: NULL argument");
    char path[4096];
    snprintf(path, sizeof path, "%s/proxy.json", proxy_dir);
    void *data = NULL;
    size_t len = 0;
    int rc = fp_read_file(&data, &len, path, (size_t)1 << 20);
    if (rc)
        return rc;
    cJSON *o = cJSON_ParseWithLength(data, len);
    free(data);
    if (!o)
        return fp_seterr(FP_EFORMAT, "%s: not valid JSON", path);
    fp_proxy_map m;
    memset(&m, 0, sizeof m);
    unsigned char sig[FP_IDENTITY_SIGBYTES];
    rd r = {path, 0};
    parse_map(&r, &m, o, sig);
    cJSON_Delete(o);
    if (r.rc)
        return r.rc;
    char hx[HEXLEN(32)], hy[HEXLEN(32)];
    if (server_pk && sodium_memcmp(server_pk, m.server_key, 32)) {
        hex(hx, m.server_key, 32);
        hex(hy, server_pk, 32);
        return fp_seterr(FP_ECRYPTO, "%s: signed by key %s, not the expected server key %s", path, hx, hy);
    }
    char *msg = NULL;
    size_t ml = 0;
    if ((rc = fp_proxy_signed_bytes(&msg, &ml, &m)))
        return rc;
    rc = fp_identity_verify(sig, msg, ml, server_pk ? server_pk : m.server_key);
    free(msg);
    if (rc)
        return fp_seterr(FP_ECRYPTO, "%s: the signature does not verify (proxy.json or its signature was altered)",
                         path);
    /* the directory must be what was signed */
    fp_proxy_map now = m;
    if ((rc = dir_digests(&now, proxy_dir)))
        return rc;
    if (sodium_memcmp(now.proxy_fingerprint, m.proxy_fingerprint, 32)) {
        hex(hx, now.proxy_fingerprint, 32);
        hex(hy, m.proxy_fingerprint, 32);
        return fp_seterr(FP_ECRYPTO, "%s: the proxy weights (model.safetensors) have fingerprint %s, proxy.json "
                                     "signed %s: the weights were altered", proxy_dir, hx, hy);
    }
    if (sodium_memcmp(now.config_hash, m.config_hash, 32))
        return fp_seterr(FP_ECRYPTO, "%s/config.json differs from the one proxy.json signed", proxy_dir);
    if (now.has_tokenizer != m.has_tokenizer || sodium_memcmp(now.tokenizer_hash, m.tokenizer_hash, 32))
        return fp_seterr(FP_ECRYPTO, "%s/tokenizer.json differs from the one proxy.json signed%s", proxy_dir,
                         m.has_tokenizer ? "" : " (it had none)");
    *out = m;
    return 0;
}
