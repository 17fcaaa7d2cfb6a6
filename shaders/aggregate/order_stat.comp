#version 450
// Coordinate-wise trimmed mean (median as a special case) for nk <= KP clients
// (KP 64 and 128: CPU devices, where the values that do not fit registers
// spill to the L1 cache; GPUs use the radix kernel past 32):
// each thread loads its coordinate's values into registers, pads with +Inf,
// sorts them with Batcher's odd-even merge network (sortnet.glsl, constant
// indices only, so nothing is indexed dynamically) and averages ranks lo..hi in
// ascending order, as the C reference does. Exact selection, deterministic.
// VEC4: four coordinates per thread (n, ld and offsets in vec4 units); min and
// max act lane by lane, so the same network sorts four columns at once.
#include "common.glsl"
#ifndef KP
#define KP 8
#endif
// The number of clients, as a specialization constant: the network is pruned
// to it (see sortnet.glsl) and the padding loads fold away.
layout(constant_id = 3) const uint NK = KP;
#define SORTNET_N NK
#include "sortnet.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(std430, binding = 0) readonly buffer XB { T x[]; };
layout(std430, binding = 1) writeonly buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, lo, hi; } pc;

#define LD(k) v[k] = (k) < NK ? x[base + (k) * pc.ld] : T(inf);
#define SM(k) if ((k) < NK && (k) >= pc.lo && (k) <= pc.hi) s += v[k];
#define REP4(M, b) M(b) M((b) + 1) M((b) + 2) M((b) + 3)
#define REP16(M, b) REP4(M, b) REP4(M, (b) + 4) REP4(M, (b) + 8) REP4(M, (b) + 12)
#define REP64(M, b) REP16(M, b) REP16(M, (b) + 16) REP16(M, (b) + 32) REP16(M, (b) + 48)

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    const float inf = uintBitsToFloat(0x7f800000u);
    uint base = pc.xoff + i;
    T v[KP];
    T s = T(0.0);
#if KP == 4
    REP4(LD, 0u)
    SORTNET_4()
    REP4(SM, 0u)
#elif KP == 8
    REP4(LD, 0u) REP4(LD, 4u)
    SORTNET_8()
    REP4(SM, 0u) REP4(SM, 4u)
#elif KP == 16
    REP16(LD, 0u)
    SORTNET_16()
    REP16(SM, 0u)
#elif KP == 32
    REP16(LD, 0u) REP16(LD, 16u)
    SORTNET_32()
    REP16(SM, 0u) REP16(SM, 16u)
#elif KP == 64
    REP64(LD, 0u)
    SORTNET_64()
    REP64(SM, 0u)
#elif KP == 128
    REP64(LD, 0u) REP64(LD, 64u)
    SORTNET_128()
    REP64(SM, 0u) REP64(SM, 64u)
#else
#error KP must be 4, 8, 16, 32, 64 or 128
#endif
    o[pc.ooff + i] = s / float(pc.hi - pc.lo + 1u);
}
