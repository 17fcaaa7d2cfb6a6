#version 450
// Weighted sum over clients (FedAvg), one coordinate (or vec4 of them) per thread:
//   o[i] = (acc ? o[i] : 0) + sum_{k < nk} w_k * x[xoff + k*ld + i]
// w_k = w[woff + k], or pc.wscale for every k (streaming axpy). Clients are
// summed in order k = 0..nk-1, as the C reference does. With VEC4, n, ld and
// the offsets are in vec4 units.
// TEXEL (with VEC4): X, the output's own values and the weights are fetched as
// texels (the host's FP_TEX4 / FP_WTEX4 / FP_TEX1 at FP_TEXEL_BINDING(0, 1, 2)),
// which llvmpipe does several times faster than it loads storage buffers, and
// each invocation adds ITEMS vec4 columns strided by the workgroup size: with
// a workgroup of one SIMD batch (llvmpipe: 8), each client row is then read in
// runs of 8 * ITEMS contiguous texels rather than 8 (see aggregate.c).
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(std430, binding = 1) buffer OB { T o[]; };
layout(push_constant) uniform P {
    uint n, nk, ld, xoff, ooff, woff, flags; // flags: 1 accumulate, 2 weight from wscale
    float wscale;
} pc;

#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer ot; // the output's own texels (FP_WTEX4)
layout(binding = FP_TEXEL_BINDING(2)) uniform samplerBuffer wt; // FP_TEX1: one weight per texel
layout(constant_id = 3) const uint ITEMS = 1;

void main()
{
    uint wg = gl_WorkGroupSize.x;
    uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint base = group * wg * ITEMS + gl_LocalInvocationID.x;
    if (base >= pc.n)
        return;
    uint m = min(ITEMS, (pc.n - base + wg - 1u) / wg); // items of this invocation inside n
    T acc[ITEMS];
    for (uint j = 0u; j < ITEMS; j++)
        acc[j] = (pc.flags & 1u) != 0u && j < m ? texelFetch(ot, int(pc.ooff + base + j * wg)) : T(0.0);
    uint xr = pc.xoff + base;
    // two loops, not one with (pw ? wscale : weight k): a compiler may evaluate
    // both sides of the select, fetching a weight axpy does not have
    if ((pc.flags & 2u) != 0u) {
        for (uint k = 0u; k < pc.nk; k++, xr += pc.ld)
            for (uint j = 0u; j < ITEMS; j++)
                if (j < m)
                    acc[j] += pc.wscale * texelFetch(xt, int(xr + j * wg));
    } else {
        for (uint k = 0u; k < pc.nk; k++, xr += pc.ld) {
            float wk = texelFetch(wt, int(pc.woff + k)).x;
            for (uint j = 0u; j < ITEMS; j++)
                if (j < m)
                    acc[j] += wk * texelFetch(xt, int(xr + j * wg));
        }
    }
    for (uint j = 0u; j < ITEMS; j++)
        if (j < m)
            o[pc.ooff + base + j * wg] = acc[j];
}

#else
layout(std430, binding = 0) readonly buffer XB { T x[]; };
layout(std430, binding = 2) readonly buffer WB { float w[]; };
// The same weights four at a time (used when woff is a multiple of 4). Why:
// llvmpipe loads a storage buffer lane by lane even at a uniform index, so one
// weight load per client cost as much as the client's row: wsum at K=100,
// D=2^20 took 115-163 ms on lavapipe against 71-112 ms with no weight loads
// at all (fp bench kernels --only aggregate).
layout(std430, binding = 2) readonly buffer WB4 { vec4 w4[]; };

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    T acc = (pc.flags & 1u) != 0u ? o[pc.ooff + i] : T(0.0);
    uint xi = pc.xoff + i;
    bool pw = (pc.flags & 2u) != 0u;
    uint k = 0u;
    if (!pw && (pc.woff & 3u) == 0u) {
        // clients in the same order k = 0, 1, 2, ...: the same sums as the loop below
        for (uint q = pc.woff >> 2; k + 4u <= pc.nk; k += 4u, q++) {
            vec4 wq = w4[q];
            acc += wq.x * x[xi];
            xi += pc.ld;
            acc += wq.y * x[xi];
            xi += pc.ld;
            acc += wq.z * x[xi];
            xi += pc.ld;
            acc += wq.w * x[xi];
            xi += pc.ld;
        }
    }
    // two loops, not one with (pw ? wscale : w[k]): see the texel variant
    if (pw) {
        for (; k < pc.nk; k++, xi += pc.ld)
            acc += pc.wscale * x[xi];
    } else {
        for (; k < pc.nk; k++, xi += pc.ld)
            acc += w[pc.woff + k] * x[xi];
    }
    o[pc.ooff + i] = acc;
}
#endif
