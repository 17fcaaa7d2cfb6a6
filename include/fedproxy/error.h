/* fedproxy: error codes and the per-thread error message.
 *
 * Every public function returns 0 on success or one of the negative codes below.
 * On failure it also leaves a human-readable message, naming the problem (the
 * file, the device, the tensor, the peer...), in a thread-local buffer that
 * fp_errmsg() returns. The message stays valid until the next failing call on
 * the same thread. Threading: safe; each thread has its own message.
 */
#ifndef FEDPROXY_ERROR_H
#define FEDPROXY_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum fp_err {
    FP_OK = 0,
    FP_EINVAL = -1,        /* invalid argument */
    FP_ENOMEM = -2,        /* host out of memory */
    FP_EIO = -3,           /* file or OS I/O error */
    FP_EFORMAT = -4,       /* malformed input (file, JSON, message) */
    FP_ENOLOADER = -5,     /* no Vulkan loader on this system */
    FP_ENODEV = -6,        /* no (matching) Vulkan device */
    FP_EDEVMEM = -7,       /* out of device memory */
    FP_EDEVLOST = -8,      /* Vulkan device lost */
    FP_EVULKAN = -9,       /* other Vulkan failure */
    FP_EUNSUPPORTED = -10, /* feature missing on this device or build */
    FP_EPIPELINE = -11,    /* compute pipeline could not be built */
    FP_ESHAPE = -12,       /* tensor shapes or dtypes do not agree */
    FP_ECRYPTO = -13,      /* signature / MAC / key failure */
    FP_EPROTO = -14,       /* protocol violation by a peer */
    FP_EREPLAY = -15,      /* replayed or out-of-order message */
    FP_EAUTH = -16,        /* unknown or forged sender */
    FP_ETIMEOUT = -17,     /* deadline passed */
    FP_ENET = -18,         /* network/transport failure */
    FP_ESTATE = -19,       /* call not valid in the current state */
    FP_EOVERFLOW = -20,    /* arithmetic range would overflow */
    FP_ENOTFOUND = -21,    /* named item (file, tensor, key) not found */
    FP_EABORT = -22,       /* operation aborted (e.g. too few survivors) */
    FP_EPOLICY = -23       /* refused by the caller's own policy (e.g. a client's DP noise floor) */
};

/* Short constant description of a code ("out of device memory"). Never NULL. */
const char *fp_strerror(int err);

/* Detailed message of the last failure on the calling thread ("" if none). */
const char *fp_errmsg(void);

/* Clear the calling thread's message. */
void fp_errclear(void);

#ifdef __cplusplus
}
#endif
#endif
