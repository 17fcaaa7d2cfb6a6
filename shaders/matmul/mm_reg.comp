#version 450
// Register-blocked matmul with no shared memory and no barriers: each invocation
// computes TM x TN outputs (TN a multiple of 4) from loads straight out of the
// buffers. Invocations adjacent in x take adjacent column groups, so on SIMD-across-
// invocations CPUs (llvmpipe) the A loads are the same for a whole subgroup and the
// B loads are contiguous. Workgroup (WX, WY) covers (WY*TM) x (WX*TN) outputs.
// Spec constants: 3 = TM, 4 = TN, 5 = TA, 6 = TB (see mm_io.glsl).
#include "common.glsl"
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
#include "mm_io.glsl"

const uint VN = TN / 4;

void main()
{
    uint bz = gl_WorkGroupID.z + pc.zbase;
    uint m0 = (gl_WorkGroupID.y * gl_WorkGroupSize.y + gl_LocalInvocationID.y) * TM;
    uint n0 = (gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x) * TN;
    // No early return: out-of-range invocations compute on clamped indices and skip
    // their stores, so every load runs with all invocations active (llvmpipe then
    // turns subgroup-uniform loads into one scalar load).
    uint abase = pc.oa + bz * pc.sa, bbase = pc.ob + bz * pc.sb;
    vec4 acc[TM * VN];
    [[unroll]] for (uint i = 0; i < TM * VN; i++)
        acc[i] = vec4(0.0);
#ifdef VEC4
    // Rows/columns past the edge are clamped to the last one (loaded, never stored).
    uint mr[TM];
    [[unroll]] for (uint i = 0; i < TM; i++)
        mr[i] = min(m0 + i, pc.M - 1u);
    // TB == 0 needs N % 4 == 0 (so a group is all in or all out); TB == 1 clamps
    // each column on its own.
    uint nc[TN];
    [[unroll]] for (uint j = 0; j < TN; j++)
        nc[j] = TB == 0u ? min(n0 + (j & ~3u), pc.N - 4u) + (j & 3u) : min(n0 + j, pc.N - 1u);
    for (uint k = 0; k < pc.K; k += 4u) {
        // a block: av[i] = A(m0+i, k..k+3)
        vec4 av[TM];
        if (TA == 0u) {
            [[unroll]] for (uint i = 0; i < TM; i++)
                av[i] = ldA4(abase + mr[i] * pc.lda + k);
        } else {
            // A stored K x M: load 4-row groups along m and transpose
            [[unroll]] for (uint i = 0; i < TM; i += 4u) {
                uint mm = min(m0 + i, pc.M - 4u);
                vec4 r0 = ldA4(abase + k * pc.lda + mm);
                vec4 r1 = ldA4(abase + (k + 1u) * pc.lda + mm);
                vec4 r2 = ldA4(abase + (k + 2u) * pc.lda + mm);
                vec4 r3 = ldA4(abase + (k + 3u) * pc.lda + mm);
                av[i] = vec4(r0.x, r1.x, r2.x, r3.x);
                if (i + 1u < TM) av[i + 1u] = vec4(r0.y, r1.y, r2.y, r3.y);
                if (i + 2u < TM) av[i + 2u] = vec4(r0.z, r1.z, r2.z, r3.z);
                if (i + 3u < TM) av[i + 3u] = vec4(r0.w, r1.w, r2.w, r3.w);
            }
        }
        // b block: bv[r*VN + j] = B(k+r, n0+4j .. n0+4j+3)
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
        [[unroll]] for (uint i = 0; i < TM; i++)
            [[unroll]] for (uint j = 0; j < VN; j++) {
                vec4 s = acc[i * VN + j];
                s = fma(vec4(av[i].x), bv[0u * VN + j], s);
                s = fma(vec4(av[i].y), bv[1u * VN + j], s);
                s = fma(vec4(av[i].z), bv[2u * VN + j], s);
                s = fma(vec4(av[i].w), bv[3u * VN + j], s);
                acc[i * VN + j] = s;
            }
    }
    [[unroll]] for (uint i = 0; i < TM; i++) {
        uint m = m0 + i;
        if (m >= pc.M)
            continue;
        uint crow = pc.oc + bz * pc.sc + m * pc.ldc;
        [[unroll]] for (uint j = 0; j < VN; j++) {
            vec4 v = acc[i * VN + j];
            [[unroll]] for (uint q = 0; q < 4u; q++) {
                uint n = n0 + 4u * j + q;
                if (n < pc.N)
                    mm_store(crow + n, v[q]);
            }
        }
    }
#else
    uint mr[TM];
    [[unroll]] for (uint i = 0; i < TM; i++)
        mr[i] = min(m0 + i, pc.M - 1u);
    uint ncl[TN];
    [[unroll]] for (uint j = 0; j < TN; j++)
        ncl[j] = min(n0 + j, pc.N - 1u);
    uint sak = TA == 0u ? 1u : pc.lda, sam = TA == 0u ? pc.lda : 1u;
    uint sbk = TB == 0u ? pc.ldb : 1u, sbn = TB == 0u ? 1u : pc.ldb;
    for (uint k = 0; k < pc.K; k++) {
        float av[TM];
        [[unroll]] for (uint i = 0; i < TM; i++)
            av[i] = ldA(abase + mr[i] * sam + k * sak);
        vec4 bv[VN];
        [[unroll]] for (uint j = 0; j < VN; j++)
            bv[j] = vec4(ldB(bbase + k * sbk + ncl[4u * j] * sbn), ldB(bbase + k * sbk + ncl[4u * j + 1u] * sbn),
                         ldB(bbase + k * sbk + ncl[4u * j + 2u] * sbn), ldB(bbase + k * sbk + ncl[4u * j + 3u] * sbn));
        [[unroll]] for (uint i = 0; i < TM; i++)
            [[unroll]] for (uint j = 0; j < VN; j++)
                acc[i * VN + j] = fma(vec4(av[i]), bv[j], acc[i * VN + j]);
    }
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
#endif
}
