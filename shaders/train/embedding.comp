#version 450
// Embedding gather: out[i, c] = table[ids[i], c] for ids in [0, V), else 0.
// Grid: x over columns, y (and z past 65535) over tokens.
#include "common.glsl"
layout(push_constant) uniform P { uint N; uint C; uint V; uint ystride; } pc;
layout(std430, binding = 0) readonly buffer TB { float table[]; };
layout(std430, binding = 1) readonly buffer I { int ids[]; };
layout(std430, binding = 2) writeonly buffer O { float outv[]; };

void main()
{
    uint i = gl_WorkGroupID.y + gl_WorkGroupID.z * pc.ystride;
    uint c = gl_GlobalInvocationID.x;
    if (i >= pc.N || c >= pc.C)
        return;
    int id = ids[i];
    outv[i * pc.C + c] = (id >= 0 && uint(id) < pc.V) ? table[uint(id) * pc.C + c] : 0.0;
}
