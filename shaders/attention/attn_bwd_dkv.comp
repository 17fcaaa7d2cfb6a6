#version 450
// Attention backward, dk and dv. One invocation per key row j of one kv head;
// it walks the query rows (token i >= j, every query head of its group) in
// tiles of BR rows staged in shared memory (or read from global with DIRECT):
//   p = exp(scale q_i.k_j - L_i), dv += p dout_i,
//   ds = p (dout_i . v_j - D_i), dk += scale ds q_i,
// so the GQA sum over query heads happens in registers. D_i = dout_i . o_i is
// computed while the tile is loaded (no separate pass, no workspace).
//
// Query-range split (GPUs with few key rows; see attention.c): workgroup row
// y = chunk * Hkv + kv head; chunk c walks only query rows
// [c*chunk_len, min(T, (c+1)*chunk_len)) and writes its partial sums to slice c
// of a scratch buffer (dk at c*slice, dv at dv_off + c*slice), which
// attn_reduce_dkv sums in fixed order. Causal: a chunk that ends at or before
// the workgroup's first key row has no i >= j for any of its keys and exits
// (uniformly, before any barrier) without writing; the reduce skips exactly
// those slices (c < j / chunk_len). Unsplit: chunk_len = T, one chunk, slice
// offsets 0.
#extension GL_EXT_control_flow_attributes : require
#ifdef SG
#extension GL_KHR_shader_subgroup_shuffle : require
#define DIRECT 1
#endif
#include "common.glsl"
layout(constant_id = 3) const uint D = 64;
layout(constant_id = 4) const uint BR = 32;
layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) readonly buffer O { float o[]; };
layout(std430, binding = 4) readonly buffer DO { float dout[]; };
layout(std430, binding = 5) readonly buffer L { float lse[]; };
layout(std430, binding = 6) writeonly buffer DK { float dk[]; };
layout(std430, binding = 7) writeonly buffer DV { float dv[]; };
layout(push_constant) uniform P {
    uint T; uint Hq; uint Hkv; uint G; uint causal; float scale_log2; float scale;
    uint chunk_len; uint slice; uint dv_off;
} pc;

#define WG gl_WorkGroupSize.x

shared float Ls[BR];
shared float Ds[BR];
#ifndef DIRECT
shared float Qs[BR * D];
shared float dOs[BR * D];
#define QT(r, d) Qs[(r) * D + (d)]
#define DOT(r, d) dOs[(r) * D + (d)]
#else
#define QT(r, d) q[rowbase[r] + (d)]
#define DOT(r, d) dout[rowbase[r] + (d)]
shared uint rowbase[BR];
#endif

#ifdef SG
layout(constant_id = 5) const uint RPI = 2; // key rows per invocation
const uint D4 = D / 4;
layout(std430, binding = 0) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 3) readonly buffer O4 { vec4 o4[]; };
layout(std430, binding = 4) readonly buffer DO4 { vec4 dout4[]; };
vec4 shuf4(vec4 x, uint c)
{
    return vec4(subgroupShuffle(x.x, c), subgroupShuffle(x.y, c), subgroupShuffle(x.z, c), subgroupShuffle(x.w, c));
}

