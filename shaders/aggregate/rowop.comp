#version 450
// In-place per-client row ops on X[k0 + k, i], one coordinate (VEC4: four) per
// thread, looping over the nk rows of its group:
//  CLIP: x *= (nrm > c ? c / nrm : 1) with nrm = v[voff + k]  (norm clipping)
//  TRIM: x = abs(x) >= v[voff + k] ? x : 0                    (TIES trim, v = thresholds)
// With VEC4, n, ld and xoff are in vec4 units.
// TEXEL (vec4 only): X is also bound as a uniform texel buffer (FP_WTEX4) and
// v as one of single floats (FP_TEX1): loads are texel fetches, stores go to
// the storage buffer (each invocation reads only what it writes); llvmpipe
// fetches texels several times faster than it loads storage buffers.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(std430, binding = 0) buffer XB { T x[]; };
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer vt;
#define XL(i) texelFetch(xt, int(i))
#define VL(i) texelFetch(vt, int(i)).x
#else
layout(std430, binding = 1) readonly buffer VB { float v[]; };
#define XL(i) x[i]
#define VL(i) v[i]
#endif
layout(push_constant) uniform P { uint n, nk, ld, xoff, voff; float c; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    uint xi = pc.xoff + i;
    for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
        float t = VL(pc.voff + k);
#ifdef CLIP
        float f = t > pc.c ? pc.c / t : 1.0;
        x[xi] = XL(xi) * f;
#else
        T a = XL(xi);
#ifdef VEC4
        x[xi] = mix(vec4(0.0), a, greaterThanEqual(abs(a), vec4(t)));
#else
        x[xi] = abs(a) >= t ? a : 0.0;
#endif
#endif
    }
}
