/* Coordinate-wise trimmed mean and median on the CPU by a sorting network
 * across columns (order_net.c): the server's median and trimmed-mean
 * aggregators run it on their column blocks. Same bits as
 * fp_agg_trimmed_mean_ref. A built network is read-only, so any number of
 * threads may run it at once, each with its own scratch. */
#ifndef FP_ORDER_NET_H
#define FP_ORDER_NET_H

#include <stddef.h>
#include <stdint.h>

#include "error_internal.h"

/* Columns per compare-exchange: 64 bytes, four SSE or two AVX vectors. */
#define AGG_ORDER_LANES 16
/* Clients the network takes (its slots are 16-bit; past this the caller
 * keeps the reference: the K x LANES scratch outgrows L1 long before). */
#define AGG_ORDER_NET_MAX 1024

typedef struct agg_order_net {
    size_t K;            /* clients */
    size_t nce;          /* compare-exchanges */
    uint16_t *ce;        /* nce pairs of storage slots (smaller value to the first) */
    uint16_t *rank_slot; /* K: the slot that holds rank r after the network */
    int wide;            /* 1: the 256-bit AVX path (x86-64 with AVX, FP_AGG_SIMD not "base") */
} agg_order_net;

/* The network for K clients, 1 <= K <= AGG_ORDER_NET_MAX. On success free
 * it with agg_order_net_free; on failure there is nothing to free. */
int agg_order_net_build(agg_order_net *net, size_t K);
void agg_order_net_free(agg_order_net *net);

/* out[j] for j < n: the mean of ranks b .. K-1-b of x[0][i0+j] .. x[K-1][i0+j]
 * (b = (K-1)/2: the median). w: scratch of K x AGG_ORDER_LANES floats. */
int agg_order_net_run(const agg_order_net *net, float *out, const float *const *x, size_t i0, size_t n, uint32_t b,
                      float *w);

#endif
