/* The RDP accountant: per-order RDP summed over rounds (RDP composes
 * additively), converted to epsilon at the end; and the "dp" section of
 * server.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error_internal.h"
#include "fedproxy/dp.h"
#include "fedproxy/fileio.h"
#include "fedproxy/json_check.h"

#define ACC_MAX_ORDERS 256

struct fp_dp_accountant {
    double delta;
    uint64_t steps;
    size_t n;
    const double *orders;
    double rdp[ACC_MAX_ORDERS];
};

int fp_dp_accountant_create(fp_dp_accountant **out, double delta)
{
    if (!out)
        return fp_seterr(FP_EINVAL, "fp_dp_accountant_create: NULL output");
    *out = NULL;
    if (!(delta > 0 && delta < 1))
        return fp_seterr(FP_EINVAL, "DP accountant: delta must be in (0, 1), got %g", delta);
    fp_dp_accountant *a = calloc(1, sizeof *a);
    if (!a)
        return fp_seterr(FP_ENOMEM, "DP accountant: out of memory");
    a->delta = delta;
    a->n = fp_dp_orders(&a->orders);
    *out = a;
    return 0;
}

void fp_dp_accountant_destroy(fp_dp_accountant *a) { free(a); }

int fp_dp_accountant_step(fp_dp_accountant *a, double q, double z, uint64_t steps)
{
    if (!a)
        return fp_seterr(FP_EINVAL, "fp_dp_accountant_step: NULL accountant");
    if (!(q > 0 && q <= 1) || !(z > 0) || !isfinite(z))
        return fp_seterr(FP_EINVAL, "DP accountant: sampling rate %g must be in (0, 1] and noise multiplier %g > 0",
                         q, z);
    double r[ACC_MAX_ORDERS];
    for (size_t i = 0; i < a->n; i++) {
        int rc = fp_dp_rdp_sampled_gaussian(&r[i], q, z, a->orders[i]);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < a->n; i++)
        a->rdp[i] += (double)steps * r[i];
    a->steps += steps;
    return 0;
}

int fp_dp_accountant_epsilon(const fp_dp_accountant *a, double *eps, double *order)
{
    if (!a || !eps)
        return fp_seterr(FP_EINVAL, "fp_dp_accountant_epsilon: NULL argument");
    if (!a->steps) {
        *eps = 0;
        if (order)
            *order = NAN;
        return 0;
    }
    return fp_dp_rdp_to_epsilon(eps, order, a->orders, a->rdp, a->n, a->delta);
}

uint64_t fp_dp_accountant_steps(const fp_dp_accountant *a) { return a ? a->steps : 0; }
double fp_dp_accountant_delta(const fp_dp_accountant *a) { return a ? a->delta : NAN; }

int fp_dp_accountant_save(const fp_dp_accountant *a, const char *path)
{
    if (!a || !path)
        return fp_seterr(FP_EINVAL, "fp_dp_accountant_save: NULL argument");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "delta", a->delta);
    cJSON_AddNumberToObject(o, "steps", (double)a->steps);
    cJSON *ords = cJSON_AddArrayToObject(o, "orders"), *rd = cJSON_AddArrayToObject(o, "rdp");
    for (size_t i = 0; i < a->n; i++) {
        cJSON_AddItemToArray(ords, cJSON_CreateNumber(a->orders[i]));
        /* JSON has no infinity (large orders at small z): 1e300 acts the same.
         * %.17g, not cJSON's printer, which may drop the last bits: a resumed
         * server must continue from exactly the same sums. */
        char num[40];
        snprintf(num, sizeof num, "%.17g", a->rdp[i] < 1e300 ? a->rdp[i] : 1e300);
        cJSON_AddItemToArray(rd, cJSON_CreateRaw(num));
    }
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t)
        return fp_seterr(FP_ENOMEM, "DP accountant: out of memory");
    int rc = fp_write_file_atomic(path, t, strlen(t), 0644);
    free(t);
    return rc ? fp_adderr(rc, "DP accountant state %s", path) : 0;
}

