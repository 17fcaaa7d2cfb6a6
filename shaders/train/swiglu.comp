#version 450
// SwiGLU, elementwise on equal-shaped gate g and up u, n units from unit off
// (VEC4: a unit is a vec4; the host runs the scalar variant on the tail).
// FWD: h = silu(g) * u, silu(g) = g * sigmoid(g).
// BWD: dg = dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))), du = dh * silu(g).
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(push_constant) uniform P { uint n; uint off; } pc;
layout(std430, binding = 0) readonly buffer G { T g[]; };
layout(std430, binding = 1) readonly buffer U { T u[]; };
#ifdef FWD
layout(std430, binding = 2) writeonly buffer H { T h[]; };
#else
layout(std430, binding = 2) readonly buffer DH { T dh[]; };
layout(std430, binding = 3) writeonly buffer DG { T dg[]; };
layout(std430, binding = 4) writeonly buffer DU { T du[]; };
#endif

void main()
{
    uint k = fp_gid();
    if (k >= pc.n)
        return;
    uint i = pc.off + k;
    T gv = g[i];
    T sg = 1.0 / (1.0 + exp(-gv));
#ifdef FWD
    h[i] = gv * sg * u[i];
#else
    T d = dh[i];
    dg[i] = d * u[i] * sg * (1.0 + gv * (1.0 - sg));
    du[i] = d * gv * sg;
#endif
}
