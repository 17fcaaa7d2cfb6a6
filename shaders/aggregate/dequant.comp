#version 450
// Ring sum to f32: o = (float(int(q)) * step) * post.
// TEXEL (vec4 only): the read-only operands come through uniform texel
// buffers at FP_TEXEL_BINDING(i) (the host's FP_TEX4 bindings), which llvmpipe
// fetches several times faster than it loads storage buffers.
#include "common.glsl"
#if defined(TEXEL)
layout(binding = FP_TEXEL_BINDING(0)) uniform usamplerBuffer qt;
layout(std430, binding = 1) writeonly buffer OB { vec4 o[]; };
#define QL(i) texelFetch(qt, int(i))
#elif defined(VEC4)
#define QL(i) q[i]
layout(std430, binding = 0) readonly buffer QB { uvec4 q[]; };
layout(std430, binding = 1) writeonly buffer OB { vec4 o[]; };
#else
layout(std430, binding = 0) readonly buffer QB { uint q[]; };
layout(std430, binding = 1) writeonly buffer OB { float o[]; };
#endif
layout(push_constant) uniform P { uint n, qoff, ooff; float step, post; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
#ifdef VEC4
    o[pc.ooff + i] = (vec4(ivec4(QL(pc.qoff + i))) * pc.step) * pc.post;
#else
    o[pc.ooff + i] = (float(int(q[pc.qoff + i])) * pc.step) * pc.post;
#endif
}
