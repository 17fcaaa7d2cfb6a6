#version 450
// RMSNorm weight gradient: dw_j (+)= sum over rows of dy[i,j] * x[i,j] * rstd[i].
// One invocation per column (VEC4, C a multiple of 4: per 4 columns), rows
// summed in order: deterministic, no atomics.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#define UNITS (pc.C / 4u)
#else
#define T float
#define UNITS pc.C
#endif
layout(push_constant) uniform P { uint rows; uint C; uint accumulate; } pc;
layout(std430, binding = 0) readonly buffer X { T x[]; };
layout(std430, binding = 1) readonly buffer DY { T dy[]; };
layout(std430, binding = 2) readonly buffer R { float rstd[]; };
layout(std430, binding = 3) buffer DW { T dw[]; };

void main()
{
    uint j = fp_gid(), C = UNITS;
    if (j >= C)
        return;
    T s = T(0.0);
    for (uint i = 0; i < pc.rows; i++)
        s += dy[i * C + j] * x[i * C + j] * rstd[i];
    dw[j] = pc.accumulate != 0 ? dw[j] + s : s;
}
