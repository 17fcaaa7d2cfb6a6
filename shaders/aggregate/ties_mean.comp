#version 450
// TIES disjoint mean: o = msum / max(cnt, 1). o may be the same memory as msum
// (each thread reads its element before writing it).
#include "common.glsl"
layout(std430, binding = 0) readonly buffer SB { float msum[]; };
layout(std430, binding = 1) readonly buffer CB { float cnt[]; };
layout(std430, binding = 2) writeonly buffer OB { float o[]; };
layout(push_constant) uniform P { uint n, soff, coff, ooff; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    o[pc.ooff + i] = msum[pc.soff + i] / max(cnt[pc.coff + i], 1.0);
}
