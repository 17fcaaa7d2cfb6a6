#version 450
// dst = src, n elements (f32 words) or n/4 vec4s with VEC4; the host dispatches the
// vec4 variant on the multiple-of-4 prefix and the scalar one on the tail.
// Each invocation moves ITEMS elements, strided by the workgroup size so that
// neighbouring invocations touch neighbouring addresses (llvmpipe vectorises
// across them; GPUs coalesce them).
// TEXEL (with VEC4): src is read as a uniform texel buffer of uvec4s (the
// host's FP_TEX4 binding 0 of a u32 view, so every 32-bit type copies
// bit-exactly); llvmpipe fetches texels several times faster than it loads
// storage-buffer elements.
#include "common.glsl"
#if defined(TEXEL)
#define T uvec4
#elif defined(VEC4)
#define T vec4
#else
#define T float
#endif
layout(constant_id = 3) const uint ITEMS = 1;
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform usamplerBuffer srct;
#define SRC(i) texelFetch(srct, int(i))
#else
layout(std430, binding = 0) readonly buffer Src { T src[]; };
#define SRC(i) src[i]
#endif
layout(std430, binding = 1) writeonly buffer Dst { T dst[]; };
layout(push_constant) uniform P { uint n; uint src_off; uint dst_off; } pc;

void main()
{
    uint wg = gl_WorkGroupSize.x;
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint base = group * wg * ITEMS + gl_LocalInvocationID.x;
    for (uint k = 0; k < ITEMS; k++) {
        uint i = base + k * wg;
        if (i < pc.n)
            dst[pc.dst_off + i] = SRC(pc.src_off + i);
    }
}
