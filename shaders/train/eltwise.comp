#version 450
// Elementwise f32 ops on n units starting at unit off (a unit is one float, or
// with VEC4 a vec4 of them: the host runs the vec4 variant over the multiple-of-4
// prefix and the scalar one over the tail).
// ADD:   y = a + b
// AXPY:  y += alpha * x          (accumulate; alpha = 1 for a residual add)
// SCALE: y *= alpha              (in place)
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(push_constant) uniform P { uint n; uint off; float alpha; } pc;
#if defined(ADD)
layout(std430, binding = 0) readonly buffer A { T a[]; };
layout(std430, binding = 1) readonly buffer B { T b[]; };
layout(std430, binding = 2) writeonly buffer Y { T y[]; };
#elif defined(AXPY)
layout(std430, binding = 0) readonly buffer X { T x[]; };
layout(std430, binding = 1) buffer Y { T y[]; };
#else
layout(std430, binding = 0) buffer Y { T y[]; };
#endif

void main()
{
    uint g = fp_gid();
    if (g >= pc.n)
        return;
    uint i = pc.off + g;
#if defined(ADD)
    y[i] = a[i] + b[i];
#elif defined(AXPY)
    y[i] += pc.alpha * x[i];
#else
    y[i] *= pc.alpha;
#endif
}
