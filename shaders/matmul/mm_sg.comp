#version 450
// Subgroup matmul, no shared memory and no barriers. One subgroup computes a
// TM x (SG*TN) tile: lane l owns columns n0 + l*TN .. +TN-1 (contiguous: vec4 loads
// of B) and all TM rows. The TM x 4 block of A that every lane needs is loaded once
// per subgroup, spread over the lanes (lane l loads rows l, l+SG, ...), and handed
// out with subgroupShuffle by constant lane: on SIMD-across-lanes CPUs (llvmpipe) a
// shuffle by a constant lane is a register broadcast, much cheaper than a load.
// Needs a fixed subgroup size SG (host: profile subgroup_min == subgroup_max) and
// the workgroup (SG*NSG, 1, 1): subgroup s takes rows (wg.y*NSG + s)*TM.
// Spec constants: 3 = TM, 4 = TN (multiple of 4), 5 = TA, 6 = TB, 7 = SG.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"
layout(constant_id = 3) const uint TM = 32;
layout(constant_id = 4) const uint TN = 8;
layout(constant_id = 7) const uint SG = 8;
#include "mm_io.glsl"

const uint VN = TN / 4;
const uint QA = (TM + SG - 1) / SG; // A loads per lane per k step

void main()
{
    uint bz = gl_WorkGroupID.z + pc.zbase;
    uint lane = gl_SubgroupInvocationID;
    uint nsg = gl_WorkGroupSize.x / SG;
    uint m0 = (gl_WorkGroupID.y * nsg + gl_SubgroupID) * TM;
    uint n0 = (gl_WorkGroupID.x * SG + lane) * TN;
    uint abase = pc.oa + bz * pc.sa, bbase = pc.ob + bz * pc.sb;
    vec4 acc[TM * VN];
    [[unroll]] for (uint i = 0; i < TM * VN; i++)
        acc[i] = vec4(0.0);
    // this lane's A rows (clamped: rows past M are loaded, never stored)
    uint ma[QA];
    [[unroll]] for (uint q = 0; q < QA; q++)
        ma[q] = min(m0 + q * SG + lane, pc.M - 1u);
#ifdef VEC4
    uint nc[TN];
    [[unroll]] for (uint j = 0; j < TN; j++)
        nc[j] = TB == 0u ? min(n0 + (j & ~3u), pc.N - 4u) + (j & 3u) : min(n0 + j, pc.N - 1u);
    for (uint k = 0; k < pc.K; k += 4u) {
        vec4 al[QA];
        if (TA == 0u) {
            [[unroll]] for (uint q = 0; q < QA; q++)
                al[q] = ldA4(abase + ma[q] * pc.lda + k);
        } else {
            // A stored K x M: 4 scalar-strided loads per row (VEC4 needs lda % 4 only)
            [[unroll]] for (uint q = 0; q < QA; q++)
                al[q] = vec4(ldA1(abase + k * pc.lda + ma[q]), ldA1(abase + (k + 1u) * pc.lda + ma[q]),
                             ldA1(abase + (k + 2u) * pc.lda + ma[q]), ldA1(abase + (k + 3u) * pc.lda + ma[q]));
        }
        vec4 bv[4 * VN];
        if (TB == 0u) {
            [[unroll]] for (uint r = 0; r < 4u; r++)
                [[unroll]] for (uint j = 0; j < VN; j++)
                    bv[r * VN + j] = ldB4(bbase + (k + r) * pc.ldb + nc[4u * j]);
        } else {
            [[unroll]] for (uint j = 0; j < VN; j++) {
                vec4 c0 = ldB4(bbase + nc[4u * j + 0u] * pc.ldb + k);
                vec4 c1 = ldB4(bbase + nc[4u * j + 1u] * pc.ldb + k);
                vec4 c2 = ldB4(bbase + nc[4u * j + 2u] * pc.ldb + k);
                vec4 c3 = ldB4(bbase + nc[4u * j + 3u] * pc.ldb + k);
                bv[0u * VN + j] = vec4(c0.x, c1.x, c2.x, c3.x);
                bv[1u * VN + j] = vec4(c0.y, c1.y, c2.y, c3.y);
                bv[2u * VN + j] = vec4(c0.z, c1.z, c2.z, c3.z);
                bv[3u * VN + j] = vec4(c0.w, c1.w, c2.w, c3.w);
            }
        }
        [[unroll]] for (uint i = 0; i < TM; i++) {
            vec4 av = subgroupShuffle(al[i / SG], i % SG);
            [[unroll]] for (uint j = 0; j < VN; j++) {
                vec4 s = acc[i * VN + j];
                s = fma(vec4(av.x), bv[0u * VN + j], s);
                s = fma(vec4(av.y), bv[1u * VN + j], s);
                s = fma(vec4(av.z), bv[2u * VN + j], s);
                s = fma(vec4(av.w), bv[3u * VN + j], s);
                acc[i * VN + j] = s;
            }
        }
    }
#else
    uint ncl[TN];
    [[unroll]] for (uint j = 0; j < TN; j++)
        ncl[j] = min(n0 + j, pc.N - 1u);
    uint sak = TA == 0u ? 1u : pc.lda, sam = TA == 0u ? pc.lda : 1u;
    uint sbk = TB == 0u ? pc.ldb : 1u, sbn = TB == 0u ? 1u : pc.ldb;
    for (uint k = 0; k < pc.K; k++) {
        float al[QA];
        [[unroll]] for (uint q = 0; q < QA; q++)
            al[q] = ldA(abase + ma[q] * sam + k * sak);
        vec4 bv[VN];
        [[unroll]] for (uint j = 0; j < VN; j++)
            bv[j] = vec4(ldB(bbase + k * sbk + ncl[4u * j] * sbn), ldB(bbase + k * sbk + ncl[4u * j + 1u] * sbn),
                         ldB(bbase + k * sbk + ncl[4u * j + 2u] * sbn), ldB(bbase + k * sbk + ncl[4u * j + 3u] * sbn));
        [[unroll]] for (uint i = 0; i < TM; i++) {
            float av = subgroupShuffle(al[i / SG], i % SG);
            [[unroll]] for (uint j = 0; j < VN; j++)
                acc[i * VN + j] = fma(vec4(av), bv[j], acc[i * VN + j]);
        }
    }
#endif
    [[unroll]] for (uint i = 0; i < TM; i++) {
        uint m = m0 + i;
        if (m >= pc.M)
            continue;
        uint crow = pc.oc + bz * pc.sc + m * pc.ldc;
        [[unroll]] for (uint j = 0; j < VN; j++)
            [[unroll]] for (uint q = 0; q < 4u; q++)
                if (n0 + 4u * j + q < pc.N)
                    mm_store(crow + n0 + 4u * j + q, acc[i * VN + j][q]);
    }
}
