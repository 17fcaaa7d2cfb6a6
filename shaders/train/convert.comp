#version 450
// dtype conversion between f32, f16 and bf16 on n elements, two per invocation
// (one 32-bit word of 16-bit data). 16-bit data is read and written as packed
// uint words, so no 16-bit storage or fp16 arithmetic feature is needed.
// f16: packHalf2x16/unpackHalf2x16. bf16: the top 16 bits of the f32, rounded
// to nearest even (NaN stays a quiet NaN). With an odd n, the last word's high
// half is preserved (read-modify-write), so views next to other data are safe.
// SRC_* / DST_* in {F32, F16, BF16}.
#include "common.glsl"
layout(push_constant) uniform P { uint n; } pc;
#ifdef SRC_F32
layout(std430, binding = 0) readonly buffer S { float src[]; };
#else
layout(std430, binding = 0) readonly buffer S { uint src[]; };
#endif
#ifdef DST_F32
layout(std430, binding = 1) writeonly buffer D { float dst[]; };
#else
layout(std430, binding = 1) buffer D { uint dst[]; };
#endif

uint bf16_round(float f)
{
    uint u = floatBitsToUint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

void main()
{
    uint k = fp_gid();
    uint i = 2u * k;
    if (i >= pc.n)
        return;
    bool two = i + 1u < pc.n;
    vec2 v;
#if defined(SRC_F32)
    v = vec2(src[i], two ? src[i + 1u] : 0.0);
#elif defined(SRC_F16)
    v = unpackHalf2x16(src[k]);
#else
    uint w = src[k];
    v = vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u));
#endif
#if defined(DST_F32)
    dst[i] = v.x;
    if (two)
        dst[i + 1u] = v.y;
#else
#if defined(DST_F16)
    uint o = packHalf2x16(v);
#else
    uint o = bf16_round(v.x) | (bf16_round(v.y) << 16);
#endif
    if (!two)
        o = (o & 0xffffu) | (dst[k] & 0xffff0000u);
    dst[k] = o;
#endif
}