int fp_dp_accountant_load(fp_dp_accountant *a, const char *path)
{
    if (!a || !path)
        return fp_seterr(FP_EINVAL, "fp_dp_accountant_load: NULL argument");
    void *txt = NULL;
    size_t len = 0;
    int rc = fp_read_file(&txt, &len, path, (size_t)1 << 20);
    if (rc)
        return fp_adderr(rc, "DP accountant state %s", path);
    static const fp_json_field f[] = {{"delta", FP_JSON_NUMBER, 1},
                                      {"steps", FP_JSON_UINT, 1},
                                      {"orders", FP_JSON_ARRAY, 1},
                                      {"rdp", FP_JSON_ARRAY, 1}};
    cJSON *o = NULL;
    rc = fp_json_parse(&o, txt, len, f, sizeof f / sizeof f[0], path);
    free(txt);
    if (rc)
        return rc;
    const cJSON *ords = cJSON_GetObjectItemCaseSensitive(o, "orders"),
                *rd = cJSON_GetObjectItemCaseSensitive(o, "rdp");
    double d = cJSON_GetObjectItemCaseSensitive(o, "delta")->valuedouble;
    if (d != a->delta)
        rc = fp_seterr(FP_EFORMAT, "%s: delta %g does not match the configured %g", path, d, a->delta);
    else if ((size_t)cJSON_GetArraySize(ords) != a->n || (size_t)cJSON_GetArraySize(rd) != a->n)
        rc = fp_seterr(FP_EFORMAT, "%s: %d orders / %d values, expected %zu", path, cJSON_GetArraySize(ords),
                       cJSON_GetArraySize(rd), a->n);
    double tmp[ACC_MAX_ORDERS];
    for (size_t i = 0; !rc && i < a->n; i++) {
        const cJSON *oi = cJSON_GetArrayItem(ords, (int)i), *ri = cJSON_GetArrayItem(rd, (int)i);
        if (!cJSON_IsNumber(oi) || !cJSON_IsNumber(ri) || oi->valuedouble != a->orders[i] ||
            !(ri->valuedouble >= 0) || !isfinite(ri->valuedouble))
            rc = fp_seterr(FP_EFORMAT, "%s: entry %zu (order / rdp) is not what this accountant tracks", path, i);
        else
            tmp[i] = ri->valuedouble;
    }
    if (!rc) {
        memcpy(a->rdp, tmp, a->n * sizeof tmp[0]);
        a->steps = (uint64_t)cJSON_GetObjectItemCaseSensitive(o, "steps")->valuedouble;
    }
    cJSON_Delete(o);
    return rc;
}

const char *fp_dp_mode_name(fp_dp_mode m)
{
    return m == FP_DP_DISTRIBUTED ? "distributed" : m == FP_DP_CENTRAL ? "central" : "off";
}

int fp_dp_config_parse(fp_dp_config *out, const char *json, size_t len)
{
    static const fp_json_field f[] = {{"clip", FP_JSON_NUMBER, 1},
                                      {"noise_multiplier", FP_JSON_NUMBER, 1},
                                      {"delta", FP_JSON_NUMBER, 0},
                                      {"mode", FP_JSON_STRING, 0}};
    memset(out, 0, sizeof *out);
    cJSON *o = NULL;
    int rc = fp_json_parse(&o, json, len, f, sizeof f / sizeof f[0], "server config \"dp\"");
    if (rc)
        return rc;
    double c = cJSON_GetObjectItemCaseSensitive(o, "clip")->valuedouble;
    double z = cJSON_GetObjectItemCaseSensitive(o, "noise_multiplier")->valuedouble;
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(o, "delta"), *md = cJSON_GetObjectItemCaseSensitive(o, "mode");
    double d = dl ? dl->valuedouble : 1e-5;
    const char *m = md ? md->valuestring : "distributed";
    if (!(c > 0) || !isfinite(c))
        rc = fp_seterr(FP_EFORMAT, "server config \"dp\": \"clip\" must be a positive finite number, got %g", c);
    else if (!(z > 0) || z > 1e6)
        rc = fp_seterr(FP_EFORMAT, "server config \"dp\": \"noise_multiplier\" must be in (0, 1e6], got %g", z);
    else if (!(d > 0 && d < 1))
        rc = fp_seterr(FP_EFORMAT, "server config \"dp\": \"delta\" must be in (0, 1), got %g", d);
    else if (strcmp(m, "distributed") && strcmp(m, "central"))
        rc = fp_seterr(FP_EFORMAT, "server config \"dp\": \"mode\" must be \"distributed\" or \"central\", got \"%s\"",
                       m);
    if (!rc) {
        out->clip = c;
        out->noise_multiplier = z;
        out->delta = d;
        out->mode = strcmp(m, "central") ? FP_DP_DISTRIBUTED : FP_DP_CENTRAL;
    }
    cJSON_Delete(o);
    return rc;
}
