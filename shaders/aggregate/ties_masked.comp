#version 450
// TIES masked sums: e = sign(total[i]);
//   msum += sum_k x_k * [x_k != 0 && sign(x_k) == e],  cnt += sum_k [x_k != 0 && sign(x_k) == e]
#include "common.glsl"
layout(std430, binding = 0) readonly buffer XB { float x[]; };
layout(std430, binding = 1) readonly buffer TB { float tot[]; };
layout(std430, binding = 2) buffer SB { float msum[]; };
layout(std430, binding = 3) buffer CB { float cnt[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, toff, soff, coff, flags; } pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    bool acc = (pc.flags & 1u) != 0u;
    float s = acc ? msum[pc.soff + i] : 0.0;
    float c = acc ? cnt[pc.coff + i] : 0.0;
    float e = sign(tot[pc.toff + i]);
    uint xi = pc.xoff + i;
    for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
        float a = x[xi];
        if (a != 0.0 && sign(a) == e) {
            s += a;
            c += 1.0;
        }
    }
    msum[pc.soff + i] = s;
    cnt[pc.coff + i] = c;
}
