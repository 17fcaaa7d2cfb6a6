/* fp bench fed [--json] [--quick]: federation server time, plain vs SecAgg+. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "fedproxy/fed.h"

int fp_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "fed")) {
        fprintf(stderr, "usage: fp bench fed [--json] [--quick]\n");
        return 2;
    }
    int quick = fp_cli_flag(argc, argv, "--quick"), json = fp_cli_flag(argc, argv, "--json");
    char *out = NULL;
    int rc = fp_bench_fed(quick, &out);
    if (rc)
        return fp_cli_fail("bench fed", rc);
    if (json) {
        printf("%s\n", out);
    } else {
        cJSON *o = cJSON_Parse(out);
        const cJSON *a = cJSON_GetObjectItem(o, "results"), *e;
        printf("%7s %7s %12s %12s %7s %10s %10s\n", "clients", "degree", "plain s", "secure s", "ratio",
               "wire plain", "wire sec");
        cJSON_ArrayForEach(e, a)
        {
            printf("%7d %7d %12.4f %12.4f %7.2f %10.4f %10.4f\n", cJSON_GetObjectItem(e, "clients")->valueint,
                   cJSON_GetObjectItem(e, "degree")->valueint,
                   cJSON_GetObjectItem(e, "plain_server_s")->valuedouble,
                   cJSON_GetObjectItem(e, "secure_server_s")->valuedouble,
                   cJSON_GetObjectItem(e, "ratio")->valuedouble,
                   cJSON_GetObjectItem(e, "plain_wire_ratio")->valuedouble,
                   cJSON_GetObjectItem(e, "secure_wire_ratio")->valuedouble);
        }
        printf("secure/plain server time at 100 clients: %.2f (target <= 2)\n",
               cJSON_GetObjectItem(o, "secure_over_plain_at_100")->valuedouble);
        cJSON_Delete(o);
    }
    free(out);
    return 0;
}
