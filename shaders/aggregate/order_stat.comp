#version 450
// Coordinate-wise trimmed mean (median as a special case) for nk <= KP clients
// (KP 64 and 128: CPU devices, where the values that do not fit registers
// spill to the L1 cache; GPUs use the radix kernel past 32):
// each thread loads its coordinate's values into registers, pads with the largest key,
// partitions them with Batcher's odd-even merge network pruned to the kept
// ranks LO..HI (sortnet.glsl, constant indices only, so nothing is indexed
// dynamically) and averages those ranks. Exact selection, deterministic.
// VEC4: four coordinates per thread (n, ld and offsets in vec4 units); min and
// max act lane by lane, so the same network sorts four columns at once. GPUs
// take it up to 16 clients (registers); CPU devices at every size, where each
// SIMD batch of invocations then reads whole cache lines of every client row.
// The network compares order-preserving integer keys of the floats (KEY):
// integer min and max are one instruction each on a CPU, where float min and
// max carry NaN handling, and infinities still order as floats do (a NaN
// lands past them, at one end). On lavapipe (fp bench kernels --only
// aggregate, K = 100 x 2^20, per-component passes both ways) integer keys
// took the median from 212-216 ms to 155-179 ms, the trimmed mean from
// 223-231 ms to 173-187 ms.
#include "common.glsl"
#ifndef KP
#define KP 8
#endif
// The number of clients, as a specialization constant: the network is pruned
// to it (see sortnet.glsl) and the padding loads fold away.
layout(constant_id = 3) const uint NK = KP;
// Ranks kept (0-based, ascending): the network is pruned backward to the
// partition [0, LO), [LO, HI], (HI, NK) (see sortnet.glsl) and the middle
// block summed (in position order, not ascending: the trimmed mean may differ
// from the reference's ascending sum by rounding; the median is exact).
layout(constant_id = 5) const uint LO = 0u;
layout(constant_id = 6) const uint HI = KP - 1u;
#define SORTNET_N NK
#define SORTNET_LO LO
#define SORTNET_HI HI
#ifdef VEC4
#define T ivec4
#define F vec4
#else
#define T int
#define F float
#endif
#if defined(VEC4) && KP >= 32
// COMPONENTS: the network runs on one component of the four at a time (w),
// so a CPU compiler's live set is a quarter of it: the early stages, which
// sort runs of 8 and 16 wires, can stay in registers (on lavapipe, K = 100,
// integer keys: 123-179 ms against 177-198 with the four together; noisy).
// GPUs do not take VEC4 past 16 clients.
#define COMPONENTS 1
#define SORTNET_V(i) w[i]
#define SORTNET_T int
#endif
#include "sortnet.glsl"
// Functions, not macros: KEY's argument is a texel fetch or load, which a
// macro would write out twice.
int KEY(float x) { int b = floatBitsToInt(x); return b ^ ((b >> 31) & 0x7fffffff); }
ivec4 KEY(vec4 x) { ivec4 b = floatBitsToInt(x); return b ^ ((b >> 31) & 0x7fffffff); }
float UNKEY(int k) { return intBitsToFloat(k ^ ((k >> 31) & 0x7fffffff)); }
vec4 UNKEY(ivec4 k) { return intBitsToFloat(k ^ ((k >> 31) & 0x7fffffff)); }
// Padding past NK: the largest key; no float or NaN maps above it.
#define KEY_MAX 0x7fffffff
// Rows per band: X is read through up to 7 bindings ("bands") of RB rows each,
// so K x D beyond one binding's range needs no gathered copy. Band g holds
// rows [g*RB, (g+1)*RB) with row stride ld, its first element at xo[g].
layout(constant_id = 4) const uint RB = KP;
layout(std430, binding = 0) writeonly buffer OB { F o[]; };
#ifdef TEXEL
// TEXEL: the bands come through uniform texel buffers at
// FP_TEXEL_BINDING(1..7) (the host's FP_TEX4, FP_TEX1 without VEC4; bands past the last repeat
// band 0), which llvmpipe fetches several times faster than it loads storage
// buffers.
layout(binding = FP_TEXEL_BINDING(1)) uniform samplerBuffer xt0;
layout(binding = FP_TEXEL_BINDING(2)) uniform samplerBuffer xt1;
layout(binding = FP_TEXEL_BINDING(3)) uniform samplerBuffer xt2;
layout(binding = FP_TEXEL_BINDING(4)) uniform samplerBuffer xt3;
layout(binding = FP_TEXEL_BINDING(5)) uniform samplerBuffer xt4;
layout(binding = FP_TEXEL_BINDING(6)) uniform samplerBuffer xt5;
layout(binding = FP_TEXEL_BINDING(7)) uniform samplerBuffer xt6;
#ifdef VEC4
#define TF(t, i) texelFetch(t, int(i))
#else
#define TF(t, i) texelFetch(t, int(i)).x
#endif
#define X0(i) TF(xt0, i)
#define X1(i) TF(xt1, i)
#define X2(i) TF(xt2, i)
#define X3(i) TF(xt3, i)
#define X4(i) TF(xt4, i)
#define X5(i) TF(xt5, i)
#define X6(i) TF(xt6, i)
#else
layout(std430, binding = 1) readonly buffer XB0 { F x0[]; };
layout(std430, binding = 2) readonly buffer XB1 { F x1[]; };
layout(std430, binding = 3) readonly buffer XB2 { F x2[]; };
layout(std430, binding = 4) readonly buffer XB3 { F x3[]; };
layout(std430, binding = 5) readonly buffer XB4 { F x4[]; };
layout(std430, binding = 6) readonly buffer XB5 { F x5[]; };
layout(std430, binding = 7) readonly buffer XB6 { F x6[]; };
#define X0(i) x0[i]
#define X1(i) x1[i]
#define X2(i) x2[i]
#define X3(i) x3[i]
#define X4(i) x4[i]
#define X5(i) x5[i]
#define X6(i) x6[i]
#endif
layout(push_constant) uniform P { uint n, ld, ooff, xo[7]; } pc;

