#include "error_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP_ERRMSG_MAX 1024

static _Thread_local char tl_msg[FP_ERRMSG_MAX];

const char *fp_strerror(int err)
{
    switch (err) {
    case FP_OK: return "success";
    case FP_EINVAL: return "invalid argument";
    case FP_ENOMEM: return "out of host memory";
    case FP_EIO: return "I/O error";
    case FP_EFORMAT: return "malformed input";
    case FP_ENOLOADER: return "no Vulkan loader";
    case FP_ENODEV: return "no Vulkan device";
    case FP_EDEVMEM: return "out of device memory";
    case FP_EDEVLOST: return "device lost";
    case FP_EVULKAN: return "Vulkan error";
    case FP_EUNSUPPORTED: return "unsupported";
    case FP_EPIPELINE: return "pipeline build failed";
    case FP_ESHAPE: return "shape mismatch";
    case FP_ECRYPTO: return "cryptographic failure";
    case FP_EPROTO: return "protocol violation";
    case FP_EREPLAY: return "replayed or out-of-order message";
    case FP_EAUTH: return "unknown or forged sender";
    case FP_ETIMEOUT: return "timed out";
    case FP_ENET: return "network error";
    case FP_ESTATE: return "invalid state";
    case FP_EOVERFLOW: return "overflow";
    case FP_ENOTFOUND: return "not found";
    case FP_EABORT: return "aborted";
    case FP_EPOLICY: return "refused by local policy";
    default: return "unknown error";
    }
}

const char *fp_errmsg(void) { return tl_msg; }

void fp_errclear(void) { tl_msg[0] = '\0'; }

int fp_seterr(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    return code;
}

int fp_adderr(int code, const char *fmt, ...)
{
    char prefix[FP_ERRMSG_MAX];
    char old[FP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tl_msg, sizeof old);
    const char *rest = old[0] ? old : fp_strerror(code);
    size_t np = strlen(prefix), nr = strlen(rest);
    if (np > sizeof tl_msg - 3)
        np = sizeof tl_msg - 3;
    memcpy(tl_msg, prefix, np);
    memcpy(tl_msg + np, ": ", 2);
    if (nr > sizeof tl_msg - np - 3)
        nr = sizeof tl_msg - np - 3;
    memcpy(tl_msg + np + 2, rest, nr);
    tl_msg[np + 2 + nr] = '\0';
    return code;
}

void fp_warn(const char *fmt, ...)
{
    const char *q = getenv("FP_QUIET");
    if (q && q[0] && q[0] != '0')
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fedproxy: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
