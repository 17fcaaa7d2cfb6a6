#version 450
// Sums the partial slices of the split attention backward kernels in fixed
// order (deterministic). One invocation per output element; n elements per
// slice, row index t = (g / HD) % T.
//  default (attn_reduce_dkv): ws holds nsplit dk slices then nsplit dv slices
//    ([B, T, Hkv, D] each) of the query-range split of attn_bwd_dkv. Causal:
//    slice c has nothing for key row j when c < j / chunk_len (the kernel may
//    not have written it), so the sum starts there.
//  DQ (attn_reduce_dq): ws holds nsplit dq slices ([B, T, Hq, D]) of the
//    key-range split of attn_bwd_dq. Causal: slice c has nothing for query row
//    t when c > t / chunk_len, so the sum stops there.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer W { float ws[]; };
layout(std430, binding = 1) writeonly buffer DK { float dk[]; };
#ifndef DQ
layout(std430, binding = 2) writeonly buffer DV { float dv[]; };
#endif
layout(push_constant) uniform P { uint n; uint T; uint HD; uint chunk_len; uint nsplit; uint causal; } pc;

void main()
{
    uint g = fp_gid();
    if (g >= pc.n)
        return;
    uint t = (g / pc.HD) % pc.T;
#ifdef DQ
    uint c1 = pc.causal != 0 ? min(pc.nsplit, t / pc.chunk_len + 1) : pc.nsplit;
    float a = 0.0;
    for (uint c = 0; c < c1; c++)
        a += ws[c * pc.n + g];
    dk[g] = a;
#else
    uint c0 = pc.causal != 0 ? t / pc.chunk_len : 0;
    float a = 0.0, b = 0.0;
    for (uint c = c0; c < pc.nsplit; c++) {
        a += ws[c * pc.n + g];
        b += ws[(pc.nsplit + c) * pc.n + g];
    }
    dk[g] = a;
    dv[g] = b;
#endif
}
