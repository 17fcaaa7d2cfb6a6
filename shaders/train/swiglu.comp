#version 450
// SwiGLU, elementwise on equal-shaped gate g and up u.
// FWD: h = silu(g) * u, silu(g) = g * sigmoid(g).
// BWD: dg = dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))), du = dh * silu(g).
#include "common.glsl"
layout(push_constant) uniform P { uint n; } pc;
layout(std430, binding = 0) readonly buffer G { float g[]; };
layout(std430, binding = 1) readonly buffer U { float u[]; };
#ifdef FWD
layout(std430, binding = 2) writeonly buffer H { float h[]; };
#else
layout(std430, binding = 2) readonly buffer DH { float dh[]; };
layout(std430, binding = 3) writeonly buffer DG { float dg[]; };
layout(std430, binding = 4) writeonly buffer DU { float du[]; };
#endif

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    float gv = g[i];
    float sg = 1.0 / (1.0 + exp(-gv));
#ifdef FWD
    h[i] = gv * sg * u[i];
#else
    float d = dh[i];
    dg[i] = d * u[i] * sg * (1.0 + gv * (1.0 - sg));
    du[i] = d * gv * sg;
#endif
}
