#version 450
// LoRA dropout: y[i] = keep(i) ? x[i] * scale : 0, keep(i) = fmix32((i * 0x9E3779B1) ^ key) >= thresh.
// The mask is a pure function of (key, i): the backward recomputes it. x and y may alias.
#include "common.glsl"
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint key; uint thresh; float scale; } pc;

uint fmix32(uint h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

void main()
{
    uint i = fp_gid();
    if (i >= pc.n)
        return;
    bool keep = fmix32((i * 0x9E3779B1u) ^ pc.key) >= pc.thresh;
    y[i] = keep ? x[i] * pc.scale : 0.0;
}
