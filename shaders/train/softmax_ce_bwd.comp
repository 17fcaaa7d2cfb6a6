#version 450
// Softmax cross-entropy backward, elementwise over [rows, V]:
// d[row, j] = (exp(logits[row, j] - lse[row]) - (j == t)) * dloss / n_valid
// for rows with a valid target, 0 for ignored rows. n_valid is read from the
// device (ce_mean's out[1]): no host round trip. INPLACE overwrites the logits.
// Grid: x over columns, y (and z past 65535) over rows. The host may bind a
// chunk of rows through windows: row r's logits start at element loff + r*V
// (dlogits at doff + r*V), its target and lse at toff + r and soff + r.
#include "common.glsl"
layout(push_constant) uniform P {
    uint rows; uint V; int ignore_index; float dloss; uint ystride; uint loff, toff, soff, doff;
} pc;
#ifdef INPLACE
layout(std430, binding = 0) buffer L { float logits[]; };
#else
layout(std430, binding = 0) readonly buffer L { float logits[]; };
#endif
layout(std430, binding = 1) readonly buffer T { int targets[]; };
layout(std430, binding = 2) readonly buffer S { float lse[]; };
layout(std430, binding = 3) readonly buffer M { float stats[]; };
#ifndef INPLACE
layout(std430, binding = 4) writeonly buffer D { float dlogits[]; };
#endif

void main()
{
    uint row = gl_WorkGroupID.y + gl_WorkGroupID.z * pc.ystride;
    uint j = gl_GlobalInvocationID.x;
    if (row >= pc.rows || j >= pc.V)
        return;
    int t = targets[pc.toff + row];
    bool valid = t != pc.ignore_index && t >= 0 && uint(t) < pc.V;
    uint i = pc.loff + row * pc.V + j;
    float g = 0.0;
    if (valid) {
        float p = exp(logits[i] - lse[pc.soff + row]);
        g = (p - (uint(t) == j ? 1.0 : 0.0)) * (pc.dloss / max(stats[1], 1.0));
    }
#ifdef INPLACE
    logits[i] = g;
#else
    dlogits[pc.doff + row * pc.V + j] = g;
#endif
}
