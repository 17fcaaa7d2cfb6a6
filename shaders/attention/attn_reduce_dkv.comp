#version 450
// Sums the query-range slices of the split dk/dv kernel (attn_bwd_dkv with
// chunk_len < T) in fixed order (deterministic): ws holds nsplit dk slices of
// n elements, then nsplit dv slices ([B, T, Hkv, D] each). Causal: slice c has
// no contribution for key row j when c < j / chunk_len (the kernel may not have
// written it), so the sum starts there. One invocation per element of dk / dv.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer W { float ws[]; };
layout(std430, binding = 1) writeonly buffer DK { float dk[]; };
layout(std430, binding = 2) writeonly buffer DV { float dv[]; };
layout(push_constant) uniform P { uint n; uint T; uint HD; uint chunk_len; uint nsplit; uint causal; } pc;

void main()
{
    uint g = fp_gid();
    if (g >= pc.n)
        return;
    uint j = (g / pc.HD) % pc.T;
    uint c0 = pc.causal != 0 ? j / pc.chunk_len : 0;
    float a = 0.0, b = 0.0;
    for (uint c = c0; c < pc.nsplit; c++) {
        a += ws[c * pc.n + g];
        b += ws[(pc.nsplit + c) * pc.n + g];
    }
    dk[g] = a;
    dv[g] = b;
}
