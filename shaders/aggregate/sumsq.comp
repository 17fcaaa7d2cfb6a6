#version 450
// Stage 1 of per-client L2 norms: sums of squares of slices of rows, written as
// partial sums that stage 2 (norm_finish.comp) adds up in order.
//
// Default (tree): workgroup (p, k) sums its slice [p*chunk, min((p+1)*chunk, n))
// of row k and writes partial[poff + k*pstride + p]. Reduction in the
// workgroup: subgroupAdd + a short serial pass over subgroups (SUBGROUP), or a
// shared-memory tree (the portable path; WG <= 64 invocations). For GPUs:
// neighbouring invocations read neighbouring addresses, and few partials.
//
// FLAT: no barrier and no shared memory. Workgroup (p, k) covers WG*ITEMS
// coordinates of row k from p*WG*ITEMS; each invocation accumulates ITEMS of
// them (ITEMS/4 vec4s with VEC4) serially, strided by WG so that a subgroup
// reads one contiguous run per step. The partials are written per invocation
// (slots = WG) or, with SUBGROUP, per subgroup after subgroupAdd (slots =
// WG / subgroup_min; slots of subgroups that do not exist are written 0), at
// partial[poff + k*pstride + p*slots + j]. For CPU devices (lavapipe), where
// a barrier costs a coroutine switch per subgroup and every invocation of a
// workgroup runs on one core: many loads per invocation, nothing shared.
//
// VEC4: n, ld, xoff (and chunk) in vec4 units (the host keeps rows whole vec4s).
// TEXEL (FLAT VEC4 only): X comes through a uniform texel buffer at
// FP_TEXEL_BINDING(0) (the host's FP_TEX4), which llvmpipe fetches several
// times faster than it loads a storage buffer.
#include "common.glsl"
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#ifdef VEC4
#define T vec4
#define UNIT 4u
#else
#define T float
#define UNIT 1u
#endif
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
#define XL(i) texelFetch(xt, int(i))
#else
layout(std430, binding = 0) readonly buffer XB { T x[]; };
#define XL(i) x[i]
#endif
layout(std430, binding = 1) writeonly buffer PB { float part[]; };

#ifdef FLAT
layout(constant_id = 3) const uint ITEMS = 64; // coordinates per invocation (a multiple of 4)
layout(push_constant) uniform P { uint n, ld, xoff, slots, poff, pstride; } pc;

void main()
{
    const uint wg = gl_WorkGroupSize.x, per = ITEMS / UNIT;
    uint lid = gl_LocalInvocationID.x;
    uint p = gl_WorkGroupID.x, k = gl_WorkGroupID.y;
    uint b = p * wg * per; // first unit of this workgroup
    uint i = pc.xoff + k * pc.ld + b + lid;
    float acc = 0.0;
    if (b + wg * per <= pc.n) {
        // whole slice: no bounds checks
        for (uint j = 0u; j < per; j++, i += wg) {
            T t = XL(i);
            acc += dot(t, t);
        }
    } else if (b < pc.n) {
        uint e = pc.xoff + k * pc.ld + pc.n;
        for (uint j = 0u; j < per; j++, i += wg)
            if (i < e) {
                T t = XL(i);
                acc += dot(t, t);
            }
    }
    uint slot = pc.poff + k * pc.pstride + p * pc.slots;
#ifdef SUBGROUP
    float r = subgroupAdd(acc);
    if (subgroupElect())
        part[slot + gl_SubgroupID] = r;
    if (lid >= gl_NumSubgroups && lid < pc.slots)
        part[slot + lid] = 0.0; // subgroups larger than the host assumed: fewer partials
#else
    part[slot + lid] = acc;
#endif
}

#else
layout(push_constant) uniform P { uint n, ld, xoff, chunk, poff, pstride; } pc;

#ifdef SUBGROUP
shared float sh[128]; // one slot per subgroup (WG / subgroup_min <= 128)
#else
shared float sh[gl_WorkGroupSize.x];
#endif

void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint p = gl_WorkGroupID.x, k = gl_WorkGroupID.y;
    uint b = p * pc.chunk, e = min(b + pc.chunk, pc.n);
    uint base = pc.xoff + k * pc.ld;
    float acc = 0.0;
    for (uint d = b + lid; d < e; d += gl_WorkGroupSize.x) {
        T t = x[base + d];
        acc += dot(t, t);
    }
#ifdef SUBGROUP
    float r = subgroupAdd(acc);
    if (subgroupElect())
        sh[gl_SubgroupID] = r;
    barrier();
    if (lid == 0u) {
        float t = 0.0;
        for (uint j = 0u; j < gl_NumSubgroups; j++)
            t += sh[j];
        part[pc.poff + k * pc.pstride + p] = t;
    }
#else
    sh[lid] = acc;
    barrier();
    for (uint h = gl_WorkGroupSize.x >> 1u; h > 0u; h >>= 1u) {
        if (lid < h)
            sh[lid] += sh[lid + h];
        barrier();
    }
    if (lid == 0u)
        part[pc.poff + k * pc.pstride + p] = sh[0];
#endif
}
#endif