// SG: RPI key rows per invocation; each query row (q, dout, and o for D_i) is
// loaded by the subgroup's lanes 8 vec4s at a time and shared with shuffles.
void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint b = gl_WorkGroupID.z;
    uint kvh = gl_WorkGroupID.y % pc.Hkv;
    uint chunk = gl_WorkGroupID.y / pc.Hkv;
    uint j0 = gl_WorkGroupID.x * WG * RPI;
    uint i_lo = chunk * pc.chunk_len;
    uint i_hi = min(pc.T, i_lo + pc.chunk_len);
    if (pc.causal != 0 && i_hi <= j0)
        return; // no query of this chunk sees any key of this workgroup
    uint sl = gl_SubgroupInvocationID & 7u;
    vec4 kr[RPI][D4];
    vec4 vr[RPI][D4];
    vec4 dkr[RPI][D4];
    vec4 dvr[RPI][D4];
    [[unroll]] for (uint r = 0; r < RPI; r++) {
        uint jc = min(j0 + lid * RPI + r, pc.T - 1);
        uint kbase = ((b * pc.T + jc) * pc.Hkv + kvh) * D;
        [[unroll]] for (uint c = 0; c < D4; c++) {
            uint i = kbase + 4 * c;
            kr[r][c] = vec4(k[i], k[i + 1], k[i + 2], k[i + 3]) * pc.scale_log2;
            vr[r][c] = vec4(v[i], v[i + 1], v[i + 2], v[i + 3]);
            dkr[r][c] = vec4(0.0);
            dvr[r][c] = vec4(0.0);
        }
    }
    uint jfirst = j0 + lid * RPI;
    uint rho_hi = i_hi * pc.G;
    uint rho_lo = max(i_lo, pc.causal != 0 ? j0 : 0) * pc.G;
    for (uint rho = rho_lo; rho < rho_hi; rho++) {
        uint i = rho / pc.G;
        uint h = kvh * pc.G + rho % pc.G;
        uint rb = ((b * pc.T + i) * pc.Hq + h) * D4;
        vec4 qv[D4];
        vec4 dov[D4];
        float Dd = 0.0;
        [[unroll]] for (uint c0 = 0; c0 < D4; c0 += 8) {
            uint e = rb + min(c0 + sl, D4 - 1);
            vec4 ql = q4[e];
            vec4 dl = dout4[e];
            // D_i = dout_i . o_i: each lane dots its own slot, then the slots are summed via shuffles
            float part = c0 + sl < D4 ? dot(dl, o4[e]) : 0.0;
            [[unroll]] for (uint c = 0; c < 8; c++) {
                if (c0 + c < D4) {
                    qv[c0 + c] = shuf4(ql, c);
                    dov[c0 + c] = shuf4(dl, c);
                    Dd += subgroupShuffle(part, c);
                }
            }
        }
        float L = lse[(b * pc.Hq + h) * pc.T + i] * 1.4426950408889634;
        [[unroll]] for (uint r = 0; r < RPI; r++) {
            float s = 0.0, dp = 0.0;
            [[unroll]] for (uint c = 0; c < D4; c++) {
                s += dot(kr[r][c], qv[c]);
                dp += dot(vr[r][c], dov[c]);
            }
            float p = (pc.causal == 0 || i >= jfirst + r) ? exp2(s - L) : 0.0;
            float ds = p * (dp - Dd);
            [[unroll]] for (uint c = 0; c < D4; c++) {
                dvr[r][c] += p * dov[c];
                dkr[r][c] += ds * qv[c];
            }
        }
    }
    [[unroll]] for (uint r = 0; r < RPI; r++) {
        uint j = jfirst + r;
        if (j < pc.T) {
            uint kbase = chunk * pc.slice + ((b * pc.T + j) * pc.Hkv + kvh) * D;
            uint vbase = pc.dv_off + kbase;
            [[unroll]] for (uint c = 0; c < D4; c++) {
                vec4 x = dkr[r][c] * pc.scale, y = dvr[r][c];
                dk[kbase + 4 * c] = x.x;
                dk[kbase + 4 * c + 1] = x.y;
                dk[kbase + 4 * c + 2] = x.z;
                dk[kbase + 4 * c + 3] = x.w;
                dv[vbase + 4 * c] = y.x;
                dv[vbase + 4 * c + 1] = y.y;
                dv[vbase + 4 * c + 2] = y.z;
                dv[vbase + 4 * c + 3] = y.w;
            }
        }
    }
}
#else
void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint b = gl_WorkGroupID.z;
    uint kvh = gl_WorkGroupID.y % pc.Hkv;
    uint chunk = gl_WorkGroupID.y / pc.Hkv;
    uint j0 = gl_WorkGroupID.x * WG;
    uint i_lo = chunk * pc.chunk_len;
    uint i_hi = min(pc.T, i_lo + pc.chunk_len);
    if (pc.causal != 0 && i_hi <= j0)
        return; // no query of this chunk sees any key of this workgroup (uniform)
    uint j = j0 + lid;
    bool valid = j < pc.T;
    uint jc = min(j, pc.T - 1);
    uint kbase = ((b * pc.T + jc) * pc.Hkv + kvh) * D;
    float kr[D];
    float vr[D];
    float dkr[D];
    float dvr[D];
    for (uint d = 0; d < D; d++) {
        kr[d] = k[kbase + d] * pc.scale_log2;
        vr[d] = v[kbase + d];
        dkr[d] = 0.0;
        dvr[d] = 0.0;
    }
    uint rho_hi = i_hi * pc.G;
    uint rho_lo = max(i_lo, pc.causal != 0 ? j0 : 0) * pc.G;
    for (uint rt = rho_lo; rt < rho_hi; rt += BR) {
        // per-row data: log2-domain lse (huge when padding: p = 0) and D_i
        for (uint r = lid; r < BR; r += WG) {
            uint rho = rt + r;
            float lv = 3.0e38, dv_ = 0.0;
            uint rb = 0;
            if (rho < rho_hi) {
                uint i = rho / pc.G;
                uint h = kvh * pc.G + rho % pc.G;
                rb = ((b * pc.T + i) * pc.Hq + h) * D;
                lv = lse[(b * pc.Hq + h) * pc.T + i] * 1.4426950408889634;
                for (uint d = 0; d < D; d++)
                    dv_ += dout[rb + d] * o[rb + d];
            }
            Ls[r] = lv;
            Ds[r] = dv_;
#ifdef DIRECT
            rowbase[r] = rb;
#endif
        }
#ifndef DIRECT
        for (uint e = lid; e < BR * D; e += WG) {
            uint r = e / D;
            uint rho = rt + r;
            float qx = 0.0, dx = 0.0;
            if (rho < rho_hi) {
                uint i = rho / pc.G;
                uint h = kvh * pc.G + rho % pc.G;
                uint src = ((b * pc.T + i) * pc.Hq + h) * D + (e - r * D);
                qx = q[src];
                dx = dout[src];
            }
            Qs[e] = qx;
            dOs[e] = dx;
        }
#endif
        barrier();
        for (uint r = 0; r < BR; r++) {
            uint i = (rt + r) / pc.G;
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < D; d++) {
                s += kr[d] * QT(r, d);
                dp += vr[d] * DOT(r, d);
            }
            float p = (pc.causal == 0 || i >= j) ? exp2(s - Ls[r]) : 0.0;
            float ds = p * (dp - Ds[r]);
            for (uint d = 0; d < D; d++) {
                dvr[d] += p * DOT(r, d);
                dkr[d] += ds * QT(r, d);
            }
        }
        barrier();
    }
    if (!valid)
        return;
    uint obase = chunk * pc.slice + kbase;
    for (uint d = 0; d < D; d++) {
        dk[obase + d] = dkr[d] * pc.scale;
        dv[pc.dv_off + obase + d] = dvr[d];
    }
}
#endif
