/* A round attempt's report as one JSON object (fp serve --json, fp sim --json). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error_internal.h"
#include "fedproxy/fed.h"
#include "fedproxy/msg.h"

static cJSON *split(const char *csv, char sep, size_t max)
{
    cJSON *a = cJSON_CreateArray();
    const char *p = csv;
    while (p && *p) {
        const char *e = strchr(p, sep);
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char buf[1024];
        if (n > max)
            n = max;
        memcpy(buf, p, n);
        buf[n] = '\0';
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
        p = e ? e + 1 : NULL;
    }
    return a;
}

static cJSON *names(const char *csv) { return split(csv, ',', FP_FED_NAME_MAX); }

int fp_fed_round_report_json(char **out, const fp_fed_round_report *r)
{
    *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return fp_seterr(FP_ENOMEM, "report: out of memory");
    cJSON_AddNumberToObject(o, "round", r->round);
    cJSON_AddNumberToObject(o, "index", r->index);
    cJSON_AddStringToObject(o, "status", r->status ? "retry" : "ok");
    cJSON_AddNumberToObject(o, "selected", r->selected);
    cJSON_AddNumberToObject(o, "included", r->included);
    cJSON_AddItemToObject(o, "joined", names(r->joined));
    cJSON_AddItemToObject(o, "dropped", names(r->dropped));
    cJSON_AddNumberToObject(o, "bytes_sent", (double)r->bytes_sent);
    cJSON_AddNumberToObject(o, "bytes_recv", (double)r->bytes_recv);
    cJSON *st = cJSON_AddObjectToObject(o, "stage_ms");
    static const char *const sn[8] = {"join",  "config", "train",  "advertise",
                                      "share", "masked", "unmask", "aggregate"};
    for (unsigned i = 0; i < 8; i++)
        if (r->stage_ms[i] > 0)
            cJSON_AddNumberToObject(st, sn[i], round(r->stage_ms[i] * 100) / 100);
    cJSON_AddNumberToObject(o, "total_ms", round(r->total_ms * 100) / 100);
    if (isfinite(r->loss))
        cJSON_AddNumberToObject(o, "loss", r->loss);
    else
        cJSON_AddNullToObject(o, "loss");
    cJSON_AddNumberToObject(o, "rejected", (double)r->rejected);
    cJSON_AddItemToObject(o, "refused", split(r->refused, ';', 1000));
    if (r->dp_on) {
        cJSON *d = cJSON_AddObjectToObject(o, "dp");
        cJSON_AddNumberToObject(d, "q", r->dp_q);
        cJSON_AddNumberToObject(d, "noise_multiplier", r->dp_z);
        cJSON_AddNumberToObject(d, "round_epsilon", r->dp_round_epsilon);
        cJSON_AddNumberToObject(d, "epsilon", r->dp_epsilon);
        cJSON_AddNumberToObject(d, "delta", r->dp_delta);
    }
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : fp_seterr(FP_ENOMEM, "report: out of memory");
}
