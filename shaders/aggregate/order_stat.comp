#version 450
// Coordinate-wise trimmed mean (median as a special case) for nk <= KP clients:
// each thread loads its coordinate's values into registers, pads with +Inf,
// sorts them with Batcher's odd-even merge network (sortnet.glsl, constant
// indices only, so nothing spills to memory) and averages ranks lo..hi in
// ascending order, as the C reference does. Exact selection, deterministic.
#include "common.glsl"
#include "sortnet.glsl"
#ifndef KP
#define KP 8
#endif
layout(std430, binding = 0) readonly buffer XB { float x[]; };
layout(std430, binding = 1) writeonly buffer OB { float o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, lo, hi; } pc;

#define LD(k) v[k] = (k) < pc.nk ? x[base + (k) * pc.ld] : inf;
#define SM(k) if ((k) >= pc.lo && (k) <= pc.hi) s += v[k];
#define REP4(M, b) M(b) M((b) + 1) M((b) + 2) M((b) + 3)
#define REP16(M, b) REP4(M, b) REP4(M, (b) + 4) REP4(M, (b) + 8) REP4(M, (b) + 12)

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    const float inf = uintBitsToFloat(0x7f800000u);
    uint base = pc.xoff + i;
    float v[KP];
    float s = 0.0;
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
#else
#error KP must be 4, 8, 16 or 32
#endif
    o[pc.ooff + i] = s / float(pc.hi - pc.lo + 1u);
}
