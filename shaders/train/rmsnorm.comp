#version 450
// RMSNorm over rows of length C, one workgroup per row.
// FWD: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps), saved per row.
// BWD (dx only; dw is rmsnorm_dw.comp):
//   dx_j = rstd * w_j * dy_j - rstd^3 / C * x_j * sum_k(w_k dy_k x_k)
#include "common.glsl"
#include "train/reduce.glsl"

layout(push_constant) uniform P { uint rows; uint C; float eps; } pc;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
#ifdef FWD
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(std430, binding = 3) writeonly buffer R { float rstd[]; };
#else
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) readonly buffer R { float rstd[]; };
layout(std430, binding = 4) writeonly buffer DX { float dx[]; };
#endif

void main()
{
    uint row = wg_row();
    if (row >= pc.rows)
        return; // whole workgroup: uniform
    uint base = row * pc.C, l = LANE, n = LANES;
#ifdef FWD
    float s = 0.0;
    for (uint j = l; j < pc.C; j += n) {
        float v = x[base + j];
        s += v * v;
    }
    s = wg_sum(s);
    float r = inversesqrt(s / float(pc.C) + pc.eps);
    for (uint j = l; j < pc.C; j += n)
        y[base + j] = x[base + j] * r * w[j];
    if (l == 0)
        rstd[row] = r;
#else
    float r = rstd[row];
    float s = 0.0;
    for (uint j = l; j < pc.C; j += n)
        s += w[j] * dy[base + j] * x[base + j];
    s = wg_sum(s);
    float k = r * r * r * s / float(pc.C);
    for (uint j = l; j < pc.C; j += n)
        dx[base + j] = r * w[j] * dy[base + j] - k * x[base + j];
#endif
}
