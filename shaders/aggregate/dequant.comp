#version 450
// Ring sum to f32: o = (float(int(q)) * step) * post.
#include "common.glsl"
#ifdef VEC4
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
    o[pc.ooff + i] = (vec4(ivec4(q[pc.qoff + i])) * pc.step) * pc.post;
#else
    o[pc.ooff + i] = (float(int(q[pc.qoff + i])) * pc.step) * pc.post;
#endif
}
