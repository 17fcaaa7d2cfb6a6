#version 450
// Ring Z_{2^32} sums (wrapping u32 arithmetic), one coordinate (or uvec4) per thread:
//   o[i] = (acc ? o[i] : 0) +- sum_{k < nk} x[xoff + k*ld + i]
// flags: 1 accumulate, 2 subtract. With VEC4, n, ld and offsets are in uvec4 units.
// TEXEL (vec4 only): the big read-only operands come through uniform texel
// buffers at FP_TEXEL_BINDING(i) (the host's FP_TEX4 bindings), which llvmpipe
// fetches several times faster than it loads storage buffers.
#include "common.glsl"
#ifdef VEC4
#define T uvec4
#else
#define T uint
#endif
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform usamplerBuffer xt;
layout(binding = FP_TEXEL_BINDING(1)) uniform usamplerBuffer ot; // the output's own texels (FP_WTEX4)
#define XL(i) texelFetch(xt, int(i))
#define OL(i) texelFetch(ot, int(i))
#else
layout(std430, binding = 0) readonly buffer XB { T x[]; };
#define XL(i) x[i]
#define OL(i) o[i]
#endif
layout(std430, binding = 1) buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, flags; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    T acc = (pc.flags & 1u) != 0u ? OL(pc.ooff + i) : T(0u);
    uint xi = pc.xoff + i;
    if ((pc.flags & 2u) != 0u) {
        for (uint k = 0u; k < pc.nk; k++, xi += pc.ld)
            acc -= XL(xi);
    } else {
        for (uint k = 0u; k < pc.nk; k++, xi += pc.ld)
            acc += XL(xi);
    }
    o[pc.ooff + i] = acc;
}
