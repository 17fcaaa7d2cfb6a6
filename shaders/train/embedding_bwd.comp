#version 450
// Embedding backward, stage 2: for each leader token i and column c, sums dout
// over i's chain in token order and adds it to dtable[ids[i], c]. Each table
// row is touched by one invocation per column: deterministic, no atomics.
// Grid: x over columns, y (and z past 65535) over tokens.
#include "common.glsl"
layout(push_constant) uniform P { uint N; uint C; uint V; uint ystride; } pc;
layout(std430, binding = 0) readonly buffer DO { float dout[]; };
layout(std430, binding = 1) readonly buffer I { int ids[]; };
layout(std430, binding = 2) readonly buffer K { uint link[]; };
layout(std430, binding = 3) buffer DT { float dtable[]; };

void main()
{
    uint i = gl_WorkGroupID.y + gl_WorkGroupID.z * pc.ystride;
    uint c = gl_GlobalInvocationID.x;
    if (i >= pc.N || c >= pc.C)
        return;
    uint l = link[i];
    if ((l & 1u) == 0u)
        return;
    float s = 0.0;
    for (uint j = i; j < pc.N; j = link[j] >> 1)
        s += dout[j * pc.C + c];
    uint r = uint(ids[i]) * pc.C + c;
    dtable[r] += s;
}
