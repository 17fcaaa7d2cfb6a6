#version 450
// Mean loss over the rows with a valid target, one workgroup:
// out[0] = sum(loss) / n_valid (0 when n_valid is 0), out[1] = n_valid.
#include "common.glsl"
#include "train/reduce.glsl"
layout(push_constant) uniform P { uint rows; uint V; int ignore_index; } pc;
layout(std430, binding = 0) readonly buffer O { float loss[]; };
layout(std430, binding = 1) readonly buffer T { int targets[]; };
layout(std430, binding = 2) writeonly buffer R { float outv[]; };

void main()
{
    float s = 0.0, c = 0.0;
    for (uint i = LANE; i < pc.rows; i += LANES) {
        int t = targets[i];
        if (t != pc.ignore_index && t >= 0 && uint(t) < pc.V) {
            s += loss[i];
            c += 1.0;
        }
    }
    s = wg_sum(s);
    c = wg_sum(c);
    if (gl_GlobalInvocationID.x == 0) {
        outv[0] = c > 0.0 ? s / c : 0.0;
        outv[1] = c;
    }
}
