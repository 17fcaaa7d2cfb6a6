#version 450
// Split-K combine for decode: o = sum_s exp(lse_s - lse) o_s over the splits'
// normalised partial outputs in ws[((s*B + b)*Hq + h)*Tq + t][D+1] (last = lse_s).
// One invocation per output element of o [B, Tq, Hq, D].
#include "common.glsl"
layout(std430, binding = 0) readonly buffer W { float ws[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };
layout(push_constant) uniform P { uint n; uint B; uint Tq; uint Hq; uint D; uint nsplit; } pc;

void main()
{
    uint g = fp_gid();
    if (g >= pc.n)
        return;
    uint d = g % pc.D;
    uint row = g / pc.D;
    uint h = row % pc.Hq;
    uint t = (row / pc.Hq) % pc.Tq;
    uint b = row / (pc.Hq * pc.Tq);
    uint stride = pc.B * pc.Hq * pc.Tq * (pc.D + 1);
    uint base = ((b * pc.Hq + h) * pc.Tq + t) * (pc.D + 1);
    float mx = -3.0e38;
    for (uint s = 0; s < pc.nsplit; s++)
        mx = max(mx, ws[s * stride + base + pc.D]);
    float sum = 0.0, acc = 0.0;
    for (uint s = 0; s < pc.nsplit; s++) {
        float w = exp(ws[s * stride + base + pc.D] - mx);
        sum += w;
        acc += w * ws[s * stride + base + d];
    }
    o[g] = sum > 0.0 ? acc / sum : 0.0;
}
