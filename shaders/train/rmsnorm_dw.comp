#version 450
// RMSNorm weight gradient: dw_j (+)= sum over rows of dy[i,j] * x[i,j] * rstd[i].
// One invocation per column, rows summed in order: deterministic, no atomics.
#include "common.glsl"
layout(push_constant) uniform P { uint rows; uint C; uint accumulate; } pc;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) readonly buffer R { float rstd[]; };
layout(std430, binding = 3) buffer DW { float dw[]; };

void main()
{
    uint j = fp_gid();
    if (j >= pc.C)
        return;
    float s = 0.0;
    for (uint i = 0; i < pc.rows; i++)
        s += dy[i * pc.C + j] * x[i * pc.C + j] * rstd[i];
    dw[j] = pc.accumulate != 0 ? dw[j] + s : s;
}
