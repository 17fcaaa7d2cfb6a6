#version 450
// Stage 2 of per-client L2 norms: norm[k] = sqrt(sum_p partial[k*np + p]), summed in order.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer PB { float part[]; };
layout(std430, binding = 1) writeonly buffer NB { float nrm[]; };
layout(push_constant) uniform P { uint nk, np; } pc;

void main()
{
    uint k = fp_gid();
    if (k >= pc.nk)
        return;
    float s = 0.0;
    for (uint p = 0u; p < pc.np; p++)
        s += part[k * pc.np + p];
    nrm[k] = sqrt(s);
}
