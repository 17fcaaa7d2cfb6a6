#version 450
// Weighted sum over clients (FedAvg), one coordinate (or vec4 of them) per thread:
//   o[i] = (acc ? o[i] : 0) + sum_{k < nk} w_k * x[xoff + k*ld + i]
// w_k = w[woff + k], or pc.wscale for every k (streaming axpy). Clients are
// summed in order k = 0..nk-1, as the C reference does. With VEC4, n, ld and
// the offsets are in vec4 units.
// TEXEL (vec4 only): the big read-only operands come through uniform texel
// buffers at FP_TEXEL_BINDING(i) (the host's FP_TEX4 bindings), which llvmpipe
// fetches several times faster than it loads storage buffers.
#include "common.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
#ifdef TEXEL
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer ot; // the output's own texels (FP_WTEX4)
layout(binding = FP_TEXEL_BINDING(2)) uniform samplerBuffer wt4; // FP_TEX4: four weights per texel
layout(binding = FP_TEXEL_BINDING(3)) uniform samplerBuffer wt;  // FP_TEX1: one weight per texel
#define OL(i) texelFetch(ot, int(i))
#define W4(q) texelFetch(wt4, int(q))
#define XL(i) texelFetch(xt, int(i))
#define WL(k) texelFetch(wt, int(k)).x
#else
layout(std430, binding = 0) readonly buffer XB { T x[]; };
#define XL(i) x[i]
#define WL(k) w[k]
#define OL(i) o[i]
#define W4(q) w4[q]
#endif
layout(std430, binding = 1) buffer OB { T o[]; };
#ifndef TEXEL
layout(std430, binding = 2) readonly buffer WB { float w[]; };
// The same weights four at a time (used when woff is a multiple of 4). Why:
// llvmpipe loads a storage buffer lane by lane even at a uniform index, so one
// weight load per client cost as much as the client's row: wsum at K=100,
// D=2^20 took 115-163 ms on lavapipe against 71-112 ms with no weight loads
// at all (fp bench kernels --only aggregate).
layout(std430, binding = 2) readonly buffer WB4 { vec4 w4[]; };
#endif
layout(push_constant) uniform P {
    uint n, nk, ld, xoff, ooff, woff, flags; // flags: 1 accumulate, 2 weight from wscale
    float wscale;
} pc;

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    T acc = (pc.flags & 1u) != 0u ? OL(pc.ooff + i) : T(0.0);
    uint xi = pc.xoff + i;
    bool pw = (pc.flags & 2u) != 0u;
    uint k = 0u;
    if (!pw && (pc.woff & 3u) == 0u) {
        // clients in the same order k = 0, 1, 2, ...: the same sums as the loop below
        for (uint q = pc.woff >> 2; k + 4u <= pc.nk; k += 4u, q++) {
            vec4 wq = W4(q);
            acc += wq.x * XL(xi);
            xi += pc.ld;
            acc += wq.y * XL(xi);
            xi += pc.ld;
            acc += wq.z * XL(xi);
            xi += pc.ld;
            acc += wq.w * XL(xi);
            xi += pc.ld;
        }
    }
    // two loops, not one with (pw ? wscale : WL(k)): a compiler may evaluate
    // both sides of the select, fetching a weight axpy does not have
    if (pw) {
        for (; k < pc.nk; k++, xi += pc.ld)
            acc += pc.wscale * XL(xi);
    } else {
        for (; k < pc.nk; k++, xi += pc.ld)
            acc += WL(pc.woff + k) * XL(xi);
    }
    o[pc.ooff + i] = acc;
}
