#version 450
// Coordinate-wise trimmed mean / median for any number of clients, without a
// private array: the values of ranks lo and hi (0-based, ascending) are found
// exactly by a digit-wise search on order-preserving u32 keys (16 counting
// passes of 2 bits over the nk values, both ranks at once), then one pass sums the values
// strictly between them (in client order) plus the kept copies of the two
// boundary values. Exact selection, deterministic; the kernel is small, so it
// compiles fast everywhere (the register network of order_stat.comp does not
// for large K).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XB { float x[]; };
layout(std430, binding = 1) writeonly buffer OB { float o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, lo, hi; } pc;

uint fkey(float f)
{
    uint u = floatBitsToUint(f);
    return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

float unkey(uint k)
{
    return uintBitsToFloat((k & 0x80000000u) != 0u ? (k & 0x7fffffffu) : ~k);
}

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    uint base = pc.xoff + i;
    uint ylo = 0u, yhi = 0u;
    // 2 bits per pass (16 passes): the largest candidate digit whose count of
    // smaller keys is <= the rank; counts are monotone in the candidate.
    for (int bit = 30; bit >= 0; bit -= 2) {
        uint sh = uint(bit);
        uint l1 = ylo | (1u << sh), l2 = ylo | (2u << sh), l3 = ylo | (3u << sh);
        uint h1 = yhi | (1u << sh), h2 = yhi | (2u << sh), h3 = yhi | (3u << sh);
        uint nl1 = 0u, nl2 = 0u, nl3 = 0u, nh1 = 0u, nh2 = 0u, nh3 = 0u;
        uint xi = base;
        for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
            uint kk = fkey(x[xi]);
            nl1 += kk < l1 ? 1u : 0u;
            nl2 += kk < l2 ? 1u : 0u;
            nl3 += kk < l3 ? 1u : 0u;
            nh1 += kk < h1 ? 1u : 0u;
            nh2 += kk < h2 ? 1u : 0u;
            nh3 += kk < h3 ? 1u : 0u;
        }
        ylo = nl3 <= pc.lo ? l3 : (nl2 <= pc.lo ? l2 : (nl1 <= pc.lo ? l1 : ylo));
        yhi = nh3 <= pc.hi ? h3 : (nh2 <= pc.hi ? h2 : (nh1 <= pc.hi ? h1 : yhi));
    }
    if (ylo == yhi) {
        o[pc.ooff + i] = unkey(ylo);
        return;
    }
    uint le_lo = 0u, lt_hi = 0u;
    float s = 0.0;
    uint xi = base;
    for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
        float v = x[xi];
        uint kk = fkey(v);
        le_lo += kk <= ylo ? 1u : 0u;
        lt_hi += kk < yhi ? 1u : 0u;
        if (kk > ylo && kk < yhi)
            s += v;
    }
    s += float(le_lo - pc.lo) * unkey(ylo);
    s += float(pc.hi + 1u - lt_hi) * unkey(yhi);
    o[pc.ooff + i] = s / float(pc.hi - pc.lo + 1u);
}
