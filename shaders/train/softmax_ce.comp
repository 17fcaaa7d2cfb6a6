#version 450
// Softmax cross-entropy forward over rows of V logits, one workgroup per row.
// Each invocation keeps an online (max, sum of exp) over its strided columns;
// the workgroup combines them: lse = M + log(sum_i s_i * exp(m_i - M)).
// loss[row] = lse - logits[row, t] for a valid target t in [0, V) other than
// ignore_index, else 0. lse[row] is saved for the backward.
// The host may bind a chunk of rows through windows: row r's logits start at
// element loff + r*V, its target, loss and lse at toff + r, ooff + r, soff + r.
#include "common.glsl"
#include "train/reduce.glsl"
layout(push_constant) uniform P { uint rows; uint V; int ignore_index; uint loff, toff, ooff, soff; } pc;
layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) readonly buffer T { int targets[]; };
layout(std430, binding = 2) writeonly buffer O { float loss[]; };
layout(std430, binding = 3) writeonly buffer S { float lse[]; };

void main()
{
    uint row = wg_row();
    if (row >= pc.rows)
        return;
    uint base = pc.loff + row * pc.V, l = LANE, n = LANES;
    float m = -3.402823466e38, s = 0.0;
    for (uint j = l; j < pc.V; j += n) {
        float v = logits[base + j];
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
    float M = wg_max(m);
    float S = wg_sum(s * exp(m - M));
    float z = M + log(S);
    if (l == 0) {
        int t = targets[pc.toff + row];
        bool valid = t != pc.ignore_index && t >= 0 && uint(t) < pc.V;
        loss[pc.ooff + row] = valid ? z - logits[base + uint(t)] : 0.0;
        lse[pc.soff + row] = z;
    }
}
