// Shared declarations of the matmul kernels (included by every mm_*.comp).
//
//   C[b](m, n) = alpha * sum_k A[b](m, k) * B[b](k, n) + beta * C[b](m, n)
//   A(m, k) = a[oa + b*sa + (TA ? k*lda + m : m*lda + k)]          (f32)
//   B(k, n) = b[ob + b*sb + (TB ? n*ldb + k : k*ldb + n)]          (f32, or f16/bf16)
//   C(m, n) = c[oc + b*sc + m*ldc + n]                              (f32)
// b is gl_WorkGroupID.z plus the push constant zbase (batches > 65535 go in parts).
// beta == 0 never reads C (it may hold NaN).
//
// Defines: VEC4 (every vec4-loaded row is 4-aligned: lda/ldb/offsets/strides % 4 == 0
// and the contiguous extents (K or M for A, N or K for B) % 4 == 0: the host checks),
// B_F16 (B packed f16 pairs in uint words), B_F16S (f16 via 16-bit storage),
// B_BF16 (B packed bf16 pairs in uint words), TEX (A and B fetched as texels).
#extension GL_EXT_control_flow_attributes : enable
#if defined(B_F16S)
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable
#endif

layout(constant_id = 5) const uint TA = 0; // A stored K x M
layout(constant_id = 6) const uint TB = 0; // B stored N x K

layout(push_constant) uniform P {
    uint M, N, K;
    uint lda, ldb, ldc;
    uint sa, sb, sc;
    uint oa, ob, oc;
    float alpha, beta;
    uint zbase;
} pc;

#if defined(TEX)
// Texel reads (the sg kernels on devices where fp_ops_texel_reads says so):
// A (f32) at FP_TEXEL_BINDING(0) as vec4 texels with VEC4 (host FP_TEX4), else
// single floats (FP_TEX1); f32 B likewise at FP_TEXEL_BINDING(1); f16 and bf16
// B (B_F16, B_BF16) as single uint texels of two packed halves (the host binds
// a u32 view of B, FP_TEX1). Storage bindings 0 and 1 are placeholders and not
// declared. Why: llvmpipe loads a storage buffer lane by lane but fetches a
// texel for 8 lanes at once, and these loads are per-lane gathers.
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer at;
#if defined(B_F16) || defined(B_BF16)
layout(binding = FP_TEXEL_BINDING(1)) uniform usamplerBuffer bt;
vec2 unpack_b(uint w)
{
#if defined(B_F16)
    return unpackHalf2x16(w);
#else
    return vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u));
#endif
}
#ifdef VEC4
vec4 ldB4(uint e)
{
    int w = int(e >> 1);
    return vec4(unpack_b(texelFetch(bt, w).x), unpack_b(texelFetch(bt, w + 1).x));
}
#else
float ldB(uint e)
{
    vec2 h = unpack_b(texelFetch(bt, int(e >> 1)).x);
    return (e & 1u) != 0u ? h.y : h.x;
}
#endif
#else
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer bt;
#ifdef VEC4
vec4 ldB4(uint e) { return texelFetch(bt, int(e >> 2)); }
#else
float ldB(uint e) { return texelFetch(bt, int(e)).x; }
#endif
#endif
#ifdef VEC4
vec4 ldA4(uint e) { return texelFetch(at, int(e >> 2)); }
float ldA1(uint e) { return texelFetch(at, int(e >> 2))[e & 3u]; }
#else
float ldA(uint e) { return texelFetch(at, int(e)).x; }
#endif
#else // storage buffers
#ifdef VEC4
layout(std430, binding = 0) readonly buffer AB { vec4 a4[]; };
#else
layout(std430, binding = 0) readonly buffer AB { float a[]; };
#endif
#if defined(B_F16S)
#ifdef VEC4
layout(std430, binding = 1) readonly buffer BB { f16vec4 b4[]; };
#else
layout(std430, binding = 1) readonly buffer BB { float16_t b[]; };
#endif
#elif defined(B_F16) || defined(B_BF16)
#ifdef VEC4
layout(std430, binding = 1) readonly buffer BB { uvec2 b4[]; };
#else
layout(std430, binding = 1) readonly buffer BB { uint b[]; };
#endif
#else
#ifdef VEC4
layout(std430, binding = 1) readonly buffer BB { vec4 b4[]; };
#else
layout(std430, binding = 1) readonly buffer BB { float b[]; };
#endif
#endif

#ifdef VEC4
// 4 consecutive elements starting at e (e % 4 == 0)
vec4 ldA4(uint e) { return a4[e >> 2]; }
float ldA1(uint e) { return a4[e >> 2][e & 3u]; } // element e of a vec4 row
vec4 ldB4(uint e)
{
#if defined(B_F16S)
    return vec4(b4[e >> 2]);
#elif defined(B_F16)
    uvec2 w = b4[e >> 2];
    return vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
#elif defined(B_BF16)
    uvec2 w = b4[e >> 2];
    return vec4(uintBitsToFloat(w.x << 16), uintBitsToFloat(w.x & 0xffff0000u),
                uintBitsToFloat(w.y << 16), uintBitsToFloat(w.y & 0xffff0000u));
#else
    return b4[e >> 2];
#endif
}
#else
float ldA(uint e) { return a[e]; }
float ldB(uint e)
{
#if defined(B_F16S)
    return float(b[e]);
#elif defined(B_F16)
    vec2 h = unpackHalf2x16(b[e >> 1]);
    return (e & 1u) != 0u ? h.y : h.x;
#elif defined(B_BF16)
    uint w = b[e >> 1];
    return uintBitsToFloat((e & 1u) != 0u ? (w & 0xffff0000u) : (w << 16));
#else
    return b[e];
#endif
}
#endif

#endif
layout(std430, binding = 2) buffer CB { float c[]; };

// Writes one output element (caller checks bounds).
void mm_store(uint ci, float v)
{
    float r = pc.alpha * v;
    if (pc.beta != 0.0)
        r += pc.beta * c[ci];
    c[ci] = r;
}
