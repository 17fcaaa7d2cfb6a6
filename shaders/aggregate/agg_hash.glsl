// Counter-based hash for stochastic rounding: two rounds of a PCG-style
// permutation of u32 keyed by the two halves of a 64-bit seed. Must match
// fp_agg_hash in src/ops/aggregate_ref.c bit for bit.
#ifndef FP_AGG_HASH_GLSL
#define FP_AGG_HASH_GLSL
uint fp_agg_pcg(uint v)
{
    uint s = v * 747796405u + 2891336453u;
    uint w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}
uint fp_agg_hash(uint seed_lo, uint seed_hi, uint i)
{
    return fp_agg_pcg(fp_agg_pcg(i ^ seed_lo) + seed_hi);
}
#endif
