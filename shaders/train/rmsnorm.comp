#version 450
// RMSNorm over rows of length C, one workgroup per row.
// FWD: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps), saved per row.
// BWD (dx only; dw is rmsnorm_dw.comp):
//   dx_j = rstd * w_j * dy_j - rstd^3 / C * x_j * sum_k(w_k dy_k x_k)
// VEC4 (C a multiple of 4): rows are read and written as vec4s.
#include "common.glsl"
#include "train/reduce.glsl"
#ifdef VEC4
#define T vec4
#define DOT(a, b) dot(a, b)
#define UNITS (pc.C / 4u)
#else
#define T float
#define DOT(a, b) ((a) * (b))
#define UNITS pc.C
#endif

layout(push_constant) uniform P { uint rows; uint C; float eps; } pc;
layout(std430, binding = 0) readonly buffer X { T x[]; };
layout(std430, binding = 1) readonly buffer W { T w[]; };
#ifdef FWD
layout(std430, binding = 2) writeonly buffer Y { T y[]; };
layout(std430, binding = 3) writeonly buffer R { float rstd[]; };
#else
layout(std430, binding = 2) readonly buffer DY { T dy[]; };
layout(std430, binding = 3) readonly buffer R { float rstd[]; };
layout(std430, binding = 4) writeonly buffer DX { T dx[]; };
#endif

void main()
{
    uint row = wg_row();
    if (row >= pc.rows)
        return; // whole workgroup: uniform
    uint C = UNITS, base = row * C, l = LANE, n = LANES;
#ifdef FWD
    float s = 0.0;
    for (uint j = l; j < C; j += n) {
        T v = x[base + j];
        s += DOT(v, v);
    }
    s = wg_sum(s);
    float r = inversesqrt(s / float(pc.C) + pc.eps);
    for (uint j = l; j < C; j += n)
        y[base + j] = x[base + j] * r * w[j];
    if (l == 0)
        rstd[row] = r;
#else
    float r = rstd[row];
    float s = 0.0;
    for (uint j = l; j < C; j += n)
        s += DOT(w[j] * dy[base + j], x[base + j]);
    s = wg_sum(s);
    float k = r * r * r * s / float(pc.C);
    for (uint j = l; j < C; j += n)
        dx[base + j] = r * w[j] * dy[base + j] - k * x[base + j];
#endif
}
