#version 450
// dtype conversion between f32, f16 and bf16. 16-bit data is read and written
// as packed uint words, so no 16-bit storage or fp16 arithmetic feature is
// needed. f16: packHalf2x16/unpackHalf2x16. bf16: the top 16 bits of the f32,
// rounded to nearest even (NaN stays a quiet NaN). SRC_* / DST_* in {F32, F16, BF16}.
// Scalar variant: elements [2*(off + k), +2) for invocation k, up to element n.
// With an odd n, the last word's high half is preserved (read-modify-write), so
// views next to other data are safe.
// VEC4 variant: four elements (one vec4 of f32, two words of 16-bit data) per
// invocation, n groups of four from group off; the host runs it on the
// multiple-of-4 prefix and the scalar one on the rest.
#include "common.glsl"
layout(push_constant) uniform P { uint n; uint off; } pc;
#ifdef VEC4
#define F32T vec4
#define U16T uvec2
#else
#define F32T float
#define U16T uint
#endif
#ifdef SRC_F32
layout(std430, binding = 0) readonly buffer S { F32T src[]; };
#else
layout(std430, binding = 0) readonly buffer S { U16T src[]; };
#endif
#ifdef DST_F32
layout(std430, binding = 1) writeonly buffer D { F32T dst[]; };
#else
layout(std430, binding = 1) buffer D { U16T dst[]; };
#endif

uint bf16_round(float f)
{
    uint u = floatBitsToUint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

vec2 unpack_bf16(uint w) { return vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u)); }

void main()
{
#ifdef VEC4
    uint k = fp_gid();
    if (k >= pc.n)
        return;
    k += pc.off;
    vec4 v;
#if defined(SRC_F32)
    v = src[k];
#elif defined(SRC_F16)
    v = vec4(unpackHalf2x16(src[k].x), unpackHalf2x16(src[k].y));
#else
    v = vec4(unpack_bf16(src[k].x), unpack_bf16(src[k].y));
#endif
#if defined(DST_F32)
    dst[k] = v;
#elif defined(DST_F16)
    dst[k] = uvec2(packHalf2x16(v.xy), packHalf2x16(v.zw));
#else
    dst[k] = uvec2(bf16_round(v.x) | (bf16_round(v.y) << 16), bf16_round(v.z) | (bf16_round(v.w) << 16));
#endif
#else
    uint k = pc.off + fp_gid();
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
    v = unpack_bf16(src[k]);
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
#endif
}
