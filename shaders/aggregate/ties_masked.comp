#version 450
// TIES masked sums: e = sign(total[i]);
//   msum += sum_k x_k * [x_k != 0 && sign(x_k) == e],  cnt += sum_k [x_k != 0 && sign(x_k) == e]
// Clients in order k = 0..nk-1, as the C reference. VEC4: four coordinates per
// thread (n, ld and offsets in vec4 units), selected lane by lane.
// TEXEL (vec4 only): the big read-only operands come through uniform texel
// buffers at FP_TEXEL_BINDING(i) (the host's FP_TEX4 bindings), which llvmpipe
// fetches several times faster than it loads storage buffers, and each
// invocation does ITEMS vec4 columns strided by the workgroup size, as wsum's
// texel variant does (a workgroup of one SIMD batch then reads each client row
// in runs of 8 * ITEMS texels): K = 100, D = 2^20 on lavapipe, median 109 ms
// (one column per invocation) -> 80 ms (8 columns, workgroup 8), 16 rows per
// dispatch both.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer tt;
layout(binding = FP_TEXEL_BINDING(2)) uniform samplerBuffer st; // msum's own texels (FP_WTEX4)
layout(binding = FP_TEXEL_BINDING(3)) uniform samplerBuffer ct; // cnt's own texels (FP_WTEX4)
#define XL(i) texelFetch(xt, int(i))
#define TL(i) texelFetch(tt, int(i))
#define SL(i) texelFetch(st, int(i))
#define CL(i) texelFetch(ct, int(i))
#else
layout(std430, binding = 0) readonly buffer XB { T x[]; };
#define XL(i) x[i]
#define TL(i) tot[i]
#define SL(i) msum[i]
#define CL(i) cnt[i]
#endif
#ifndef TEXEL
layout(std430, binding = 1) readonly buffer TB { T tot[]; };
#endif
layout(std430, binding = 2) buffer SB { T msum[]; };
layout(std430, binding = 3) buffer CB { T cnt[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, toff, soff, coff, flags; } pc;

#ifdef TEXEL
layout(constant_id = 3) const uint ITEMS = 1;

void main()
{
    uint wg = gl_WorkGroupSize.x;
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint base = group * wg * ITEMS + gl_LocalInvocationID.x;
    if (base >= pc.n)
        return;
    uint mi = min(ITEMS, (pc.n - base + wg - 1u) / wg); // items of this invocation inside n
    bool acc = (pc.flags & 1u) != 0u;
    vec4 s[ITEMS], c[ITEMS], e[ITEMS];
    for (uint j = 0u; j < ITEMS; j++) {
        s[j] = acc && j < mi ? SL(pc.soff + base + j * wg) : vec4(0.0);
        c[j] = acc && j < mi ? CL(pc.coff + base + j * wg) : vec4(0.0);
        e[j] = j < mi ? sign(TL(pc.toff + base + j * wg)) : vec4(0.0);
    }
    uint xr = pc.xoff + base;
    for (uint k = 0u; k < pc.nk; k++, xr += pc.ld)
        for (uint j = 0u; j < ITEMS; j++)
            if (j < mi) {
                vec4 a = XL(xr + j * wg);
                bvec4 m = bvec4(uvec4(notEqual(a, vec4(0.0))) & uvec4(equal(sign(a), e[j])));
                s[j] = mix(s[j], s[j] + a, m);
                c[j] = mix(c[j], c[j] + 1.0, m);
            }
    for (uint j = 0u; j < ITEMS; j++)
        if (j < mi) {
            msum[pc.soff + base + j * wg] = s[j];
            cnt[pc.coff + base + j * wg] = c[j];
        }
}
#else
void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    bool acc = (pc.flags & 1u) != 0u;
    T s = acc ? SL(pc.soff + i) : T(0.0);
    T c = acc ? CL(pc.coff + i) : T(0.0);
    T e = sign(TL(pc.toff + i));
    uint xi = pc.xoff + i;
    for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
        T a = XL(xi);
#ifdef VEC4
        bvec4 m = bvec4(uvec4(notEqual(a, vec4(0.0))) & uvec4(equal(sign(a), e)));
        s = mix(s, s + a, m);
        c = mix(c, c + 1.0, m);
#else
        if (a != 0.0 && sign(a) == e) {
            s += a;
            c += 1.0;
        }
#endif
    }
    msum[pc.soff + i] = s;
    cnt[pc.coff + i] = c;
}
#endif
