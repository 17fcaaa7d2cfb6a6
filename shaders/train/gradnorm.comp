#version 450
// Global gradient norm and clipping, three stages:
// SUMSQ: workgroup g writes the partial sum of squares of its chunk of
//        units, x[xoff + g*chunk .. xoff + min(n, (g+1)*chunk)), into
//        partials[off + g]; its invocations stride through the chunk by the
//        workgroup size (Kahan-compensated per invocation). Why chunks and not
//        a grid-stride loop over all of x: llvmpipe runs a workgroup's
//        subgroups one after another, so with a grid stride each subgroup
//        walked the whole tensor touching 128 bytes every 128 KiB; in chunks
//        the next subgroup finds its lines in cache. On lavapipe the 56 MB
//        gradient of `fp bench train --quick --profile` (full fine-tuning) went
//        from 37-45 ms to 33-34 ms (about 1.7 GB/s read, against the copy
//        kernel's 4-5 GB/s counting its read and its write). On GPUs the loads
//        stay coalesced either way.
// FINAL: one workgroup sums partials[0..n): out[0] = norm, out[1] = clip scale
//        min(1, max_norm / (norm + 1e-6)) (1 when max_norm <= 0).
// CLIP:  x *= out[1] on units off .. off + n, read on the device.
// VEC4 (SUMSQ, CLIP): a unit is a vec4; the host runs the scalar variant on
// the last n % 4 elements.
// TEXEL (SUMSQ with VEC4): x is fetched as vec4 texels (host: FP_TEX4 at
// FP_TEXEL_BINDING(0)), which llvmpipe does for 8 lanes at once where it loads
// a storage buffer lane by lane.
#include "common.glsl"
#include "train/reduce.glsl"
#ifdef VEC4
#define T vec4
#else
#define T float
#endif
layout(push_constant) uniform P { uint n; uint off; float max_norm; uint xoff; uint chunk; } pc;
#if defined(SUMSQ) && defined(TEXEL)
layout(binding = FP_TEXEL_BINDING(0)) uniform samplerBuffer xt;
layout(std430, binding = 1) buffer Q { float partials[]; };
#define LX(i) texelFetch(xt, int(i))
#elif defined(SUMSQ)
layout(std430, binding = 0) readonly buffer X { T x[]; };
#define LX(i) x[i]
layout(std430, binding = 1) buffer Q { float partials[]; };
#elif defined(FINAL)
layout(std430, binding = 0) readonly buffer Q { float partials[]; };
layout(std430, binding = 1) writeonly buffer O { float outv[]; };
#else
layout(std430, binding = 0) buffer X { T x[]; };
layout(std430, binding = 1) readonly buffer O { float outv[]; };
#endif

void main()
{
#if defined(SUMSQ)
    uint b = gl_WorkGroupID.x * pc.chunk, e = min(pc.n, b + pc.chunk);
    T s = T(0.0), c = T(0.0);
    for (uint i = b + gl_LocalInvocationID.x; i < e; i += gl_WorkGroupSize.x) {
        T v = LX(pc.xoff + i);
        T yk = v * v - c;
        T t = s + yk;
        c = (t - s) - yk;
        s = t;
    }
#ifdef VEC4
    float r = wg_sum((s.x + s.y) + (s.z + s.w));
#else
    float r = wg_sum(s);
#endif
    if (gl_LocalInvocationID.x == 0)
        partials[pc.off + gl_WorkGroupID.x] = r;
#elif defined(FINAL)
    float s = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < pc.n; i += gl_WorkGroupSize.x)
        s += partials[i];
    s = wg_sum(s);
    if (gl_LocalInvocationID.x == 0) {
        float nrm = sqrt(s);
        outv[0] = nrm;
        outv[1] = pc.max_norm > 0.0 ? min(1.0, pc.max_norm / (nrm + 1e-6)) : 1.0;
    }
#else
    uint i = fp_gid();
    if (i < pc.n)
        x[pc.off + i] *= outv[1];
#endif
}