// k and RB are constants after specialization, so every branch but one folds
// away and the loads keep constant row offsets.
#define BAND(g, XG, k) else if ((k) < (g + 1u) * RB) v[k] = KEY(XG(pc.xo[g] + i + ((k) - (g) * RB) * pc.ld));
#define LD(k) if ((k) >= NK) v[k] = T(KEY_MAX); \
    else if ((k) < RB) v[k] = KEY(X0(pc.xo[0] + i + (k) * pc.ld)); \
    BAND(1u, X1, k) BAND(2u, X2, k) BAND(3u, X3, k) BAND(4u, X4, k) BAND(5u, X5, k) \
    else v[k] = KEY(X6(pc.xo[6] + i + ((k) - 6u * RB) * pc.ld));
#ifdef COMPONENTS
#define SM(k) if ((k) < NK && (k) >= LO && (k) <= HI) t += UNKEY(w[k]);
#define WC(k) w[k] = v[k][c];
// One pass per component c: copy it out, run the network, sum the kept ranks.
#define BY_COMPONENT(REPS, NET) for (int c = 0; c < 4; ++c) { int w[KP]; float t = 0.0; \
        REPS(WC) NET REPS(SM) s[c] = t; }
#else
#define SM(k) if ((k) < NK && (k) >= LO && (k) <= HI) s += UNKEY(v[k]);
#define BY_COMPONENT(REPS, NET) NET REPS(SM)
#endif
#define REP4(M, b) M(b) M((b) + 1) M((b) + 2) M((b) + 3)
#define REP16(M, b) REP4(M, b) REP4(M, (b) + 4) REP4(M, (b) + 8) REP4(M, (b) + 12)
#define REP64(M, b) REP16(M, b) REP16(M, (b) + 16) REP16(M, (b) + 32) REP16(M, (b) + 48)

// ROW_GROUPS (the texel variants past 16 clients, i.e. CPU devices): the
// values are loaded 16 client rows at a time with a workgroup barrier between
// groups. llvmpipe runs a workgroup's SIMD batches one after another on one
// thread, switching at barriers; without them each batch loads all K rows
// (128 bytes of each) before the next batch starts, so K rows 4 MiB apart
// are read as K interleaved streams, more than a CPU's stream prefetcher
// tracks (a few dozen). With them, the batches take turns on 16 rows, which
// the workgroup (64 invocations) then reads in contiguous 1 KiB runs. On
// lavapipe (fp bench kernels --only aggregate, K = 100 x 2^20, best of three
// alternating runs on a 2-vCPU Xeon): median 111-153 -> 83-89 ms, trimmed
// mean 146-148 -> 80-83 ms; 8 rows per group measured 94-99, 32 rows 63-82
// (noisy; 16 stays well under the 32 streams some CPUs track). Every
// invocation reaches every barrier: those past n load the last coordinate
// and store nothing.
#if defined(TEXEL) && KP >= 32
#define ROW_GROUPS
// group b's loads, after a barrier for every group but the first (groups
// wholly past NK load nothing: no barrier)
#define LDG(b) if ((b) > 0u && (b) < NK) barrier(); REP16(LD, b)
#endif

void main()
{
    uint i = fp_gid();
#ifdef ROW_GROUPS
    bool live = i < pc.n;
    i = live ? i : pc.n - 1u;
#else
    if (i >= pc.n)
        return;
#endif
    T v[KP];
    F s = F(0.0);
#if KP == 4
    REP4(LD, 0u)
    SORTNET_4()
    REP4(SM, 0u)
#elif KP == 8
    REP4(LD, 0u) REP4(LD, 4u)
    SORTNET_8()
    REP4(SM, 0u) REP4(SM, 4u)
#elif KP == 16
    REP16(LD, 0u)
    SORTNET_16()
    REP16(SM, 0u)
#elif KP == 32
#define REPS32(M) REP16(M, 0u) REP16(M, 16u)
#ifdef ROW_GROUPS
    LDG(0u) LDG(16u)
#else
    REPS32(LD)
#endif
    BY_COMPONENT(REPS32, SORTNET_32())
#elif KP == 64
#define REPS64(M) REP64(M, 0u)
#ifdef ROW_GROUPS
    LDG(0u) LDG(16u) LDG(32u) LDG(48u)
#else
    REPS64(LD)
#endif
    BY_COMPONENT(REPS64, SORTNET_64())
#elif KP == 128
#define REPS128(M) REP64(M, 0u) REP64(M, 64u)
#ifdef ROW_GROUPS
    LDG(0u) LDG(16u) LDG(32u) LDG(48u) LDG(64u) LDG(80u) LDG(96u) LDG(112u)
#else
    REPS128(LD)
#endif
    BY_COMPONENT(REPS128, SORTNET_128())
#else
#error KP must be 4, 8, 16, 32, 64 or 128
#endif
#ifdef ROW_GROUPS
    if (live)
#endif
    o[pc.ooff + i] = s / float(HI - LO + 1u);
}
