#version 450
// Attention backward, dq (FlashAttention-2 style recompute). One invocation per
// query row (t, h), rows grouped per kv head as in attn_fwd.comp. Per row:
// Di = dout_i . o_i, Li = lse_i; for each key j <= t:
//   p = exp(scale q.k_j - Li), ds = p (dout_i . v_j - Di), dq += scale ds k_j.
//
// Key-range split (GPUs with few query rows; see attention.c): workgroup row
// y = chunk * Hkv + kv head; chunk c walks only keys
// [c*chunk_len, min(T, (c+1)*chunk_len)) and writes its partial dq to slice c
// of a scratch buffer (at c*slice), which attn_reduce_dq sums in fixed order.
// Causal: a chunk that starts after the workgroup's last query row exits
// (uniformly, before any barrier) without writing; the reduce skips exactly
// those slices (c > t / chunk_len). Unsplit: chunk_len = T, one chunk.
#extension GL_EXT_control_flow_attributes : require
#ifdef SG
#extension GL_KHR_shader_subgroup_shuffle : require
#define DIRECT 1
#endif
#include "common.glsl"
layout(constant_id = 3) const uint D = 64;
layout(constant_id = 4) const uint BC = 32;
layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) readonly buffer O { float o[]; };
layout(std430, binding = 4) readonly buffer DO { float dout[]; };
layout(std430, binding = 5) readonly buffer L { float lse[]; };
layout(std430, binding = 6) writeonly buffer DQ { float dq[]; };
layout(push_constant) uniform P {
    uint T; uint Hq; uint Hkv; uint G; uint causal; float scale_log2; float scale;
    uint chunk_len; uint slice;
} pc;

#define WG gl_WorkGroupSize.x

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
layout(constant_id = 5) const uint RPI = 2; // query rows per invocation
const uint D4 = D / 4;
layout(std430, binding = 1) readonly buffer K4 { vec4 k4[]; };
layout(std430, binding = 2) readonly buffer V4 { vec4 v4[]; };
vec4 shuf4(vec4 x, uint c)
{
    return vec4(subgroupShuffle(x.x, c), subgroupShuffle(x.y, c), subgroupShuffle(x.z, c), subgroupShuffle(x.w, c));
}
vec4 ld4(uint i)
{
    return vec4(q[i], q[i + 1], q[i + 2], q[i + 3]);
}

