#version 450
// Split-K epilogue of fp_matmul (src/ops/matmul.c): the product was computed as S
// partial products over consecutive K chunks, partial s of batch b at
//   p[s*pstride + b*M*N + m*N + n]
// and this writes, one invocation per output element, in fixed s order
// (deterministic, independent of scheduling):
//   C[b](m, n) = alpha * sum_{s=0..S-1} P_s[b](m, n) + beta * C[b](m, n)
//   C[b](m, n) = c[oc + b*sc + m*ldc + n]
// beta == 0 never reads C (it may hold NaN). No shared memory, no barriers, no
// subgroup operations: runs under every profile ("minimal" included).
#include "common.glsl"

layout(push_constant) uniform P {
    uint M, N, S, batch;
    uint ldc, sc, oc, pstride;
    float alpha, beta;
} pc;

layout(std430, binding = 0) readonly buffer PB { float p[]; };
layout(std430, binding = 1) buffer CB { float c[]; };

void main()
{
    uint i = fp_gid();
    uint mn = pc.M * pc.N;
    if (i >= mn * pc.batch)
        return;
    uint b = i / mn, r = i - b * mn;
    uint m = r / pc.N, n = r - m * pc.N;
    float acc = 0.0;
    for (uint s = 0u; s < pc.S; s++)
        acc += p[s * pc.pstride + i];
    uint ci = pc.oc + b * pc.sc + m * pc.ldc + n;
    float v = pc.alpha * acc;
    if (pc.beta != 0.0)
        v += pc.beta * c[ci];
    c[ci] = v;
}
