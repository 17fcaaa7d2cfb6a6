#version 450
// Shared-memory tiled matmul with register blocking, for GPUs. A workgroup of
// (BN/TN) x (BM/TM) invocations computes a BM x BN tile of C; each step stages a
// BM x BK slab of A and a BK x BN slab of B in shared memory (scalar loads with
// bounds checks: any layout, any size), then every invocation accumulates its
// TM x TN outputs (strided by the workgroup size to spread shared-memory banks).
// Spec constants: 3 = BM, 4 = BN, 7 = BK, 8 = TM, 9 = TN, 5 = TA, 6 = TB.
// Shared memory: (BM + BN) * BK * 4 bytes.
#include "common.glsl"
layout(constant_id = 3) const uint BM = 32;
layout(constant_id = 4) const uint BN = 32;
layout(constant_id = 7) const uint BK = 8;
layout(constant_id = 8) const uint TM = 4;
layout(constant_id = 9) const uint TN = 4;
#include "mm_io.glsl"

shared float As[BK * BM];
shared float Bs[BK * BN];

void main()
{
    const uint WX = BN / TN, WY = BM / TM, NT = WX * WY;
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint lid = ty * WX + tx;
    uint bz = gl_WorkGroupID.z + pc.zbase;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint abase = pc.oa + bz * pc.sa, bbase = pc.ob + bz * pc.sb;
    float acc[TM * TN];
    [[unroll]] for (uint i = 0; i < TM * TN; i++)
        acc[i] = 0.0;
    for (uint k0 = 0; k0 < pc.K; k0 += BK) {
        // A slab: element e = (mm, kk); the contiguous index varies fastest
        for (uint e = lid; e < BM * BK; e += NT) {
            uint mm, kk;
            if (TA == 0u) { kk = e % BK; mm = e / BK; } else { mm = e % BM; kk = e / BM; }
            uint gm = m0 + mm, gk = k0 + kk;
            float v = 0.0;
            if (gm < pc.M && gk < pc.K)
                v = ldA(abase + (TA == 0u ? gm * pc.lda + gk : gk * pc.lda + gm));
            As[kk * BM + mm] = v;
        }
        for (uint e = lid; e < BN * BK; e += NT) {
            uint nn, kk;
            if (TB == 0u) { nn = e % BN; kk = e / BN; } else { kk = e % BK; nn = e / BK; }
            uint gn = n0 + nn, gk = k0 + kk;
            float v = 0.0;
            if (gn < pc.N && gk < pc.K)
                v = ldB(bbase + (TB == 0u ? gk * pc.ldb + gn : gn * pc.ldb + gk));
            Bs[kk * BN + nn] = v;
        }
        barrier();
        [[unroll]] for (uint kk = 0; kk < BK; kk++) {
            float av[TM], bv[TN];
            [[unroll]] for (uint i = 0; i < TM; i++)
                av[i] = As[kk * BM + ty + WY * i];
            [[unroll]] for (uint j = 0; j < TN; j++)
                bv[j] = Bs[kk * BN + tx + WX * j];
            [[unroll]] for (uint i = 0; i < TM; i++)
                [[unroll]] for (uint j = 0; j < TN; j++)
                    acc[i * TN + j] = fma(av[i], bv[j], acc[i * TN + j]);
        }
        barrier();
    }
    [[unroll]] for (uint i = 0; i < TM; i++) {
        uint m = m0 + ty + WY * i;
        if (m >= pc.M)
            continue;
        uint crow = pc.oc + bz * pc.sc + m * pc.ldc;
        [[unroll]] for (uint j = 0; j < TN; j++) {
            uint n = n0 + tx + WX * j;
            if (n < pc.N)
                mm_store(crow + n, acc[i * TN + j]);
        }
    }
}
