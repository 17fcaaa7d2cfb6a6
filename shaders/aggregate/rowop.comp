#version 450
// In-place per-client row ops on X[k0 + k, i], one coordinate per thread, loop over rows:
//  CLIP: x *= (nrm > c ? c / nrm : 1) with nrm = v[voff + k]  (norm clipping)
//  TRIM: x = abs(x) >= v[voff + k] ? x : 0                    (TIES trim, v = thresholds)
#include "common.glsl"
layout(std430, binding = 0) buffer XB { float x[]; };
layout(std430, binding = 1) readonly buffer VB { float v[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, voff; float c; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    uint xi = pc.xoff + i;
    for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
        float t = v[pc.voff + k];
#ifdef CLIP
        float f = t > pc.c ? pc.c / t : 1.0;
        x[xi] *= f;
#else
        float a = x[xi];
        x[xi] = abs(a) >= t ? a : 0.0;
#endif
    }
}
