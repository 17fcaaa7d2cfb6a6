/* Strict JSON schema checks (see fedproxy/json_check.h). */
#include "fedproxy/json_check.h"

#include <math.h>
#include <string.h>

#include "error_internal.h"

static const char *type_name(int type)
{
    switch (type) {
    case FP_JSON_STRING: return "a string";
    case FP_JSON_NUMBER: return "a number";
    case FP_JSON_INT: return "an integer";
    case FP_JSON_UINT: return "a non-negative integer";
    case FP_JSON_BOOL: return "a boolean";
    case FP_JSON_OBJECT: return "an object";
    case FP_JSON_ARRAY: return "an array";
    case FP_JSON_NULL: return "null";
    default: return "an unknown type";
    }
}

static int has_type(const cJSON *v, int type)
{
    switch (type) {
    case FP_JSON_STRING: return cJSON_IsString(v) && v->valuestring;
    case FP_JSON_NUMBER: return cJSON_IsNumber(v) && isfinite(v->valuedouble);
    case FP_JSON_INT:
    case FP_JSON_UINT: {
        if (!cJSON_IsNumber(v))
            return 0;
        double d = v->valuedouble;
        /* 2^53: beyond it doubles skip integers, so the value is not what was written */
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
            return 0;
        return type == FP_JSON_INT || d >= 0;
    }
    case FP_JSON_BOOL: return cJSON_IsBool(v);
    case FP_JSON_OBJECT: return cJSON_IsObject(v);
    case FP_JSON_ARRAY: return cJSON_IsArray(v);
    case FP_JSON_NULL: return cJSON_IsNull(v);
    default: return 0;
    }
}

int fp_json_check(const cJSON *obj, const fp_json_field *fields, size_t n, const char *what)
{
    if (!what)
        what = "JSON document";
    if (!obj || (!fields && n))
        return fp_seterr(FP_EINVAL, "%s: fp_json_check needs an object and a schema", what);
    if (!cJSON_IsObject(obj))
        return fp_seterr(FP_EFORMAT, "%s: expected a JSON object", what);

    /* Every key present: known, unique (cJSON keeps duplicates, and which one a
     * lookup returns is an accident of its implementation), of the right type. */
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!it->string)
            return fp_seterr(FP_EFORMAT, "%s: member without a key", what);
        const fp_json_field *f = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(fields[i].name, it->string) == 0) {
                f = &fields[i];
                break;
            }
        if (!f)
            return fp_seterr(FP_EFORMAT, "%s: unknown field \"%.64s\"", what, it->string);
        for (const cJSON *jt = it->next; jt; jt = jt->next)
            if (jt->string && strcmp(jt->string, it->string) == 0)
                return fp_seterr(FP_EFORMAT, "%s: field \"%s\" appears twice", what, f->name);
        if (!has_type(it, f->type))
            return fp_seterr(FP_EFORMAT, "%s: field \"%s\" must be %s", what, f->name,
                             type_name(f->type));
    }
    for (size_t i = 0; i < n; i++)
        if (fields[i].required && !cJSON_GetObjectItemCaseSensitive(obj, fields[i].name))
            return fp_seterr(FP_EFORMAT, "%s: missing required field \"%s\"", what, fields[i].name);
    return 0;
}

int fp_json_parse(cJSON **out, const char *text, size_t len, const fp_json_field *fields, size_t n,
                  const char *what)
{
    if (!what)
        what = "JSON document";
    if (!out || (!text && len))
        return fp_seterr(FP_EINVAL, "%s: fp_json_parse needs an output and text", what);
    *out = NULL;
    if (len == 0)
        return fp_seterr(FP_EFORMAT, "%s: empty JSON text", what);
    /* A NUL inside would let cJSON stop early and the rest go unchecked. */
    if (memchr(text, '\0', len))
        return fp_seterr(FP_EFORMAT, "%s: NUL byte inside JSON text", what);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return fp_seterr(FP_EFORMAT, "%s: invalid JSON near byte %zu", what, at);
    }
    /* cJSON stops after the first value; anything but whitespace after it is junk. */
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return fp_seterr(FP_EFORMAT, "%s: trailing bytes after the JSON value at byte %zu", what,
                             (size_t)(p - text));
        }
    if (fields) {
        int rc = fp_json_check(root, fields, n, what);
        if (rc) {
            cJSON_Delete(root);
            return rc;
        }
    }
    *out = root;
    return 0;
}
