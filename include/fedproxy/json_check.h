/* fedproxy: strict schema checks for JSON objects parsed with cJSON.
 *
 * Every JSON document a peer or a file hands us goes through here so that one
 * place decides what "well-formed" means: the root is an object, each listed
 * field has the listed type, required fields are present, no key appears twice
 * and no key outside the schema appears at all (an unknown key is an error, not
 * something to ignore: it usually means a version mismatch or a typo).
 *
 * Ownership: the schema is caller-owned, read only. Threading: safe (no state).
 */
#ifndef FEDPROXY_JSON_CHECK_H
#define FEDPROXY_JSON_CHECK_H

#include <stddef.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Field types. FP_JSON_INT is a number with an integral value in
 * [-2^53, 2^53] (exactly representable in a double); FP_JSON_UINT also >= 0. */
enum fp_json_type {
    FP_JSON_STRING = 1,
    FP_JSON_NUMBER = 2,
    FP_JSON_INT = 3,
    FP_JSON_UINT = 4,
    FP_JSON_BOOL = 5,
    FP_JSON_OBJECT = 6,
    FP_JSON_ARRAY = 7,
    FP_JSON_NULL = 8
};

typedef struct fp_json_field {
    const char *name; /* key */
    int type;         /* enum fp_json_type */
    int required;     /* nonzero: must be present */
} fp_json_field;

/* Checks obj against fields[0..n). what names the document in error messages
 * ("ROUND_START from 3f2a..", "clients.json"). Returns 0, or FP_EFORMAT with a
 * message naming the field and the problem. */
int fp_json_check(const cJSON *obj, const fp_json_field *fields, size_t n, const char *what);

/* Parses text[0..len) as exactly one JSON value (no trailing bytes, no NUL
 * inside) and, when fields is not NULL, checks it with fp_json_check. On success
 * *out is the tree (free with cJSON_Delete); on failure *out is NULL and the
 * result is FP_EFORMAT (FP_ENOMEM if cJSON could not allocate). */
int fp_json_parse(cJSON **out, const char *text, size_t len, const fp_json_field *fields, size_t n,
                  const char *what);

#ifdef __cplusplus
}
#endif
#endif