// SG: RPI query rows per invocation; each key's K and V rows are loaded by the
// subgroup's lanes 8 vec4s at a time and shared with subgroupShuffle.
void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint b = gl_WorkGroupID.z;
    uint kvh = gl_WorkGroupID.y % pc.Hkv;
    uint chunk = gl_WorkGroupID.y / pc.Hkv;
    uint R0 = gl_WorkGroupID.x * WG * RPI;
    uint t_last = min(pc.T - 1, (R0 + WG * RPI - 1) / pc.G);
    uint k_lo = chunk * pc.chunk_len;
    uint k_end = min(pc.T, k_lo + pc.chunk_len);
    uint k_hi = min(k_end, pc.causal != 0 ? t_last + 1 : pc.T);
    if (k_lo >= k_hi)
        return; // causal: no row of this workgroup sees a key of this chunk
    uint kvstride = pc.Hkv * D;
    uint kvbase = (b * pc.T * pc.Hkv + kvh) * D;
    uint sl = gl_SubgroupInvocationID & 7u;

    vec4 qr[RPI][D4];
    vec4 dor[RPI][D4];
    vec4 acc[RPI][D4];
    float Li[RPI], Di[RPI];
    uint lim[RPI];
    [[unroll]] for (uint r = 0; r < RPI; r++) {
        uint row = R0 + lid * RPI + r;
        uint tc = min(row / pc.G, pc.T - 1);
        uint h = kvh * pc.G + row % pc.G;
        lim[r] = min(k_end, pc.causal != 0 ? tc + 1 : pc.T);
        uint qbase = ((b * pc.T + tc) * pc.Hq + h) * D;
        float dsum = 0.0;
        [[unroll]] for (uint c = 0; c < D4; c++) {
            uint i = qbase + 4 * c;
            qr[r][c] = ld4(i) * pc.scale_log2;
            dor[r][c] = vec4(dout[i], dout[i + 1], dout[i + 2], dout[i + 3]);
            dsum += dot(dor[r][c], vec4(o[i], o[i + 1], o[i + 2], o[i + 3]));
            acc[r][c] = vec4(0.0);
        }
        Di[r] = dsum;
        Li[r] = lse[(b * pc.Hq + h) * pc.T + tc] * 1.4426950408889634;
    }
    for (uint j = k_lo; j < k_hi; j++) {
        uint rb = (kvbase + j * kvstride) / 4;
        vec4 kr[D4];
        vec4 vr[D4];
        [[unroll]] for (uint c0 = 0; c0 < D4; c0 += 8) {
            vec4 kl = k4[rb + min(c0 + sl, D4 - 1)];
            vec4 vl = v4[rb + min(c0 + sl, D4 - 1)];
            [[unroll]] for (uint c = 0; c < 8; c++) {
                if (c0 + c < D4) { // constant after unrolling
                    kr[c0 + c] = shuf4(kl, c);
                    vr[c0 + c] = shuf4(vl, c);
                }
            }
        }
        [[unroll]] for (uint r = 0; r < RPI; r++) {
            float s = 0.0, dp = 0.0;
            [[unroll]] for (uint c = 0; c < D4; c++) {
                s += dot(qr[r][c], kr[c]);
                dp += dot(dor[r][c], vr[c]);
            }
            float p = j < lim[r] ? exp2(s - Li[r]) : 0.0;
            float ds = p * (dp - Di[r]);
            [[unroll]] for (uint c = 0; c < D4; c++)
                acc[r][c] += ds * kr[c];
        }
    }
    [[unroll]] for (uint r = 0; r < RPI; r++) {
        uint row = R0 + lid * RPI + r;
        uint t = row / pc.G;
        uint h = kvh * pc.G + row % pc.G;
        if (t < pc.T) {
            uint qbase = chunk * pc.slice + ((b * pc.T + t) * pc.Hq + h) * D;
            [[unroll]] for (uint c = 0; c < D4; c++) {
                vec4 x = acc[r][c] * pc.scale;
                dq[qbase + 4 * c] = x.x;
                dq[qbase + 4 * c + 1] = x.y;
                dq[qbase + 4 * c + 2] = x.z;
                dq[qbase + 4 * c + 3] = x.w;
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
    uint R0 = gl_WorkGroupID.x * WG;
    uint R = R0 + lid;
    uint t = R / pc.G;
    uint h = kvh * pc.G + R % pc.G;
    bool valid = t < pc.T;
    uint tc = min(t, pc.T - 1);
    uint t_last = min(pc.T - 1, (R0 + WG - 1) / pc.G);
    uint k_lo = chunk * pc.chunk_len;
    uint k_end = min(pc.T, k_lo + pc.chunk_len);
    uint k_hi = min(k_end, pc.causal != 0 ? t_last + 1 : pc.T);
    if (k_lo >= k_hi)
        return; // causal: no row of this workgroup sees a key of this chunk (uniform)
    uint lim = min(k_end, pc.causal != 0 ? tc + 1 : pc.T);
    uint kvstride = pc.Hkv * D;
    uint kvbase = (b * pc.T * pc.Hkv + kvh) * D;
    uint kmax = k_hi - 1;

    float qr[D];
    float dor[D];
    float acc[D];
    uint qbase = ((b * pc.T + tc) * pc.Hq + h) * D;
    float Di = 0.0;
    for (uint d = 0; d < D; d++) {
        qr[d] = q[qbase + d] * pc.scale_log2;
        dor[d] = dout[qbase + d];
        Di += dor[d] * o[qbase + d];
        acc[d] = 0.0;
    }
    float Li = lse[(b * pc.Hq + h) * pc.T + tc] * 1.4426950408889634;
    float sv[BC];
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
        for (uint j = 0; j < BC; j++) {
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < D; d++) {
                s += qr[d] * KT(j, d);
                dp += dor[d] * VT(j, d);
            }
            float p = kt + j < lim ? exp2(s - Li) : 0.0;
            sv[j] = p * (dp - Di);
        }
        for (uint d = 0; d < D; d++) {
            float a = acc[d];
            for (uint j = 0; j < BC; j++)
                a += sv[j] * KT(j, d);
            acc[d] = a;
        }
#ifndef DIRECT
        barrier();
#endif
    }
    if (!valid)
        return;
    uint obase = chunk * pc.slice + qbase;
    for (uint d = 0; d < D; d++)
        dq[obase + d] = acc[d] * pc.scale;
}
#endif
