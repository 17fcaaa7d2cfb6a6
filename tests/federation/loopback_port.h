/* A TCP port on 127.0.0.1 for a test's `fp serve` endpoint (POSIX). The port
 * is taken below the kernel's ephemeral range (32768-60999 on Linux), so no
 * outgoing connection of a test running beside this one can hold it, and it
 * is probed with bind(): a port another listener holds is skipped. The probe
 * socket is closed before the port is returned (a listener that never
 * accepted leaves no TIME_WAIT), so only a process binding that exact port in
 * the moment between can still collide. A fixed pid-derived port collided
 * with an ephemeral one in CI (test_fed_procs under ASan: "cannot bind ...
 * Address already in use"). */
#ifndef LOOPBACK_PORT_H
#define LOOPBACK_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOOPBACK_PORT_LO 20000
#define LOOPBACK_PORT_HI 32767

/* 1 if a TCP listener could bind 127.0.0.1:port now. */
static int loopback_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

/* A free port, scanning from a start that differs per process and per salt
 * (so two tests starting together begin apart); 0 if none is free. */
static int loopback_port(int salt)
{
    int span = LOOPBACK_PORT_HI - LOOPBACK_PORT_LO + 1;
    int start = (int)(((unsigned)getpid() * 7u + (unsigned)salt * 131u) % (unsigned)span);
    for (int i = 0; i < span; i++) {
        int port = LOOPBACK_PORT_LO + (start + i) % span;
        if (loopback_port_free(port))
            return port;
    }
    return 0;
}

#endif
