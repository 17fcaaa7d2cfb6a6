#version 450
// Embedding backward, stage 1, one invocation per token i: links the tokens that
// share an id into a chain in token order, without atomics:
// link[i] = (next << 1) | leader, next = the first j > i with ids[j] == ids[i]
// (N if none), leader = 1 when no j < i has the same id. Ids outside [0, V)
// are never leaders (they get no gradient). O(N^2) id compares, ids only.
#include "common.glsl"
layout(push_constant) uniform P { uint N; uint V; } pc;
layout(std430, binding = 0) readonly buffer I { int ids[]; };
layout(std430, binding = 1) writeonly buffer K { uint link[]; };

void main()
{
    uint i = fp_gid();
    if (i >= pc.N)
        return;
    int id = ids[i];
    uint leader = (id >= 0 && uint(id) < pc.V) ? 1u : 0u;
    for (uint j = 0; j < i && leader != 0u; j++)
        if (ids[j] == id)
            leader = 0u;
    uint next = pc.N;
    for (uint j = i + 1u; j < pc.N; j++)
        if (ids[j] == id) {
            next = j;
            break;
        }
    link[i] = (next << 1) | leader;
}
