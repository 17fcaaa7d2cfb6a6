#version 450
// Ring Z_{2^32} sums (wrapping u32 arithmetic), one coordinate (or uvec4) per thread:
//   o[i] = (acc ? o[i] : 0) +- sum_{k < nk} x[xoff + k*ld + i]
// flags: 1 accumulate, 2 subtract. With VEC4, n, ld and offsets are in uvec4 units.
#include "common.glsl"
#ifdef VEC4
#define T uvec4
#else
#define T uint
#endif
layout(std430, binding = 0) readonly buffer XB { T x[]; };
layout(std430, binding = 1) buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, flags; } pc;

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
