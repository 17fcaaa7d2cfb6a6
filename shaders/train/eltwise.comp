#version 450
// Elementwise f32 ops on n elements.
// ADD:   y = a + b
// AXPY:  y += alpha * x          (accumulate; alpha = 1 for a residual add)
// SCALE: y *= alpha              (in place)
#include "common.glsl"
layout(push_constant) uniform P { uint n; float alpha; } pc;
#if defined(ADD)
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
#elif defined(AXPY)
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
#else
layout(std430, binding = 0) buffer Y { float y[]; };
#endif

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
#if defined(ADD)
    y[i] = a[i] + b[i];
#elif defined(AXPY)
    y[i] += pc.alpha * x[i];
#else
    y[i] *= pc.alpha;
#endif
}
