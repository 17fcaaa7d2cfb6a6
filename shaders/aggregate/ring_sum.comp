#version 450
// Ring Z_{2^32} sums (wrapping u32 arithmetic), one coordinate (or uvec4) per thread:
//   o[i] = (acc ? o[i] : 0) +- sum_{k < nk} x[xoff + k*ld + i]
// flags: 1 accumulate, 2 subtract. With VEC4, n, ld and offsets are in uvec4 units.
// TEXEL (with VEC4): X and the output's own values are fetched as texels (the
// host's FP_TEX4 / FP_WTEX4 at FP_TEXEL_BINDING(0, 1)), which llvmpipe does
// several times faster than it loads storage buffers, and each invocation adds
// ITEMS uvec4 columns strided by the workgroup size: with a workgroup of one
// SIMD batch (llvmpipe: 8), each client row is then read in runs of
// 8 * ITEMS contiguous texels rather than 8 (see aggregate.c).
#include "common.glsl"
#ifdef VEC4
#define T uvec4
#else
#define T uint
#endif
layout(std430, binding = 1) buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, flags; } pc;

#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform usamplerBuffer xt;
layout(binding = FP_TEXEL_BINDING(1)) uniform usamplerBuffer ot; // the output's own texels (FP_WTEX4)
layout(constant_id = 3) const uint ITEMS = 1;

void main()
{
    uint wg = gl_WorkGroupSize.x;
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint base = group * wg * ITEMS + gl_LocalInvocationID.x;
    if (base >= pc.n)
        return;
    uint m = min(ITEMS, (pc.n - base + wg - 1u) / wg); // items of this invocation inside n
    T acc[ITEMS];
    for (uint j = 0u; j < ITEMS; j++)
        acc[j] = (pc.flags & 1u) != 0u && j < m ? texelFetch(ot, int(pc.ooff + base + j * wg)) : T(0u);
    uint xr = pc.xoff + base;
    bool sub = (pc.flags & 2u) != 0u;
    for (uint k = 0u; k < pc.nk; k++, xr += pc.ld)
        for (uint j = 0u; j < ITEMS; j++)
            if (j < m)
                acc[j] = sub ? acc[j] - texelFetch(xt, int(xr + j * wg)) : acc[j] + texelFetch(xt, int(xr + j * wg));
    for (uint j = 0u; j < ITEMS; j++)
        if (j < m)
            o[pc.ooff + base + j * wg] = acc[j];
}

#else
layout(std430, binding = 0) readonly buffer XB { T x[]; };

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    T acc = (pc.flags & 1u) != 0u ? o[pc.ooff + i] : T(0u);
    uint xi = pc.xoff + i;
    if ((pc.flags & 2u) != 0u) {
        for (uint k = 0u; k < pc.nk; k++, xi += pc.ld)
            acc -= x[xi];
    } else {
        for (uint k = 0u; k < pc.nk; k++, xi += pc.ld)
            acc += x[xi];
    }
    o[pc.ooff + i] = acc;
}
#endif
