#version 450
// Cooperative-matrix matmul (tensor cores) through GL_NV_cooperative_matrix:
// f16 inputs, f32 accumulation. NVIDIA (Turing and newer) exposes
// VK_NV_cooperative_matrix; the KHR form (GL_KHR_cooperative_matrix, for AMD and
// Intel) needs a newer glslang than Debian bookworm's 11.13 and is not built.
//
// A workgroup of 4 subgroups of 32 (128 invocations; the host only selects this
// kernel where the subgroup size is exactly 32) computes a BM x BN tile of C,
// each subgroup one (BM/2) x (BN/2) quarter as FM x FN fragments of 16x16.
// Per K step of BK = 32, every invocation converts its share of a BM x BK slab
// of A and a BK x BN slab of B to float16 in shared memory (scalar loads with
// bounds checks, zero outside the matrices: any M, N, K, layout, batch), then
// each subgroup loads its A and B fragments from shared memory and multiplies
// them into f32 accumulators. At the end each subgroup stores one accumulator at
// a time into its own 16x16 f32 scratch and writes C from there with bounds
// checks and alpha/beta in f32.
//
// Precision: A and B are rounded to f16 (11-bit significand; values beyond
// +-65504 overflow to inf): only for data within f16 range, and only where the
// caller allows it (see include/fedproxy/ops_matmul.h).
//
// CM_EMULATE (test hook, variants cm_*_emu): the same staging, fragment offsets
// and epilogue with the three cooperative-matrix operations done in scalar f32
// arithmetic on the same f16 tiles. A "subgroup" is then 32 consecutive
// invocations and each lane keeps 8 elements of every fragment (e = lane + 32 t:
// row e / 16, column e % 16). It needs only f16 arithmetic, so lavapipe runs it:
// everything but the tensor-core instructions is checked on any machine.
//
// Defines: BM, BN (tile; multiples of 32) plus mm_io.glsl's B dtype defines.
// Spec constants: 0..2 = workgroup size (128, 1, 1), 5 = TA, 6 = TB.
// Shared memory: BM*(BK+8)*2 + BK*(BN+8)*2 + 4*256*4 bytes
// (64x64: 13,824; 128x128: 23,040). Every fragment offset and stride is a
// multiple of 8 halves / 16 bytes; the row strides (20, 36, 68 words) put the 8
// rows of a 16-byte-per-row fragment read in distinct banks.
#ifndef CM_EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#endif
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
#include "mm_io.glsl"

#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 64
#endif
#define BK 32
#define NT 128
#define AST (BK + 8) // row stride of As (halves): skews banks, keeps 16-byte rows
#define BST (BN + 8) // row stride of Bs
#define WM (BM / 2)  // one subgroup's quarter of the tile
#define WN (BN / 2)
#define FM (WM / 16) // fragments per subgroup
#define FN (WN / 16)
#ifdef CM_EMULATE
#define CM_UNROLL // rolled: llvmpipe compiles the unrolled 128x128 emulation for minutes
#else
#define CM_UNROLL [[unroll]]
#endif

shared float16_t As[BM * AST]; // As[m * AST + k]
shared float16_t Bs[BK * BST]; // Bs[k * BST + n]
shared float Cs[4 * 256];      // one 16x16 f32 scratch per subgroup

void main()
{
    uint lid = gl_LocalInvocationIndex;
    uint bz = gl_WorkGroupID.z + pc.zbase;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
#ifdef CM_EMULATE
    uint sg = lid / 32u, lane = lid % 32u;
    const uint SGSIZE = 32u;
#else
    uint sg = gl_SubgroupID; // 0..3: uniform within the subgroup, as coopmat ops need
    uint lane = gl_SubgroupInvocationID;
    uint SGSIZE = gl_SubgroupSize;
    if (gl_NumSubgroups != 4u) {
        // the host selects this kernel only for 32-wide subgroups, which NVIDIA
        // always fills; should a driver split the workgroup otherwise, the tile
        // is NaN (loud in every check) instead of out-of-range shared indexing.
        // Uniform across the workgroup: every invocation returns before any barrier.
        for (uint e = lid; e < BM * BN; e += NT) {
            uint m = m0 + e / BN, n = n0 + e % BN;
            if (m < pc.M && n < pc.N)
                c[pc.oc + bz * pc.sc + m * pc.ldc + n] = uintBitsToFloat(0x7fc00000u);
        }
        return;
    }
#endif
    uint abase = pc.oa + bz * pc.sa, bbase = pc.ob + bz * pc.sb;
    uint wm0 = (sg >> 1) * WM, wn0 = (sg & 1u) * WN;

#ifdef CM_EMULATE
    float acc[FM * FN][8];
    for (uint i = 0; i < FM * FN; i++)
        for (uint t = 0; t < 8u; t++)
            acc[i][t] = 0.0;
#else
    fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[FM * FN];
    [[unroll]] for (uint i = 0; i < FM * FN; i++)
        acc[i] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);
