// Shared helpers for every compute shader. Conventions (see runtime.h):
//  - set 0, bindings 0..7 are storage buffers, 8..15 uniform texel buffers
//    (FP_TEXEL_BINDING(i): the host's binding i bound with FP_TEX1/FP_TEX4);
//    one push-constant block.
//  - specialization constants 0,1,2 are the workgroup size; 3+ are the kernel's own.
//  - 1-D work larger than 65535 workgroups uses a 2-D grid: fp_gid() flattens it.
#ifndef FP_COMMON_GLSL
#define FP_COMMON_GLSL

#define FP_TEXEL_BINDING(i) (8 + (i))

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

uint fp_gid()
{
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
}

#endif
