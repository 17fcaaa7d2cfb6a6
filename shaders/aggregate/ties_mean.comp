#version 450
// TIES disjoint mean: o = msum / max(cnt, 1). o may be the same memory as msum
// (each thread reads its element before writing it). VEC4: n and offsets in vec4 units.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(std430, binding = 0) readonly buffer SB { T msum[]; };
layout(std430, binding = 1) readonly buffer CB { T cnt[]; };
layout(std430, binding = 2) writeonly buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, soff, coff, ooff; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    o[pc.ooff + i] = msum[pc.soff + i] / max(cnt[pc.coff + i], T(1.0));
}
