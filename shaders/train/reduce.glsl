// Workgroup-wide sum and max of one float per invocation, for 1-D workgroups.
// SUBGROUP=1: subgroup arithmetic, then one shared slot per subgroup (one barrier
// pair, any subgroup size). Otherwise: a shared-memory tree; the host keeps the
// workgroup a power of two and small (64 under 'minimal', lavapipe).
// ROWSERIAL=1: one invocation owns a whole row (no reduction, no barrier): for
// lavapipe, where workgroup barriers are what costs.
// Every invocation gets the result. Call from uniform control flow only.
#ifndef FP_REDUCE_GLSL
#define FP_REDUCE_GLSL

#ifdef ROWSERIAL
float wg_sum(float v) { return v; }
float wg_max(float v) { return v; }
uint wg_row() { return fp_gid(); }
#define LANE 0u
#define LANES 1u
#else
#define LANE gl_LocalInvocationID.x
#define LANES gl_WorkGroupSize.x

shared float red_s[gl_WorkGroupSize.x];

#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

float wg_sum(float v)
{
    v = subgroupAdd(v);
    if (subgroupElect())
        red_s[gl_SubgroupID] = v;
    barrier();
    float t = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; i++)
        t += red_s[i];
    barrier();
    return t;
}

float wg_max(float v)
{
    v = subgroupMax(v);
    if (subgroupElect())
        red_s[gl_SubgroupID] = v;
    barrier();
    float t = red_s[0];
    for (uint i = 1; i < gl_NumSubgroups; i++)
        t = max(t, red_s[i]);
    barrier();
    return t;
}
#else
float wg_sum(float v)
{
    uint l = gl_LocalInvocationID.x;
    red_s[l] = v;
    barrier();
    for (uint k = gl_WorkGroupSize.x / 2; k > 0; k >>= 1) {
        if (l < k)
            red_s[l] += red_s[l + k];
        barrier();
    }
    float t = red_s[0];
    barrier();
    return t;
}

float wg_max(float v)
{
    uint l = gl_LocalInvocationID.x;
    red_s[l] = v;
    barrier();
    for (uint k = gl_WorkGroupSize.x / 2; k > 0; k >>= 1) {
        if (l < k)
            red_s[l] = max(red_s[l], red_s[l + k]);
        barrier();
    }
    float t = red_s[0];
    barrier();
    return t;
}
#endif

// Row index of a workgroup in a grid laid out by fp_grid_1d(rows, 1, ...).
uint wg_row()
{
    return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
}
#endif // ROWSERIAL
#endif
