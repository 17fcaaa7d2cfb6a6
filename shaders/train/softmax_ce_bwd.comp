#version 450
// Softmax cross-entropy backward, elementwise over [rows, V]:
// d[row, j] = (exp(logits[row, j] - lse[row]) - (j == t)) * dloss / n_valid
// for rows with a valid target, 0 for ignored rows. n_valid is read from the
// device (ce_mean's out[1]): no host round trip. INPLACE overwrites the logits.
// Grid: x over columns, y (and z past 65535) over rows. The host may bind a
// chunk of rows through windows: row r's logits start at element loff + r*V
// (dlogits at doff + r*V), its target and lse at toff + r and soff + r.
// VEC4 (V, loff and doff multiples of 4): four columns per invocation; loff
// and doff are then in vec4 units.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(push_constant) uniform P {
    uint rows; uint V; int ignore_index; float dloss; uint ystride; uint loff, toff, soff, doff;
} pc;
#ifdef INPLACE
layout(std430, binding = 0) buffer L { T logits[]; };
#else
layout(std430, binding = 0) readonly buffer L { T logits[]; };
#endif
layout(std430, binding = 1) readonly buffer TG { int targets[]; };
layout(std430, binding = 2) readonly buffer S { float lse[]; };
layout(std430, binding = 3) readonly buffer M { float stats[]; };
#ifndef INPLACE
layout(std430, binding = 4) writeonly buffer D { T dlogits[]; };
#endif

void main()
{
    uint row = gl_WorkGroupID.y + gl_WorkGroupID.z * pc.ystride;
    uint j = gl_GlobalInvocationID.x;
#ifdef VEC4
    uint W = pc.V / 4u;
#else
    uint W = pc.V;
#endif
    if (row >= pc.rows || j >= W)
        return;
    int t = targets[pc.toff + row];
    bool valid = t != pc.ignore_index && t >= 0 && uint(t) < pc.V;
    uint i = pc.loff + row * W + j;
    T g = T(0.0);
    if (valid) {
        T p = exp(logits[i] - lse[pc.soff + row]);
#ifdef VEC4
        T hot = vec4(equal(uvec4(4u * j) + uvec4(0u, 1u, 2u, 3u), uvec4(uint(t))));
#else
        T hot = uint(t) == j ? 1.0 : 0.0;
#endif
        g = (p - hot) * (pc.dloss / max(stats[1], 1.0));
    }
#ifdef INPLACE
    logits[i] = g;
#else
    dlogits[pc.doff + row * W + j] = g;
#endif
}
