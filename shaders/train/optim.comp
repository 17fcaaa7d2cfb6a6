#version 450
// Optimizer updates on f32 params p with f32 grads g (scaled by gscale[1] with
// GSCALE: the clip coefficient written by gradnorm FINAL, read on the device).
// ADAMW: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//        p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * p)
// SGD:   p -= lr * (g + wd * p)
// n units from unit off; VEC4: a unit is a vec4 (the host runs the scalar
// variant on the tail).
// TEXEL (with VEC4): p, g, m, v are read as vec4 texels (host: FP_WTEX4 for
// p, m, v, FP_TEX4 for g, at FP_TEXEL_BINDING(0..3)) and p, m, v stored to
// their buffers; each invocation reads only the units it writes. Why: llvmpipe
// loads a storage buffer lane by lane but fetches a texel for 8 lanes at once.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(push_constant) uniform P { uint n; uint off; float lr; float b1; float b2; float eps; float wd; uint t; } pc;
layout(std430, binding = 0) buffer PB { T p[]; };
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer pt;
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer gt;
#define LP(i) texelFetch(pt, int(i))
#define LG(i) texelFetch(gt, int(i))
#else
layout(std430, binding = 1) readonly buffer GB { T g[]; };
#define LP(i) p[i]
#define LG(i) g[i]
#endif
#ifdef ADAMW
layout(std430, binding = 2) buffer MB { T m[]; };
layout(std430, binding = 3) buffer VB { T v[]; };
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(2)) uniform samplerBuffer mt;
layout(binding = FP_TEXEL_BINDING(3)) uniform samplerBuffer vt;
#define LM(i) texelFetch(mt, int(i))
#define LV(i) texelFetch(vt, int(i))
#else
#define LM(i) m[i]
#define LV(i) v[i]
#endif
#define GS_BINDING 4
#else
#define GS_BINDING 2
#endif
#ifdef GSCALE
layout(std430, binding = GS_BINDING) readonly buffer SB { float gscale[]; };
#endif

void main()
{
    uint k = fp_gid();
    if (k >= pc.n)
        return;
    uint i = pc.off + k;
    T gi = LG(i);
#ifdef GSCALE
    gi *= gscale[1];
#endif
    T pi = LP(i);
#ifdef ADAMW
    T mi = pc.b1 * LM(i) + (1.0 - pc.b1) * gi;
    T vi = pc.b2 * LV(i) + (1.0 - pc.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float bc1 = 1.0 - pow(pc.b1, float(pc.t));
    float bc2 = 1.0 - pow(pc.b2, float(pc.t));
    p[i] = pi - pc.lr * ((mi / bc1) / (sqrt(vi / bc2) + pc.eps) + pc.wd * pi);
#else
    p[i] = pi - pc.lr * (gi + pc.wd * pi);
#endif
}