#endif

    for (uint k0 = 0; k0 < pc.K; k0 += BK) {
        // A slab: element e = (mm, kk); the stored-contiguous index varies fastest
        for (uint e = lid; e < BM * BK; e += NT) {
            uint mm, kk;
            if (TA == 0u) { kk = e % BK; mm = e / BK; } else { mm = e % BM; kk = e / BM; }
            uint gm = m0 + mm, gk = k0 + kk;
            float v = 0.0;
            if (gm < pc.M && gk < pc.K)
                v = ldA(abase + (TA == 0u ? gm * pc.lda + gk : gk * pc.lda + gm));
            As[mm * AST + kk] = float16_t(v);
        }
        for (uint e = lid; e < BK * BN; e += NT) {
            uint nn, kk;
            if (TB == 0u) { nn = e % BN; kk = e / BN; } else { kk = e % BK; nn = e / BK; }
            uint gn = n0 + nn, gk = k0 + kk;
            float v = 0.0;
            if (gn < pc.N && gk < pc.K)
                v = ldB(bbase + (TB == 0u ? gk * pc.ldb + gn : gn * pc.ldb + gk));
            Bs[kk * BST + nn] = float16_t(v);
        }
        barrier();
        CM_UNROLL for (uint kk = 0; kk < BK; kk += 16) {
#ifdef CM_EMULATE
            // the fragment (i, j) product of A rows at (wm0 + 16 i) * AST + kk and B
            // columns at kk * BST + wn0 + 16 j, row-major with strides AST / BST: the
            // same offsets the coopMatLoadNV calls below use
            for (uint i = 0; i < FM; i++)
                for (uint j = 0; j < FN; j++) {
                    uint oa = (wm0 + 16u * i) * AST + kk, ob = kk * BST + wn0 + 16u * j;
                    for (uint t = 0; t < 8u; t++) {
                        uint e = lane + 32u * t, r = e / 16u, cc = e % 16u;
                        float sum = 0.0;
                        for (uint q = 0; q < 16u; q++)
                            sum += float(As[oa + r * AST + q]) * float(Bs[ob + q * BST + cc]);
                        acc[i * FN + j][t] += sum;
                    }
                }
#else
            fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fa[FM];
            fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fb[FN];
            [[unroll]] for (uint i = 0; i < FM; i++)
                coopMatLoadNV(fa[i], As, (wm0 + 16u * i) * AST + kk, AST, false);
            [[unroll]] for (uint j = 0; j < FN; j++)
                coopMatLoadNV(fb[j], Bs, kk * BST + wn0 + 16u * j, BST, false);
            [[unroll]] for (uint i = 0; i < FM; i++)
                [[unroll]] for (uint j = 0; j < FN; j++)
                    acc[i * FN + j] = coopMatMulAddNV(fa[i], fb[j], acc[i * FN + j]);
#endif
        }
        barrier();
    }

    uint cbase = pc.oc + bz * pc.sc;
    CM_UNROLL for (uint i = 0; i < FM; i++) {
        CM_UNROLL for (uint j = 0; j < FN; j++) {
#ifdef CM_EMULATE
            for (uint t = 0; t < 8u; t++)
                Cs[sg * 256u + lane + 32u * t] = acc[i * FN + j][t];
            barrier(); // emulated subgroups are no real ones: the whole workgroup
#else
            coopMatStoreNV(acc[i * FN + j], Cs, sg * 256u, 16u, false);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
#endif
            uint fm = m0 + wm0 + 16u * i, fn = n0 + wn0 + 16u * j;
            for (uint e = lane; e < 256u; e += SGSIZE) {
                uint m = fm + e / 16u, n = fn + e % 16u;
                if (m < pc.M && n < pc.N)
                    mm_store(cbase + m * pc.ldc + n, Cs[sg * 256u + e]);
            }
#ifdef CM_EMULATE
            barrier();
#else
            subgroupBarrier(); // the scratch is reused by the next fragment
#endif
        }
    }
}
