/* The port `fp serve --endpoint-file FILE` bound, for tests that start the
 * server on tcp://127.0.0.1:0 (POSIX). The kernel picks a port no one holds,
 * where a port chosen in advance can collide with another test's connection
 * (CI, test_fed_procs under ASan: "cannot bind ... Address already in use"). */
#ifndef ENDPOINT_FILE_H
#define ENDPOINT_FILE_H

#include <stdio.h>
#include <unistd.h>

/* Polls FILE until it holds a whole "tcp://127.0.0.1:PORT" line (fp serve
 * writes it once bound) and returns PORT; 0 after timeout_ms. */
static int endpoint_file_port(const char *file, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        FILE *f = fopen(file, "r");
        if (f) {
            int port = 0;
            char nl = 0;
            int got = fscanf(f, "tcp://127.0.0.1:%d%c", &port, &nl);
            fclose(f);
            if (got == 2 && nl == '\n' && port > 0 && port < 65536)
                return port;
        }
        usleep(20000);
    }
    return 0;
}

#endif
