#version 450
// Stochastic-rounding quantisation of f32 to the ring (two's complement u32):
//   c = isnan(x) ? 0 : clamp(x, -clip, clip); v = c * 2^s (exact)
//   q = floor(v) + (u < v - floor(v)),  u = (2*(h >> 9) + 1) * 2^-24, h = hash(seed, idx0 + i)
// Only exact or correctly rounded operations: bit-exact with the C reference.
// With VEC4 each thread does 4 consecutive coordinates (n, offsets in vec4 units).
// TEXEL (vec4 only): the read-only operands come through uniform texel
// buffers at FP_TEXEL_BINDING(i) (the host's FP_TEX4 bindings), which llvmpipe
// fetches several times faster than it loads storage buffers. There each
// invocation does ITEMS vec4s (specialization constant 3), strided by the
// workgroup size so that neighbouring invocations still touch neighbouring
// texels: all ITEMS are computed before any is stored, so the CPU overlaps
// their hash chains (four dependent multiplies per coordinate). On lavapipe at
// 2^20 floats, 24 alternating windows of 16 calls, three runs: ITEMS 1 -> 4
// took the median call from 2.63-3.39 to 2.20-2.89 ms (2 vCPUs); 8 was slower
// than 4.
#include "common.glsl"
#include "agg_hash.glsl"
#if defined(TEXEL)
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
layout(std430, binding = 1) writeonly buffer QB { uvec4 q[]; };
#define XL(i) texelFetch(xt, int(i))
#elif defined(VEC4)
#define XL(i) x[i]
layout(std430, binding = 0) readonly buffer XB { vec4 x[]; };
layout(std430, binding = 1) writeonly buffer QB { uvec4 q[]; };
#else
layout(std430, binding = 0) readonly buffer XB { float x[]; };
layout(std430, binding = 1) writeonly buffer QB { uint q[]; };
#endif
layout(push_constant) uniform P { uint n, xoff, qoff, idx0, seed_lo, seed_hi; float clip, scale; } pc;

uint quant1(float xv, uint idx)
{
    float c = isnan(xv) ? 0.0 : min(max(xv, -pc.clip), pc.clip);
    float v = c * pc.scale;
    float f = floor(v);
    float fr = v - f;
    uint h = fp_agg_hash(pc.seed_lo, pc.seed_hi, idx);
    float u = float(((h >> 9u) << 1u) | 1u) * (1.0 / 16777216.0);
    int qi = int(f) + (u < fr ? 1 : 0);
    return uint(qi);
}

#ifdef TEXEL
layout(constant_id = 3) const uint ITEMS = 1;
#define QUANT_MAX_ITEMS 4 // the host's QUANT_TEX_ITEMS may not exceed it

void main()
{
    uint wg = gl_WorkGroupSize.x;
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint base = group * wg * ITEMS + gl_LocalInvocationID.x;
    uvec4 r[QUANT_MAX_ITEMS];
    for (uint k = 0; k < QUANT_MAX_ITEMS && k < ITEMS; k++) {
        // past n: the last vec4 again (no branch around the chains), not stored
        uint i = min(base + k * wg, pc.n - 1u);
        vec4 xv = XL(pc.xoff + i);
        uint b = pc.idx0 + 4u * i;
        r[k] = uvec4(quant1(xv.x, b), quant1(xv.y, b + 1u), quant1(xv.z, b + 2u), quant1(xv.w, b + 3u));
    }
    for (uint k = 0; k < QUANT_MAX_ITEMS && k < ITEMS; k++) {
        uint i = base + k * wg;
        if (i < pc.n)
            q[pc.qoff + i] = r[k];
    }
}
#else
void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
#ifdef VEC4
    vec4 xv = XL(pc.xoff + i);
    uint b = pc.idx0 + 4u * i;
    q[pc.qoff + i] = uvec4(quant1(xv.x, b), quant1(xv.y, b + 1u), quant1(xv.z, b + 2u), quant1(xv.w, b + 3u));
#else
    q[pc.qoff + i] = quant1(x[pc.xoff + i], pc.idx0 + i);
#endif
}
#endif
