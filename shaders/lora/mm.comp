#version 450
// Strided tiled matmul for LoRA: C[m, n] = alpha * sum_k A(m,k) * B(k,n) + beta * C[m, n]
//   A(m,k) = a[m*sam + k*sak]            (f32)
//   B(k,n) = b[k*sbk + n*sbn]            (f32, or BF16 / BBF16: f16 / bf16 packed in uint words)
//   C row-major with leading dimension ldc; beta == 0 never reads C.
// Strides give every transpose LoRA needs (x*W^T, dy^T*u, g^T*x, dy*W, ...).
// 8x8 invocations, 32x32 output tile, 4x4 per invocation, K tiles of 16: 64
// invocations and 4 KiB of shared memory, within the 'minimal' profile.
#include "common.glsl"
#define BM 32
#define BN 32
#define BK 16
layout(push_constant) uniform P {
    uint M; uint N; uint K;
    uint sam; uint sak; uint sbk; uint sbn; uint ldc;
    float alpha; float beta;
} pc;
layout(std430, binding = 0) readonly buffer AB { float a[]; };
#if defined(BF16) || defined(BBF16)
layout(std430, binding = 1) readonly buffer BB { uint b[]; };
#else
layout(std430, binding = 1) readonly buffer BB { float b[]; };
#endif
layout(std430, binding = 2) buffer CB { float c[]; };

shared float As[BK * BM];
shared float Bs[BK * BN];

float loadB(uint e)
{
#if defined(BF16)
    vec2 h = unpackHalf2x16(b[e >> 1]);
    return (e & 1u) != 0u ? h.y : h.x;
#elif defined(BBF16)
    uint w = b[e >> 1];
    return uintBitsToFloat((e & 1u) != 0u ? (w & 0xffff0000u) : (w << 16));
#else
    return b[e];
#endif
}

void main()
{
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint lid = ty * 8u + tx;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    vec4 c0 = vec4(0.0), c1 = vec4(0.0), c2 = vec4(0.0), c3 = vec4(0.0); // rows ty + 8i, cols tx + 8j
    bool a_kfast = pc.sak == 1u;
    bool b_nfast = pc.sbn == 1u;
    for (uint k0 = 0; k0 < pc.K; k0 += BK) {
        for (uint e = 0; e < 8u; e++) {
            uint idx = lid + 64u * e;
            uint kk, mm;
            if (a_kfast) { kk = idx % BK; mm = idx / BK; } else { mm = idx % BM; kk = idx / BM; }
            uint gm = m0 + mm, gk = k0 + kk;
            As[kk * BM + mm] = (gm < pc.M && gk < pc.K) ? a[gm * pc.sam + gk * pc.sak] : 0.0;
            uint nn;
            if (b_nfast) { nn = idx % BN; kk = idx / BN; } else { kk = idx % BK; nn = idx / BK; }
            uint gn = n0 + nn;
            gk = k0 + kk;
            Bs[kk * BN + nn] = (gn < pc.N && gk < pc.K) ? loadB(gk * pc.sbk + gn * pc.sbn) : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            uint ab = kk * BM + ty, bb = kk * BN + tx;
            vec4 av = vec4(As[ab], As[ab + 8u], As[ab + 16u], As[ab + 24u]);
            vec4 bv = vec4(Bs[bb], Bs[bb + 8u], Bs[bb + 16u], Bs[bb + 24u]);
            c0 += av.x * bv;
            c1 += av.y * bv;
            c2 += av.z * bv;
            c3 += av.w * bv;
        }
        barrier();
    }
    vec4 acc[4] = vec4[4](c0, c1, c2, c3);
    for (uint i = 0; i < 4u; i++) {
        uint gm = m0 + ty + 8u * i;
        if (gm >= pc.M)
            continue;
        for (uint j = 0; j < 4u; j++) {
            uint gn = n0 + tx + 8u * j;
            if (gn >= pc.N)
                continue;
            uint ci = gm * pc.ldc + gn;
            float v = pc.alpha * acc[i][j];
            if (pc.beta != 0.0)
                v += pc.beta * c[ci];
            c[ci] = v;
        }
    }
}
