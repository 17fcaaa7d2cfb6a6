/* The measured-profile cache (see include/fedproxy/measured.h). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/measured.h"
#include "error_internal.h"

const char *fp_measured_tune_get(const fp_measured *m, const char *key)
{
    if (!m || !key)
        return NULL;
    for (unsigned i = 0; i < m->ntune; i++)
        if (!strcmp(m->tune[i].key, key))
            return m->tune[i].value;
    return NULL;
}

int fp_measured_tune_set(fp_measured *m, const char *key, const char *value)
{
    if (!m || !key || !value || strlen(key) >= FP_TUNE_KEY_MAX || strlen(value) >= FP_TUNE_VALUE_MAX)
        return fp_seterr(FP_EINVAL, "tune entry '%s' is too long or empty", key ? key : "(null)");
    unsigned i = 0;
    while (i < m->ntune && strcmp(m->tune[i].key, key))
        i++;
    if (i == FP_TUNE_MAX)
        return fp_seterr(FP_EOVERFLOW, "tune table full (%d entries)", FP_TUNE_MAX);
    if (i == m->ntune)
        m->ntune++;
    snprintf(m->tune[i].key, FP_TUNE_KEY_MAX, "%s", key);
    snprintf(m->tune[i].value, FP_TUNE_VALUE_MAX, "%s", value);
    return 0;
}

static const struct { const char *key; size_t off; } num_fields[] = {
    {"copy_gbps", offsetof(fp_measured, copy_gbps)},
    {"h2d_gbps", offsetof(fp_measured, h2d_gbps)},
    {"d2h_gbps", offsetof(fp_measured, d2h_gbps)},
    {"dispatch_us", offsetof(fp_measured, dispatch_us)},
    {"submit_us", offsetof(fp_measured, submit_us)},
    {"matmul_gflops", offsetof(fp_measured, matmul_gflops)},
};
#define NUM_FIELDS (sizeof num_fields / sizeof num_fields[0])

int fp_measured_to_json(char **out, const fp_measured *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return fp_seterr(FP_ENOMEM, "out of memory");
    for (size_t i = 0; i < NUM_FIELDS; i++)
        cJSON_AddNumberToObject(o, num_fields[i].key, *(const double *)((const char *)m + num_fields[i].off));
    cJSON *t = cJSON_AddObjectToObject(o, "tune");
    for (unsigned i = 0; i < m->ntune; i++)
        cJSON_AddStringToObject(t, m->tune[i].key, m->tune[i].value);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s)
        return fp_seterr(FP_ENOMEM, "out of memory");
    *out = s;
    return 0;
}

int fp_measured_parse_json(fp_measured *m, const char *json, size_t len)
{
    memset(m, 0, sizeof *m);
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return fp_seterr(FP_EFORMAT, "measured profile: not a JSON object");
    }
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        size_t i = 0;
        while (i < NUM_FIELDS && strcmp(it->string, num_fields[i].key))
            i++;
        if (i < NUM_FIELDS) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0) {
                rc = fp_seterr(FP_EFORMAT, "measured profile: \"%s\" must be a non-negative number", it->string);
                break;
            }
            *(double *)((char *)m + num_fields[i].off) = it->valuedouble;
        } else if (!strcmp(it->string, "tune") && cJSON_IsObject(it)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, it)
            {
                if (!cJSON_IsString(e) || (rc = fp_measured_tune_set(m, e->string, e->valuestring)) != 0) {
                    rc = fp_seterr(FP_EFORMAT, "measured profile: bad tune entry \"%s\"", e->string);
                    break;
                }
            }
            if (rc)
                break;
        } else {
            rc = fp_seterr(FP_EFORMAT, "measured profile: unknown or mistyped key \"%s\"", it->string);
            break;
        }
    }
    cJSON_Delete(o);
    if (!rc)
        m->valid = 1;
    return rc;
}

int fp_measured_path(char *out, size_t out_len, const fp_profile *p)
{
    char dir[400];
    int rc = fp_cache_dir(dir, sizeof dir);
    if (rc)
        return rc;
    char uuid[33];
    for (int i = 0; i < 16; i++)
        snprintf(uuid + 2 * i, 3, "%02x", p->device_uuid[i]);
    char ov[64];
    snprintf(ov, sizeof ov, "%s", p->overlay[0] ? p->overlay : "native");
    for (char *c = ov; *c; c++)
        if (!(*c >= 'a' && *c <= 'z') && !(*c >= '0' && *c <= '9') && *c != '-')
            *c = '_';
    int n = snprintf(out, out_len, "%s/profile-%s-%08x-%s.json", dir, uuid, p->driver_version, ov);
    return n < 0 || (size_t)n >= out_len ? fp_seterr(FP_EINVAL, "cache path too long") : 0;
}

int fp_measured_load(fp_measured *m, const fp_profile *p)
{
    memset(m, 0, sizeof *m);
    char path[512];
    int rc = fp_measured_path(path, sizeof path, p);
    if (rc)
        return rc;
    void *d;
    size_t len;
    rc = fp_read_file(&d, &len, path, 1 << 20);
    if (rc)
        return rc;
    rc = fp_measured_parse_json(m, d, len);
    free(d);
    return rc ? fp_adderr(rc, "%s", path) : 0;
}

int fp_measured_save(const fp_measured *m, const fp_profile *p)
{
    char path[512];
    int rc = fp_measured_path(path, sizeof path, p);
    if (rc)
        return rc;
    char *s;
    rc = fp_measured_to_json(&s, m);
    if (rc)
        return rc;
    rc = fp_write_file_atomic(path, s, strlen(s), 0644);
    free(s);
    return rc;
}
