#version 450
// Fused causal grouped-query attention forward (flash style, online softmax).
// One invocation owns one query row (token t, head h); a workgroup holds WG
// consecutive rows of the flattened (t, head-in-group) order of one kv head, so
// the heads sharing that kv head share every K/V tile. No reductions across
// invocations: on SIMD CPUs (lavapipe) the lanes of a subgroup are rows.
// Variants (same math):
//   default  tiles of BC keys staged in shared memory (2*BC*D floats)
//   DIRECT   K/V read straight from global memory (no shared memory, no barriers)
//   SG       DIRECT, but the lanes of a subgroup load 8 different vec4s of a K/V
//            row and share them with subgroupShuffle: 32x fewer load
//            instructions (lavapipe turns every non-uniform load into a loop
//            over lanes). Needs subgroup size >= 8 and D % 4 == 0.
// SG unrolls its loops over D and over KC-key chunks so q, acc and the scores
// stay in registers (D is a specialization constant); the generic variants
// leave the D loops to the driver (unrolled, their per-element loads make
// lavapipe's compile take seconds).
// Split-K (decode): workgroup y = kvhead*nsplit + split covers keys
// [split*split_len, ...); with split_out the normalised part is written to a
// workspace as D values + lse per row: ws[((split*B + b)*Hq + h)*Tq + t][D+1].
#extension GL_EXT_control_flow_attributes : require
#ifdef SG
#extension GL_KHR_shader_subgroup_shuffle : require
#define DIRECT 1
#endif
#include "common.glsl"
#define KC 8
layout(constant_id = 3) const uint D = 64;
layout(constant_id = 4) const uint BC = 32;
layout(std430, binding = 0) readonly buffer Q { float q[]; };
#ifdef SG
layout(std430, binding = 1) readonly buffer K { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V { vec4 v4[]; };
#else
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
#endif
layout(std430, binding = 3) writeonly buffer O { float o[]; };
layout(std430, binding = 4) writeonly buffer L { float lse[]; };
layout(push_constant) uniform P {
    uint Tq; uint Tk; uint kv_rows; uint Hq; uint Hkv; uint G;
    uint q_pos0; uint causal; uint split_len; uint nsplit; uint split_out; float scale_log2;
    uint has_lse;
} pc;

#define WG gl_WorkGroupSize.x
#define NEG_BIG (-3.0e38)

#ifndef DIRECT
shared float Ks[BC * D];
shared float Vs[BC * D];
#define KT(j, d) Ks[(j) * D + (d)]
#define VT(j, d) Vs[(j) * D + (d)]
#else
#define KT(j, d) k[kvbase + min(kt + (j), kmax) * kvstride + (d)]
#define VT(j, d) v[kvbase + min(kt + (j), kmax) * kvstride + (d)]
#endif

#ifdef SG
layout(constant_id = 5) const uint RPI = 4; // query rows per invocation
const uint D4 = D / 4;
vec4 shuf4(vec4 x, uint c)
{
    return vec4(subgroupShuffle(x.x, c), subgroupShuffle(x.y, c), subgroupShuffle(x.z, c), subgroupShuffle(x.w, c));
}

// SG: each invocation owns RPI consecutive rows, so every K/V value loaded and
// shuffled serves RPI rows; keys are walked KC at a time straight from global
// memory (no shared memory, no barriers).
void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint b = gl_WorkGroupID.z;
    uint kvh = gl_WorkGroupID.y / pc.nsplit;
    uint split = gl_WorkGroupID.y % pc.nsplit;
    uint R0 = gl_WorkGroupID.x * WG * RPI;
    uint t_last = min(pc.Tq - 1, (R0 + WG * RPI - 1) / pc.G);
    uint k_lo = split * pc.split_len;
    uint k_hi = min(pc.Tk, k_lo + pc.split_len);
    if (pc.causal != 0)
        k_hi = min(k_hi, pc.q_pos0 + t_last + 1);
    uint kvstride = pc.Hkv * D;
    uint kvbase = (b * pc.kv_rows * pc.Hkv + kvh) * D;
    uint kmax = k_hi > 0 ? k_hi - 1 : 0;
    uint sl = gl_SubgroupInvocationID & 7u; // this lane's vec4 slot in 8-vec4 row chunks

    vec4 qr[RPI][D4];
    vec4 acc[RPI][D4];
    float m[RPI], l[RPI];
    uint lim[RPI];
    [[unroll]] for (uint r = 0; r < RPI; r++) {
        uint row = R0 + lid * RPI + r;
        uint tc = min(row / pc.G, pc.Tq - 1);
        uint h = kvh * pc.G + row % pc.G;
        lim[r] = pc.causal != 0 ? min(pc.q_pos0 + tc + 1, k_hi) : k_hi;
        uint qbase = ((b * pc.Tq + tc) * pc.Hq + h) * D;
        [[unroll]] for (uint c = 0; c < D4; c++) {
            qr[r][c] = vec4(q[qbase + 4 * c], q[qbase + 4 * c + 1], q[qbase + 4 * c + 2], q[qbase + 4 * c + 3]) *
                       pc.scale_log2;
            acc[r][c] = vec4(0.0);
        }
        m[r] = -1.0e30;
        l[r] = 0.0;
    }
    for (uint kt = k_lo; kt < k_hi; kt += KC) {
        float sv[RPI][KC];
        [[unroll]] for (uint jj = 0; jj < KC; jj++) {
            uint rb = (kvbase + min(kt + jj, kmax) * kvstride) / 4;
            float s[RPI];
            [[unroll]] for (uint r = 0; r < RPI; r++)
                s[r] = 0.0;
            [[unroll]] for (uint c0 = 0; c0 < D4; c0 += 8) {
                vec4 kl = k4[rb + min(c0 + sl, D4 - 1)];
                [[unroll]] for (uint c = 0; c < 8; c++) {
                    if (c0 + c < D4) { // constant after unrolling
                        vec4 kv = shuf4(kl, c);
                        [[unroll]] for (uint r = 0; r < RPI; r++)
                            s[r] += dot(qr[r][c0 + c], kv);
                    }
                }
            }
            [[unroll]] for (uint r = 0; r < RPI; r++)
                sv[r][jj] = kt + jj < lim[r] ? s[r] : NEG_BIG;
        }
        [[unroll]] for (uint r = 0; r < RPI; r++) {
            float mx = m[r];
            [[unroll]] for (uint jj = 0; jj < KC; jj++)
                mx = max(mx, sv[r][jj]);
            float alpha = exp2(m[r] - mx);
            float lr = l[r] * alpha;
            [[unroll]] for (uint jj = 0; jj < KC; jj++) {
                float p = exp2(sv[r][jj] - mx);
                sv[r][jj] = p;
                lr += p;
            }
            l[r] = lr;
            m[r] = mx;
            [[unroll]] for (uint c = 0; c < D4; c++)
                acc[r][c] *= alpha;
        }
        [[unroll]] for (uint jj = 0; jj < KC; jj++) {
            uint rb = (kvbase + min(kt + jj, kmax) * kvstride) / 4;
            [[unroll]] for (uint c0 = 0; c0 < D4; c0 += 8) {
                vec4 vl = v4[rb + min(c0 + sl, D4 - 1)];
                [[unroll]] for (uint c = 0; c < 8; c++) {
                    if (c0 + c < D4) {
                        vec4 vv = shuf4(vl, c);
                        [[unroll]] for (uint r = 0; r < RPI; r++)
                            acc[r][c0 + c] += sv[r][jj] * vv;
                    }
                }
            }
        }
    }
    [[unroll]] for (uint r = 0; r < RPI; r++) {
        uint row = R0 + lid * RPI + r;
        uint t = row / pc.G;
        uint h = kvh * pc.G + row % pc.G;
        if (t < pc.Tq) {
            float inv = l[r] > 0.0 ? 1.0 / l[r] : 0.0;
            float lse_row = l[r] > 0.0 ? (m[r] + log2(l[r])) * 0.69314718055994531 : NEG_BIG;
            uint obase = pc.split_out == 0 ? ((b * pc.Tq + t) * pc.Hq + h) * D
                                           : (((split * gl_NumWorkGroups.z + b) * pc.Hq + h) * pc.Tq + t) * (D + 1);
            [[unroll]] for (uint c = 0; c < D4; c++) {
                vec4 x = acc[r][c] * inv;
                o[obase + 4 * c] = x.x;
                o[obase + 4 * c + 1] = x.y;
                o[obase + 4 * c + 2] = x.z;
                o[obase + 4 * c + 3] = x.w;
            }
            if (pc.split_out != 0)
                o[obase + D] = lse_row;
            else if (pc.has_lse != 0)
                lse[(b * pc.Hq + h) * pc.Tq + t] = lse_row;
        }
    }
}
#else
void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint b = gl_WorkGroupID.z;
    uint kvh = gl_WorkGroupID.y / pc.nsplit;
    uint split = gl_WorkGroupID.y % pc.nsplit;
    uint R0 = gl_WorkGroupID.x * WG;
    uint R = R0 + lid;
    uint t = R / pc.G;
    uint h = kvh * pc.G + R % pc.G;
    bool valid = t < pc.Tq;
    uint tc = min(t, pc.Tq - 1);
    uint t_last = min(pc.Tq - 1, (R0 + WG - 1) / pc.G);
    uint k_lo = split * pc.split_len;
    uint k_hi = min(pc.Tk, k_lo + pc.split_len);
    if (pc.causal != 0)
        k_hi = min(k_hi, pc.q_pos0 + t_last + 1);
    uint lim = pc.causal != 0 ? min(pc.q_pos0 + tc + 1, k_hi) : k_hi; // this row: keys < lim
    uint kvstride = pc.Hkv * D;
    uint kvbase = (b * pc.kv_rows * pc.Hkv + kvh) * D;
    uint kmax = k_hi > 0 ? k_hi - 1 : 0;
    uint qbase = ((b * pc.Tq + tc) * pc.Hq + h) * D;

    float qr[D];
    float acc[D];
    for (uint d = 0; d < D; d++) {
        qr[d] = q[qbase + d] * pc.scale_log2;
        acc[d] = 0.0;
    }
    float m = -1.0e30, l = 0.0;
    for (uint kt = k_lo; kt < k_hi; kt += BC) {
#ifndef DIRECT
        for (uint e = lid; e < BC * D; e += WG) {
            uint j = e / D;
            uint key = kt + j;
            float kx = 0.0, vx = 0.0;
            if (key < k_hi) {
                uint src = kvbase + key * kvstride + (e - j * D);
                kx = k[src];
                vx = v[src];
            }
            Ks[e] = kx;
            Vs[e] = vx;
        }
        barrier();
#endif
        for (uint kc = 0; kc < BC; kc += KC) {
            float sv[KC];
            float mx = m;
            [[unroll]] for (uint jj = 0; jj < KC; jj++) {
                uint j = kc + jj;
                float s = 0.0;
                for (uint d = 0; d < D; d++)
                    s += qr[d] * KT(j, d);
                s = kt + j < lim ? s : NEG_BIG;
                sv[jj] = s;
                mx = max(mx, s);
            }
            float alpha = exp2(m - mx);
            l *= alpha;
            [[unroll]] for (uint jj = 0; jj < KC; jj++) {
                float p = exp2(sv[jj] - mx);
                sv[jj] = p;
                l += p;
            }
            for (uint d = 0; d < D; d++) {
                float a = acc[d] * alpha;
                [[unroll]] for (uint jj = 0; jj < KC; jj++)
                    a += sv[jj] * VT(kc + jj, d);
                acc[d] = a;
            }
            m = mx;
        }
#ifndef DIRECT
        barrier();
#endif
    }
    if (!valid)
        return;
    float inv = l > 0.0 ? 1.0 / l : 0.0;
    float lse_row = l > 0.0 ? (m + log2(l)) * 0.69314718055994531 : NEG_BIG;
    uint obase = pc.split_out == 0 ? ((b * pc.Tq + t) * pc.Hq + h) * D
                                   : (((split * gl_NumWorkGroups.z + b) * pc.Hq + h) * pc.Tq + t) * (D + 1);
    for (uint d = 0; d < D; d++)
        o[obase + d] = acc[d] * inv;
    if (pc.split_out != 0)
        o[obase + D] = lse_row;
    else if (pc.has_lse != 0)
        lse[(b * pc.Hq + h) * pc.Tq + t] = lse_row;
}
#endif
