#version 450
// Coordinate-wise trimmed mean / median for any number of clients, without a
// private array: the values of ranks lo and hi (0-based, ascending) are found
// exactly by a digit-wise search on order-preserving u32 keys (16 counting
// passes of 2 bits over the nk values, both ranks at once), then one pass sums the values
// strictly between them (in client order) plus the kept copies of the two
// boundary values. Exact selection, deterministic; the kernel is small, so it
// compiles fast everywhere (the register network of order_stat.comp does not
// for large K). VEC4: four coordinates per thread, lane by lane (n, ld and
// offsets in vec4 units).
#include "common.glsl"
#ifdef VEC4
#define T vec4
#define U uvec4
#define B bvec4
#define LT(a, b) lessThan(a, b)
#define LE(a, b) lessThanEqual(a, b)
#define GT(a, b) greaterThan(a, b)
#define EQ(a, b) equal(a, b)
#define SEL(f, t, c) mix(f, t, c)
#define AND(a, b) bvec4(uvec4(a) & uvec4(b))
#else
#define T float
#define U uint
#define B bool
#define LT(a, b) ((a) < (b))
#define LE(a, b) ((a) <= (b))
#define GT(a, b) ((a) > (b))
#define EQ(a, b) ((a) == (b))
#define SEL(f, t, c) ((c) ? (t) : (f))
#define AND(a, b) ((a) && (b))
#endif
layout(std430, binding = 0) readonly buffer XB { T x[]; };
layout(std430, binding = 1) writeonly buffer OB { T o[]; };
layout(push_constant) uniform P { uint n, nk, ld, xoff, ooff, lo, hi; } pc;

U fkey(T f)
{
    U u = floatBitsToUint(f);
    return SEL(u | 0x80000000u, ~u, GT(u, U(0x7fffffffu)));
}

T unkey(U k)
{
    return uintBitsToFloat(SEL(~k, k & 0x7fffffffu, GT(k, U(0x7fffffffu))));
}

// 1 where c holds, else 0
U one(B c) { return SEL(U(0u), U(1u), c); }

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    uint base = pc.xoff + i;
    U ylo = U(0u), yhi = U(0u);
    // 2 bits per pass (16 passes): the largest candidate digit whose count of
    // smaller keys is <= the rank; counts are monotone in the candidate.
    for (int bit = 30; bit >= 0; bit -= 2) {
        uint sh = uint(bit);
        U l1 = ylo | (1u << sh), l2 = ylo | (2u << sh), l3 = ylo | (3u << sh);
        U h1 = yhi | (1u << sh), h2 = yhi | (2u << sh), h3 = yhi | (3u << sh);
        U nl1 = U(0u), nl2 = U(0u), nl3 = U(0u), nh1 = U(0u), nh2 = U(0u), nh3 = U(0u);
        uint xi = base;
        for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
            U kk = fkey(x[xi]);
            nl1 += one(LT(kk, l1));
            nl2 += one(LT(kk, l2));
            nl3 += one(LT(kk, l3));
            nh1 += one(LT(kk, h1));
            nh2 += one(LT(kk, h2));
            nh3 += one(LT(kk, h3));
        }
        ylo = SEL(SEL(SEL(ylo, l1, LE(nl1, U(pc.lo))), l2, LE(nl2, U(pc.lo))), l3, LE(nl3, U(pc.lo)));
        yhi = SEL(SEL(SEL(yhi, h1, LE(nh1, U(pc.hi))), h2, LE(nh2, U(pc.hi))), h3, LE(nh3, U(pc.hi)));
    }
    U le_lo = U(0u), lt_hi = U(0u);
    T s = T(0.0);
    uint xi = base;
    for (uint k = 0u; k < pc.nk; k++, xi += pc.ld) {
        T v = x[xi];
        U kk = fkey(v);
        le_lo += one(LE(kk, ylo));
        lt_hi += one(LT(kk, yhi));
        s = SEL(s, s + v, AND(GT(kk, ylo), LT(kk, yhi)));
    }
    s += T(le_lo - U(pc.lo)) * unkey(ylo);
    s += T(U(pc.hi + 1u) - lt_hi) * unkey(yhi);
    // both ranks on one value: that value exactly (the sum above counts it twice)
    o[pc.ooff + i] = SEL(s / float(pc.hi - pc.lo + 1u), unkey(ylo), EQ(ylo, yhi));
}
