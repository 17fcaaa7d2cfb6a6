#version 450
// TIES disjoint mean: o = msum / max(cnt, 1). o may be the same memory as msum
// (each thread reads its element before writing it). VEC4: n and offsets in vec4 units.
// TEXEL (vec4 only): the read-only operands come through uniform texel
// buffers at FP_TEXEL_BINDING(i) (the host's FP_TEX4 bindings), which llvmpipe
// fetches several times faster than it loads storage buffers.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer st;
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer ct;
#define SL(i) texelFetch(st, int(i))
#define CL(i) texelFetch(ct, int(i))
#else
layout(std430, binding = 0) readonly buffer SB { T msum[]; };
layout(std430, binding = 1) readonly buffer CB { T cnt[]; };
#define SL(i) msum[i]
#define CL(i) cnt[i]
#endif
layout(std430, binding = 2) writeonly buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, soff, coff, ooff; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    o[pc.ooff + i] = SL(pc.soff + i) / max(CL(pc.coff + i), T(1.0));
}
