#version 450
// Stage 1 of per-client L2 norms: workgroup (p, k) sums the squares of its slice
// [p*chunk, min((p+1)*chunk, n)) of row k and writes partial[poff + k*pstride + p].
// Reduction in the workgroup: subgroupAdd + a short serial pass over subgroups
// (SUBGROUP), or a shared-memory tree (the portable path; WG <= 64 invocations).
// VEC4: n, ld, xoff and chunk in vec4 units (the host keeps rows whole vec4s).
#include "common.glsl"
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#ifdef VEC4
layout(std430, binding = 0) readonly buffer XB { vec4 x[]; };
#else
layout(std430, binding = 0) readonly buffer XB { float x[]; };
#endif
layout(std430, binding = 1) writeonly buffer PB { float part[]; };
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
#ifdef VEC4
        vec4 t = x[base + d];
        acc += dot(t, t);
#else
        float t = x[base + d];
        acc += t * t;
#endif
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
