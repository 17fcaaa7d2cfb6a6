#version 450
// RoPE, Hugging Face rotate-half convention, on rows of D floats ([.., T, H, D]).
// One invocation per (row, i < D/2) pair; y may alias x (each invocation reads
// its two elements before writing them). sgn = -1 rotates back (backward).
// inv_freq = 2^-(2i * log2(theta)/D) with the exponent's rounding error
// corrected (c = c_hi + c_lo), and the angle range-reduced (Cody-Waite) before
// cos/sin, so precision does not depend on the driver's large-argument sin.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint npairs; uint H; uint T; uint half_d; uint D; uint start_pos;
    float c_hi; float c_lo; float sgn;
} pc;

void main()
{
    uint g = fp_gid();
    if (g >= pc.npairs)
        return;
    uint i = g % pc.half_d;
    uint row = g / pc.half_d;
    uint t = (row / pc.H) % pc.T;
    float n = float(2u * i);
    precise float e = n * pc.c_hi;
    precise float err = fma(n, pc.c_hi, -e) + n * pc.c_lo;
    float inv = exp2(-e) * (1.0 - err * 0.69314718055994531);
    precise float a = float(pc.start_pos + t) * inv;
    float kq = round(a * 0.15915494309189535);
    precise float r = ((a - kq * 6.28125) - kq * 0.0019353071693331003) - kq * 1.0253131677018246e-11;
    float cs = cos(r), sn = sin(r) * pc.sgn;
    uint base = row * pc.D;
    float x0 = x[base + i], x1 = x[base + i + pc.half_d];
    y[base + i] = x0 * cs - x1 * sn;
    y[base + i + pc.half_d] = x1 * cs + x0 * sn;
}
