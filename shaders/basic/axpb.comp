#version 450
// y = a*x + b elementwise (f32); x and y may be the same tensor.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; float a; float b; } pc;

void main()
{
    uint i = fp_gid();
    if (i < pc.n)
        y[i] = pc.a * x[i] + pc.b;
}
